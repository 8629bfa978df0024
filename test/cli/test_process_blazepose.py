"""`hpe-ros process --backend blazepose` on the Pose2Sim multi-person demo: both people come out in 3D."""
from __future__ import annotations

import json

import pytest

pytest.importorskip("mediapipe", reason="needs mediapipe==0.10.14 (the BlazePose weights)")
pytest.importorskip("ai_edge_litert.interpreter", reason="needs ai-edge-litert: pip install '.[blazepose]'")
pytestmark = [pytest.mark.realdata, pytest.mark.timeout(300)]

from hpe_ros.cli import main  # noqa: E402


def test_two_people_of_the_multi_person_demo_are_fused(realdata_demo, tmp_path):
    demo = realdata_demo("Demo_MultiPerson")
    videos = [str(demo / "videos" / f"cam0{i}.mp4") for i in range(1, 5)]
    out = tmp_path / "out.json"
    # From frame 10 on the second person is in view of the detector (tracked after that).
    assert main(["process", "--videos", *videos, "--calib", str(demo / "calibration" / "Calib.qca.txt"),
                 "--out", str(out), "--backend", "blazepose", "--blazepose-runtime", "tflite",
                 "--detect-every", "10", "--max-frames", "24", "--no-progress"]) == 0
    report = json.loads((tmp_path / "out.report.json").read_text())
    assert report["person_ids"] == [0, 1]
    assert min(report["frames_per_id"].values()) >= 12
    for cam in report["reprojection"]["cameras"]:     # every camera contributes, within a sensible error
        assert cam["joints"] > 0 and cam["median_px"] < 25.0, cam
