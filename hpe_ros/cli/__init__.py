"""`hpe-ros`: the package's command line, one module per command family.

    hpe-ros demo [--out demo_out]                      node graph on a synthetic rig, scored, with a picture
    hpe-ros run --config config/multi_camera.yaml [--sim] [--in-process] [--duration S]
                                                       the same graph as `ros2 launch hpe_ros multi_camera.launch.py`
    hpe-ros triangulate --calib CALIB.toml --keypoints DIR_CAM1 DIR_CAM2 ... (or CAM1=DIR CAM2=DIR ...) --out OUT
                        [--layout body25|coco17|...] [--fps 30] [--format trc|json|auto] [--y-up]
                                                       OpenPose JSON folders -> OUT.trc or OUT.json + OUT.report.json
    hpe-ros process --videos CAM1.mp4 CAM2.mp4 ... --calib CALIB.toml --out OUT.json
                    [--backend onnxruntime --model rtmpose-m --detector rtmdet-nano] [--save-2d DIR]
                                                       2D inference on synchronised videos, fused into 3D skeletons
    hpe-ros models list | fetch NAME | build-engine NAME   model manifests (models/*.toml), downloads, TensorRT engines
    hpe-ros calibrate convert SRC DST [--to toml|rig-yaml|opencv]
    hpe-ros calibrate board --board checkerboard:COLSxROWS:SQUARE_M | charuco:COLSxROWS:SQUARE_M:MARKER_M[:DICT]
                            --images CAM=FOLDER_OR_VIDEO ... --out OUT.toml [--report OUT.png]
    hpe-ros calibrate from-people --calib INTRINSICS.toml --keypoints DIR_CAM1 DIR_CAM2 ... (or CAM1=DIR ...)
                            --layout LAYOUT --out OUT.toml [--person-height METRES]
    hpe-ros train-lifter --out DIR [--method supervised|epipolar|cycle|ites] [--arch mlp|gcn] [--init default] ...
    hpe-ros eval-lifter --data FILE.npz [--model PATH]   JSON {"frames", "mpjpe_mm", "pmpjpe_mm", "nmpjpe_mm"}
    hpe-ros lifter-data --out FILE.npz [--activities squat,wave] [--noise-px 3]   synthetic evaluation data

Families: graph.py (demo, run), offline.py (triangulate, process), models.py, calibrate.py, lifter.py
(train-lifter, eval-lifter, lifter-data); common.py holds the error wrapper and the per-camera path option
shared by all. Bad input exits 2 with one line on stderr; Ctrl-C exits 130 and SIGTERM 143, each with one line,
no traceback and no temp file.
"""
from __future__ import annotations

import argparse

from hpe_ros.cli import calibrate, graph, lifter, models, offline
from hpe_ros.cli.common import OneLineParser, run_command

FAMILIES = (graph, offline, models, calibrate, lifter)


def build_parser() -> argparse.ArgumentParser:
    ap = OneLineParser(prog="hpe-ros", description="multi-camera 3D human pose estimation for ROS 2")
    sub = ap.add_subparsers(dest="command", required=True)
    for family in FAMILIES:
        family.add_parsers(sub)
    return ap


def main(argv=None) -> int:
    return run_command(build_parser().parse_args(argv))


__all__ = ["main", "build_parser"]
