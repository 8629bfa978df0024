"""2D->3D lifting: make_lifter() (factory.py) picks the learned lifter (runtime.py) or the apparent-size placeholder.

normalize.py maps pixels to the network's scale-free input and back; models.py holds the networks; synthetic.py
and recordings.py make training data; train.py + methods/ train them; metrics.py scores them.
"""
