"""2D detections of the Pose2Sim demo videos, computed once per demo and backend and cached.

`demo_detections(backend, demo)` runs ``hpe-ros process --save-2d --no-guided-crops`` on the demo's four
videos (100 frames each) and keeps the OpenPose JSON folders under ``<corpus root>/detections/<demo>/
<backend>-coco17/<camera>``, so later runs read them instead of detecting again (a few minutes on CPU).
No guided crops: they project the first pass's 3D through the Qualisys extrinsics, which a calibration
from people must not lean on (on Demo_SinglePerson the two give identical files). The videos of
Demo_SinglePerson's cam01 and cam02 are 1080 px wide while Calib.qca.txt says 1088: ``process`` takes
the difference as codec padding (warned; intrinsics unchanged).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from hpe_ros.camera import Rig
from hpe_ros.io.qualisys import load_qualisys_rig
from hpe_ros.realdata import corpus_root, demo_dir

DEMO = "Demo_SinglePerson"
LAYOUT = "coco17"


def demo_calibration_file() -> Path:
    """The Qualisys calibration file of the demo cameras (cam01..cam04; every demo shares it)."""
    return demo_dir(DEMO) / "calibration" / "Calib.qca.txt"


def demo_rig() -> Rig:
    """The Qualisys calibration of the demo cameras, loaded."""
    return load_qualisys_rig(demo_calibration_file())


def demo_detections(backend: str = "blazepose", demo: str = DEMO) -> list[Path]:
    """One OpenPose JSON folder per camera of `demo` (Qualisys order), detected by `backend` once and cached."""
    rig = demo_rig()
    cache = corpus_root() / "detections" / demo / f"{backend}-{LAYOUT}"
    folders = [cache / name for name in rig.names]
    if all(f.is_dir() and any(f.iterdir()) for f in folders):
        return folders
    videos = [demo_dir(demo) / "videos" / f"{name}.mp4" for name in rig.names]
    cache.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".detect-", dir=cache.parent))
    calib_file = demo_calibration_file()
    try:
        command = [sys.executable, "-m", "hpe_ros.cli", "process", "--videos", *map(str, videos),
                   "--calib", str(calib_file), "--out", str(work / "poses"),
                   "--backend", backend, "--layout", LAYOUT, "--save-2d", str(work / "2d"), "--no-guided-crops",
                   "--no-progress"]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"hpe-ros process ({backend}) failed: {result.stderr.strip()[-500:]}")
        if cache.exists():
            shutil.rmtree(cache)
        os.replace(work / "2d", cache)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return folders
