"""`hpe-ros process` with its defaults (blazepose, guided crops) on Pose2Sim's two-person demo: both people
tracked through every one of the clip's 100 frames under two stable ids."""
from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("mediapipe", reason="the blazepose backend's weights are in mediapipe==0.10.14's wheel")
pytest.importorskip("onnxruntime")
pytest.importorskip("tflite", reason="reads the BlazePose .tflite files for their ONNX conversion")
pytest.importorskip("onnx")

from hpe_ros.cli import main

pytestmark = [pytest.mark.realdata, pytest.mark.timeout(900)]   # ~1 min of CPU; minutes on a loaded machine


def test_default_process_tracks_both_people_through_every_frame(realdata_demo, tmp_path, capsys):
    demo = realdata_demo("Demo_MultiPerson")
    out = tmp_path / "skeletons"
    code = main(["process", "--videos", *[str(demo / "videos" / f"cam0{k}.mp4") for k in range(1, 5)],
                 "--calib", str(demo / "calibration" / "Calib.qca.txt"), "--out", str(out), "--format", "json",
                 "--no-progress"])
    assert code == 0
    printed = capsys.readouterr()
    assert "2D pose: blazepose[" in printed.out and "guided crops: second pass" in printed.out
    assert "XNNPACK" not in printed.err and "W0000" not in printed.err
    report = json.loads((tmp_path / "skeletons.report.json").read_text())
    assert report["frames"] == 100
    assert report["person_ids"] == [0, 1] and report["frames_per_id"] == {"0": 100, "1": 100}
    assert report["backend"].startswith("blazepose[") and report["backend"].endswith("+guided")
    skeletons = json.loads(out.with_suffix(".json").read_text())
    frames = skeletons["frames"]
    assert len(frames) == 100
    # two distinct people (not one seen twice): their centres (mean of the joints output) stay apart
    centres = np.array([[np.nanmean(np.array(p["keypoints"], dtype=float)[:, :3], axis=0)
                         for p in sorted(f["persons"], key=lambda p: p["id"])] for f in frames])
    assert centres.shape == (100, 2, 3) and np.isfinite(centres).all()
    assert (np.linalg.norm(centres[:, 0] - centres[:, 1], axis=-1) > 0.3).all()
