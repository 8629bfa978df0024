"""`hpe-ros process` end to end: synchronised video files of a calibrated synthetic rig -> 2D by a real ONNX
network -> fusion -> 3D skeletons close to the ground truth; bad input exits 2 and writes nothing."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

pytest.importorskip("onnxruntime", reason="needs onnxruntime: pip install '.[onnx]'")
pytest.importorskip("torch", reason="the test network is built with torch: pip install '.[torch]'")

from hpe_ros.cli import main
from hpe_ros.io.calibration import save_rig
from hpe_ros.io.skeleton_json import read_skeleton_json
from hpe_ros.sim import MotionScript
from hpe_ros.sim.keypoint_images import render_keypoint_dots
from hpe_ros.sim.keypoint_net import export_keypoint_net
from hpe_ros.sim.observe import project
from hpe_ros.sim.rig import default_rig

FPS, FRAMES = 30.0, 45


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    root = tmp_path_factory.mktemp("videos")
    rig = default_rig(3)
    save_rig(rig, root / "calib.toml")
    script = MotionScript(n_people=1, seed=3, activities=["walk"])
    truth = np.stack([script.pose(i / FPS)[0] for i in range(FRAMES)])          # (T, 17, 3)
    writers = [cv2.VideoWriter(str(root / f"{c.name}.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), FPS, c.size)
               for c in rig]
    for t in range(FRAMES):
        pixels, depth = project(rig, truth[t])                                  # (C, 17, 2), (C, 17)
        for c, w in enumerate(writers):
            w.write(render_keypoint_dots(pixels[c][None], depth[c][None], size=rig[c].size, radius=5))
    for w in writers:
        w.release()
    model = export_keypoint_net(root / "dots", output="heatmap", input_size=(640, 480))
    return {"root": root, "rig": rig, "truth": truth, "model": model,
            "videos": [str(root / f"{c.name}.mp4") for c in rig]}


def run(session, out, *extra):
    return main(["process", "--videos", *session["videos"], "--calib", str(session["root"] / "calib.toml"),
                 "--out", str(out), "--model", str(session["model"]), "--no-progress", *extra])


def test_videos_become_3d_skeletons_close_to_the_truth(session, tmp_path, capsys):
    out = tmp_path / "walk.json"
    assert run(session, out, "--save-2d", str(tmp_path / "pose2d"), "--format", "json") == 0
    seq = read_skeleton_json(out)
    assert seq.person_ids() == [seq.person_ids()[0]] and len(seq.frames) == FRAMES
    points, _ = seq.track(seq.person_ids()[0])
    seen = np.isfinite(points).all(-1)
    assert seen[10:].mean() > 0.95                       # after the track is born, nearly every joint
    err = np.linalg.norm(points - session["truth"], axis=-1)[seen]
    assert np.median(err) < 0.03, np.median(err)         # metres; dots decoded to ~1 px, smoothed output
    report = json.loads((tmp_path / "walk.report.json").read_text())
    assert report["backend"].startswith("onnxruntime") and report["frames"] == FRAMES
    assert all(row["median_px"] < 3.0 for row in report["reprojection"]["cameras"])
    for cam in session["rig"].names:                     # OpenPose folders that `hpe-ros triangulate` reads
        assert len(list((tmp_path / "pose2d" / cam).glob("*_keypoints.json"))) == FRAMES
    assert "wrote" in capsys.readouterr().out


def test_saved_2d_keypoints_triangulate_offline_to_the_same_result(session, tmp_path):
    assert run(session, tmp_path / "a.json", "--save-2d", str(tmp_path / "pose2d"), "--max-frames", "20") == 0
    dirs = [str(tmp_path / "pose2d" / c) for c in session["rig"].names]
    assert main(["triangulate", "--calib", str(session["root"] / "calib.toml"), "--keypoints", *dirs,
                 "--layout", "coco17", "--out", str(tmp_path / "b.json"), "--no-progress"]) == 0
    sa, sb = read_skeleton_json(tmp_path / "a.json"), read_skeleton_json(tmp_path / "b.json")
    assert len(sa.person_ids()) == len(sb.person_ids()) == 1
    a, b = sa.track(sa.person_ids()[0])[0], sb.track(sb.person_ids()[0])[0]
    assert len(a) == 20 and np.isfinite(a).any()
    np.testing.assert_array_equal(np.isfinite(a), np.isfinite(b))
    assert np.nanmax(np.abs(a - b)) < 1e-3  # saved JSON keeps 4 decimals of a pixel


def test_bad_input_exits_2_and_writes_nothing(session, tmp_path, capsys):
    calib = str(session["root"] / "calib.toml")
    out = tmp_path / "x.json"
    base = ["process", "--calib", calib, "--out", str(out), "--model", str(session["model"]), "--no-progress"]
    assert main(base + ["--videos", *session["videos"][:2]]) == 2                      # too few videos
    assert "3 cameras" in capsys.readouterr().err
    assert main(base + ["--videos", *session["videos"][:2], str(tmp_path / "gone.mp4")]) == 2
    assert "gone.mp4: video file not found" in capsys.readouterr().err
    small = tmp_path / "small.mp4"
    w = cv2.VideoWriter(str(small), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (320, 240))
    w.write(np.zeros((240, 320, 3), np.uint8))
    w.release()
    assert main(base + ["--videos", *session["videos"][:2], str(small)]) == 2
    assert "calibrated at 640x480" in capsys.readouterr().err
    assert main(base[:-3] + ["--model", "no-such-model", "--no-progress", "--videos", *session["videos"]]) == 2
    assert "unknown model" in capsys.readouterr().err
    assert not out.exists() and not (tmp_path / "x.report.json").exists()
