"""`hpe-ros calibrate from-people` end to end on OpenPose folders of the synthetic rig; bad input exits 2."""
from __future__ import annotations

import json

import numpy as np

from hpe_ros.calibration.compare import compare_rigs
from hpe_ros.cli import main
from hpe_ros.io.calibration import load_rig, save_rig
from hpe_ros.io.openpose import write_openpose_frame
from hpe_ros.sim import MotionScript, default_rig, observe


def test_from_people_writes_a_rig_close_to_the_truth(tmp_path, capsys):
    rig = default_rig(4)
    script = MotionScript(n_people=1, seed=5, activities=["walk"])
    rng = np.random.default_rng(5)
    dirs = [tmp_path / c.name for c in rig]
    for d in dirs:
        d.mkdir()
    for f in range(150):  # 15 s at 10 fps
        obs = observe(rig, script.pose(f / 10.0), rng, noise_px=2.0, outlier_rate=0.05)
        for c, d in enumerate(dirs):
            rows = obs.person_ids[c] >= 0
            path = d / f"{rig[c].name}_{f:012d}_keypoints.json"
            write_openpose_frame(path, obs.points2d[c][rows], obs.scores[c][rows])
    intrinsics = tmp_path / "intrinsics.toml"
    save_rig(rig, intrinsics)  # extrinsics in the file are ignored by from-people
    out = tmp_path / "rig.toml"
    rc = main(["calibrate", "from-people", "--calib", str(intrinsics), "--keypoints", *map(str, dirs),
               "--layout", "coco17", "--out", str(out), "--person-height", f"{script.heights[0]:.4f}",
               "--no-progress"])
    assert rc == 0, capsys.readouterr().err
    cmp = compare_rigs(load_rig(out), rig)
    assert cmp["max_rotation_error_deg"] < 0.5 and cmp["max_centre_error_mm"] < 20
    assert abs(cmp["scale_error_pct"]) < 2
    assert (tmp_path / "rig.toml.report.json").is_file()
    assert main(["calibrate", "from-people", "--calib", str(intrinsics), "--keypoints", *map(str, dirs[:3]),
                 "--layout", "coco17", "--out", str(tmp_path / "x.toml"), "--no-progress"]) == 2
    assert "4 cameras" in capsys.readouterr().err and not (tmp_path / "x.toml").exists()


def test_bad_board_spec_exits_2(tmp_path, capsys):
    assert main(["calibrate", "board", "--board", "checkers:9x6", "--images", f"cam0={tmp_path}",
                 "--out", str(tmp_path / "b.toml")]) == 2
    assert "checkerboard:COLSxROWS:SQUARE_M" in capsys.readouterr().err


def test_convert_round_trip_and_corrupt_input(tmp_path, capsys):
    rig = default_rig(3)
    save_rig(rig, tmp_path / "a.toml")
    assert main(["calibrate", "convert", str(tmp_path / "a.toml"), str(tmp_path / "b.yaml"), "--to", "opencv"]) == 0
    assert main(["calibrate", "convert", str(tmp_path / "b.yaml"), str(tmp_path / "c.toml")]) == 0
    back = load_rig(tmp_path / "c.toml")
    for c0, c1 in zip(rig, back):
        np.testing.assert_allclose(c1.R, c0.R, atol=1e-9)
        np.testing.assert_allclose(c1.t, c0.t, atol=1e-9)
    text = (tmp_path / "a.toml").read_text()
    (tmp_path / "bad.toml").write_text(text.replace("size = [ 640, 480,]", "size = [ -640, 480,]", 1)
                                       if "size = [ 640, 480,]" in text else text.replace("640", "-640", 1))
    assert main(["calibrate", "convert", str(tmp_path / "bad.toml"), str(tmp_path / "d.toml")]) == 2
    err = capsys.readouterr().err
    assert "cam0" in err and not (tmp_path / "d.toml").exists()


def test_from_people_pools_repeated_keypoints_groups(tmp_path, capsys):
    """Two recordings of one rig (repeated --keypoints): both used, each one's people its own."""
    rig = default_rig(4)
    rng = np.random.default_rng(6)
    groups = []
    for k, (seed, n_people) in enumerate([(6, 1), (7, 2)]):
        script = MotionScript(n_people=n_people, seed=seed, activities=["walk"])
        dirs = [tmp_path / f"rec{k}" / c.name for c in rig]
        for d in dirs:
            d.mkdir(parents=True)
        for f in range(60):
            obs = observe(rig, script.pose(f / 10.0), rng, noise_px=2.0)
            for c, d in enumerate(dirs):
                rows = obs.person_ids[c] >= 0
                write_openpose_frame(d / f"{rig[c].name}_{f:012d}_keypoints.json", obs.points2d[c][rows],
                                     obs.scores[c][rows])
        groups += ["--keypoints", *map(str, dirs)]
    save_rig(rig, tmp_path / "intrinsics.toml")
    out = tmp_path / "rig.toml"
    assert main(["calibrate", "from-people", "--calib", str(tmp_path / "intrinsics.toml"), *groups,
                 "--layout", "coco17", "--out", str(out), "--no-progress"]) == 0, capsys.readouterr().err
    assert "data (2 recordings): 120 frames" in capsys.readouterr().out
    report = json.loads((tmp_path / "rig.toml.report.json").read_text())
    assert report["frames"]["recordings"] == [60, 60] and report["frames"]["total"] == 120
    assert report["people"]["tracks"] == 3                      # one person, then two: no track spans both
    assert compare_rigs(load_rig(out), rig)["max_rotation_error_deg"] < 0.5
