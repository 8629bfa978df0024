"""2D->3D lifting (the learned lifter comes with issue 5; placeholder.py stands in until then)."""
