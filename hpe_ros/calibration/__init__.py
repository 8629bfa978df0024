"""hpe_ros.calibration: estimating cameras (the files they are read from and saved to live in
`hpe_ros.io.calibration`).

board.py (checkerboard / ChArUco definitions and detection), board_calibration.py (a rig from a moving
board), board_bundle.py (its bundle adjustment of cameras and rigid board poses), board_report.py (its
report text and picture), bundle.py (bundle adjustment of cameras and free 3D points), from_people.py
(extrinsics from people walking through the scene), online.py (live refinement), compare.py (a rig
against a reference after similarity alignment).
"""
