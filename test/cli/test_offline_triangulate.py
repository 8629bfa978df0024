"""`hpe-ros triangulate`: OpenPose JSON folders -> TRC / skeleton JSON + reprojection report, with real files.

The 2D keypoints come from hpe_ros.sim (procedural people, a 4-camera rig, noise, misses, occlusion,
gross outliers, rows shuffled per camera), written as OpenPose JSON folders; the CLI runs through
`hpe_ros.cli.main` and its outputs are read back and scored against the simulator's truth.
"""
import json
import shutil

import numpy as np
import pytest

from hpe_ros.cli import main
from hpe_ros.io import (
    OpenPoseFolder,
    SkeletonFrame,
    read_openpose_frame,
    read_skeleton_json,
    read_trc,
    write_openpose_frame,
    write_skeleton_json,
    write_trc,
)
from hpe_ros.io.calibration import save_toml_rig
from hpe_ros.metrics import match_people
from hpe_ros.sim import MotionScript, default_rig, observe
from hpe_ros.skeleton import convert, convert_scores, get_layout

FRAMES = 40
FPS = 30.0
SKIP = 5  # frames before tracks are born and settled


def make_session(root, layout, n_people, seed=0):
    """Calibration + one OpenPose folder per camera under `root`; returns (calib, dirs, truth (T, P, 17, 3))."""
    root.mkdir(parents=True, exist_ok=True)
    rig = default_rig(4)
    script, rng = MotionScript(n_people=n_people, seed=seed), np.random.default_rng(seed)
    calib = root / "calib.toml"
    save_toml_rig(rig, calib)
    dirs = [root / f"{cam.name}_json" for cam in rig]
    for d in dirs:
        d.mkdir()
    truth = []
    for f in range(FRAMES):
        joints = script.pose(f / FPS)
        truth.append(joints)
        obs = observe(rig, joints, rng)
        for c, cam in enumerate(rig):
            rows = obs.person_ids[c] >= 0
            points, scores = obs.points2d[c, rows], obs.scores[c, rows]
            if layout != "coco17":
                points, scores = convert(points, "coco17", layout), convert_scores(scores, "coco17", layout)
            write_openpose_frame(dirs[c] / f"{cam.name}_{f:012d}_keypoints.json", points, scores)
    return calib, dirs, np.stack(truth)


@pytest.fixture(scope="module")
def sessions(tmp_path_factory):
    base = tmp_path_factory.mktemp("sessions")
    return {
        "coco17": make_session(base / "coco17", "coco17", 2, seed=1),
        "body25": make_session(base / "body25", "body25", 2, seed=1),
        "single": make_session(base / "single", "body25", 1, seed=2),
    }


def copy_session(session, dst):
    calib, dirs, truth = session
    shutil.copy(calib, dst / "calib.toml")
    new_dirs = [dst / d.name for d in dirs]
    for d, n in zip(dirs, new_dirs):
        shutil.copytree(d, n)
    return dst / "calib.toml", new_dirs, truth


def run(calib, dirs, out, *extra):
    return main(["triangulate", "--calib", str(calib), "--keypoints", *map(str, dirs), "--out", str(out),
                 "--no-progress", *extra])


def mpjpe_mm(points_by_frame, truth, layout):
    """Mean joint error (mm) over frames >= SKIP, predicted persons matched to truth by distance."""
    errors = []
    for t, pred in points_by_frame:
        if t < SKIP or len(pred) == 0:
            continue
        pred = convert(pred, layout, "coco17")
        for p, g in match_people(pred, truth[t]):
            e = np.linalg.norm(pred[p] - truth[t][g], axis=-1)
            errors.append(e[np.isfinite(e)])
    return 1e3 * float(np.concatenate(errors).mean())


# --- file formats ---------------------------------------------------------------------------------
def test_openpose_frame_round_trip_and_missing_keypoints(tmp_path):
    points = np.random.default_rng(0).uniform(1, 600, (2, 17, 2))
    scores = np.full((2, 17), 0.75)
    points[0, 3], scores[1, 5] = np.nan, 0.0
    path = write_openpose_frame(tmp_path / "f_000000000003_keypoints.json", points, scores)
    p, s = read_openpose_frame(path, "coco17")
    assert p.shape == (2, 17, 2) and s.shape == (2, 17)
    assert np.isnan(p[0, 3]).all() and s[0, 3] == 0 and np.isnan(p[1, 5]).all() and s[1, 5] == 0
    ok = s > 0
    np.testing.assert_allclose(p[ok], points[ok], atol=1e-4)
    np.testing.assert_allclose(s[ok], 0.75)
    # x = y = 0 with a confidence, and c = 0 with a position, are both missing
    raw = [0.0, 0.0, 0.8, 5.0, 6.0, 0.0] + [1.0, 2.0, 0.5] * 15
    (tmp_path / "odd.json").write_text(json.dumps({"people": [{"pose_keypoints_2d": raw}]}))
    p, s = read_openpose_frame(tmp_path / "odd.json", "coco17")
    assert np.isnan(p[0, :2]).all() and (s[0, :2] == 0).all() and s[0, 2] == 0.5


def test_openpose_folder_orders_frames_naturally_and_tolerates_gaps(tmp_path):
    pts, sc = np.full((1, 17, 2), 100.0), np.full((1, 17), 0.9)
    for n in (10, 2, 1):
        write_openpose_frame(tmp_path / f"cam_{n}_keypoints.json", pts + n, sc)
    (tmp_path / "cam_11_keypoints.json").write_text("")                    # empty file: no detections
    folder = OpenPoseFolder(tmp_path, "coco17")
    assert folder.frame_indices == [1, 2, 10, 11] and len(folder) == 4
    assert folder[10][0][0, 0, 0] == 110
    assert folder.get(11)[0].shape == (0, 17, 2) and folder.get(5)[0].shape == (0, 17, 2)
    assert (folder.empty_frames, folder.missing_frames) == (1, 1)
    other = tmp_path / "names"
    other.mkdir()
    for name in ("b.json", "a.json"):
        write_openpose_frame(other / name, pts, sc)
    assert OpenPoseFolder(other, "coco17").path(0).name == "a.json"        # no digits: name order


def test_openpose_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="bad.json: not an OpenPose JSON"):
        read_openpose_frame(bad, "body25")
    bad.write_text(json.dumps({"persons": []}))
    with pytest.raises(ValueError, match='bad.json: no "people"'):
        read_openpose_frame(bad, "body25")
    bad.write_text(json.dumps({"people": [{"pose_keypoints_2d": [1.0] * 50}]}))
    with pytest.raises(ValueError, match="bad.json: person 0: .*50 values, not a multiple of 3"):
        read_openpose_frame(bad, "body25")
    bad.write_text(json.dumps({"people": [{"pose_keypoints_2d": [1.0] * 51}]}))
    with pytest.raises(ValueError, match="bad.json: person 0 has 17 keypoints but layout body25 has 25; "
                                         "--layout coco17 .*would match"):
        read_openpose_frame(bad, "body25")
    bad.write_text(json.dumps({"people": []}))
    assert read_openpose_frame(bad, "body25")[0].shape == (0, 25, 2)
    with pytest.raises(ValueError, match="keypoint folder not found"):
        OpenPoseFolder(tmp_path / "nope", "body25")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="empty: no .json keypoint files"):
        OpenPoseFolder(tmp_path / "empty", "body25")


def test_trc_round_trip_with_missing_markers_and_y_up(tmp_path):
    rng = np.random.default_rng(0)
    points = rng.normal(size=(4, 3, 3))
    points[1, 2] = np.nan                                                  # last marker missing
    points[2, 0] = np.nan
    names = ["nose", "left_hip", "right_hip"]
    path = write_trc(tmp_path / "a.trc", points, names, 30.0, frame_numbers=[7, 8, 9, 10])
    lines = path.read_text().split("\n")
    assert lines[0] == "PathFileType\t4\t(X/Y/Z)\ta.trc"
    assert lines[1].split("\t") == ["DataRate", "CameraRate", "NumFrames", "NumMarkers", "Units", "OrigDataRate",
                                    "OrigDataStartFrame", "OrigNumFrames"]
    assert lines[2].split("\t") == ["30", "30", "4", "3", "m", "30", "7", "4"]
    assert lines[3].split("\t")[:3] == ["Frame#", "Time", "nose"] and lines[5] == ""
    row = lines[7].split("\t")                 # frame 8: tab-terminated fields, last marker's empty
    assert len(row) == 2 + 3 * 3 + 1 and row[-4:] == ["", "", "", ""] and row[0] == "8"
    trc = read_trc(path)
    assert trc.marker_names == names and trc.fps == 30.0
    np.testing.assert_array_equal(trc.frame_numbers, [7, 8, 9, 10])
    np.testing.assert_allclose(trc.times, np.array([7, 8, 9, 10]) / 30.0, atol=1e-6)
    np.testing.assert_allclose(trc.points, points, atol=1e-6)               # NaN where NaN
    yup = read_trc(write_trc(tmp_path / "b.trc", points, names, 30.0, y_up=True, missing="nan")).points
    np.testing.assert_allclose(yup, points[..., [1, 2, 0]], atol=1e-6)      # Pose2Sim's z-up -> y-up
    assert "NaN" in (tmp_path / "b.trc").read_text()


def test_skeleton_json_round_trip(tmp_path):
    pts = np.zeros((2, 17, 3))
    pts[1, 4] = np.nan
    frames = [SkeletonFrame(3, np.array([5, 9]), pts, np.full((2, 17), 0.8)),
              SkeletonFrame(4, np.zeros(0, dtype=int), np.zeros((0, 17, 3)), np.zeros((0, 17)))]   # nobody
    path = write_skeleton_json(tmp_path / "s.json", "coco17", 25.0, frames)
    doc = json.loads(path.read_text())
    assert doc["layout"] == "coco17" and doc["fps"] == 25.0 and doc["joint_names"][0] == "nose"
    assert doc["frames"][0]["persons"][1]["keypoints"][4] == [None, None, None, 0.0]
    seq = read_skeleton_json(path)
    assert seq.person_ids() == [5, 9] and [f.index for f in seq.frames] == [3, 4]
    assert np.isnan(seq.frames[0].points[1, 4]).all() and seq.frames[0].confidence[1, 4] == 0


# --- the CLI end to end ---------------------------------------------------------------------------
@pytest.mark.parametrize("layout", ["coco17", "body25"])
def test_two_people_give_json_with_two_ids_close_to_truth(sessions, tmp_path, layout, capsys):
    calib, dirs, truth = sessions[layout]
    assert run(calib, dirs, tmp_path / "out" / "run", "--layout", layout) == 0
    seq = read_skeleton_json(tmp_path / "out" / "run.json")
    assert seq.layout == layout and seq.joint_names == list(get_layout(layout).joint_names)
    assert len(seq.frames) == FRAMES and len(seq.person_ids()) == 2
    error = mpjpe_mm([(f.index, f.points) for f in seq.frames], truth, layout)
    assert error < 40, error
    assert all(len(f.ids) == 2 for f in seq.frames[SKIP:])
    report = json.loads((tmp_path / "out" / "run.report.json").read_text())
    cams = report["reprojection"]["cameras"]
    assert [c["camera"] for c in cams] == ["cam0", "cam1", "cam2", "cam3"]
    assert all(c["joints"] > 500 and c["median_px"] < 5 and c["p90_px"] >= c["median_px"] for c in cams)
    assert report["person_ids"] == seq.person_ids() and report["output"]["format"] == "json"
    printed = capsys.readouterr().out
    assert "median px" in printed and "cam3" in printed and "run.json" in printed


def test_one_person_gives_trc(sessions, tmp_path):
    calib, dirs, truth = sessions["single"]
    assert run(calib, dirs, tmp_path / "walk") == 0
    assert not (tmp_path / "walk.json").exists()
    trc = read_trc(tmp_path / "walk.trc")
    names = list(get_layout("body25").joint_names)
    assert trc.marker_names == names and trc.header["NumMarkers"] == "25" and trc.header["Units"] == "m"
    assert trc.header["DataRate"] == "30" and int(trc.header["NumFrames"]) == len(trc.points)
    # whole-clip tracks (the default): the person is output in every frame
    assert len(trc.points) == FRAMES and trc.frame_numbers[-1] == FRAMES - 1
    assert trc.header["OrigDataStartFrame"] == str(trc.frame_numbers[0])
    np.testing.assert_allclose(trc.times, trc.frame_numbers / FPS, atol=1e-6)
    error = mpjpe_mm([(t, p[None]) for t, p in zip(trc.frame_numbers, trc.points)], truth, "body25")
    assert error < 40, error
    assert np.isnan(trc.points[:, names.index("left_big_toe")]).all()   # feet: not in the COCO-17 input
    report = json.loads((tmp_path / "walk.report.json").read_text())
    assert len(report["reprojection"]["cameras"]) == 4 and report["output"]["person_id"] == report["person_ids"][0]
    # --y-up: the same numbers, Pose2Sim's axes
    assert run(calib, dirs, tmp_path / "walk_y", "--y-up") == 0
    np.testing.assert_allclose(read_trc(tmp_path / "walk_y.trc").points, trc.points[..., [1, 2, 0]], atol=1e-6)


def test_causal_gives_the_live_tracks_and_the_report_counts_frames(sessions, tmp_path, capsys):
    calib, dirs, truth = sessions["single"]
    assert run(calib, dirs, tmp_path / "clip") == 0
    assert run(calib, dirs, tmp_path / "live", "--causal") == 0
    assert "tracking: causal" in capsys.readouterr().out
    clip, live = read_trc(tmp_path / "clip.trc"), read_trc(tmp_path / "live.trc")
    # the live tracker outputs a person from track birth (a few frames in) to the last frame
    assert FRAMES - SKIP <= len(live.points) < FRAMES and live.frame_numbers[-1] == FRAMES - 1
    report = json.loads((tmp_path / "clip.report.json").read_text())["tracking"]
    assert report["mode"] == "whole clip" and report["frames_in"] == report["frames_with_people"] == FRAMES
    assert (report["kept"], report["dropped"], report["max_gap_frames"]) == (1, 0, 10)
    assert report["smoothing"].startswith("butterworth")
    live_report = json.loads((tmp_path / "live.report.json").read_text())["tracking"]
    assert live_report == {"frames_in": FRAMES, "frames_with_people": len(live.points), "mode": "causal"}
    # every frame, as close to the truth as the live output on the frames both have
    both = [(t, p[None]) for t, p in zip(clip.frame_numbers, clip.points) if t >= SKIP]
    live_err = mpjpe_mm([(t, p[None]) for t, p in zip(live.frame_numbers, live.points)], truth, "body25")
    assert mpjpe_mm(both, truth, "body25") < live_err + 5


def test_clip_options(sessions, tmp_path, capsys):
    calib, dirs, _ = sessions["single"]
    assert run(calib, dirs, tmp_path / "raw", "--no-smooth", "--fill-gaps", "0", "--min-track-frames", "1") == 0
    report = json.loads((tmp_path / "raw.report.json").read_text())["tracking"]
    assert (report["smoothing"], report["max_gap_frames"], report["joints_filled"]) == ("off", 0, 0)
    assert run(calib, dirs, tmp_path / "soft", "--smooth-cutoff", "3") == 0
    smooth = json.loads((tmp_path / "soft.report.json").read_text())["tracking"]["smoothing"]
    assert "3 Hz" in smooth
    assert "smoothing: butterworth filtfilt, order 4, 3 Hz" in capsys.readouterr().out


def test_format_trc_keeps_the_longest_lived_of_two(sessions, tmp_path):
    calib, dirs, _ = sessions["coco17"]
    assert run(calib, dirs, tmp_path / "two.trc", "--layout", "coco17") == 0   # the suffix picks TRC
    report = json.loads((tmp_path / "two.report.json").read_text())
    assert len(report["person_ids"]) == 2 and report["output"]["format"] == "trc"
    frames = report["frames_per_id"]
    assert frames[str(report["output"]["person_id"])] == max(frames.values())
    assert read_trc(tmp_path / "two.trc").points.shape[1:] == (17, 3)
    assert run(calib, dirs, tmp_path / "x.trc", "--format", "json") == 2      # contradiction, caught up front
    assert not (tmp_path / "x.json").exists()


# --- bad input ------------------------------------------------------------------------------------
def test_corrupt_calibration_exits_2_and_writes_nothing(sessions, tmp_path, capsys):
    calib, dirs, _ = sessions["single"]
    bad = tmp_path / "calib.toml"
    bad.write_text(calib.read_text().replace("[cam1]", "[cam1", 1))  # a TOML syntax error
    assert run(bad, dirs, tmp_path / "out") == 2
    assert "calib.toml" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["calib.toml"]


def test_empty_file_and_missing_frame_are_tolerated(sessions, tmp_path, caplog):
    calib, dirs, truth = copy_session(sessions["single"], tmp_path)
    for f in (20, 22):
        (dirs[0] / f"cam0_{f:012d}_keypoints.json").write_text("")
    (dirs[0] / "cam0_000000000023_keypoints.json").write_text('{"people": []}')
    (dirs[1] / "cam1_000000000021_keypoints.json").unlink()
    with caplog.at_level("WARNING"):
        assert run(calib, dirs, tmp_path / "walk") == 0
    warned = [r.getMessage() for r in caplog.records if r.name == "hpe_ros.io.openpose"]
    assert len(warned) == 2 and "cam0_000000000020" in warned[0] and "frame 21" in warned[1]  # once per camera
    report = json.loads((tmp_path / "walk.report.json").read_text())
    assert report["inputs"][0]["frames_without_people"] == 3 and report["inputs"][1]["frames_without_file"] == 1
    trc = read_trc(tmp_path / "walk.trc")
    assert {20, 21} <= set(trc.frame_numbers.tolist()) and np.isfinite(trc.points[-1]).any()


def test_wrongly_sized_keypoints_are_skipped_and_named(sessions, tmp_path, capsys):
    calib, dirs, _ = copy_session(sessions["single"], tmp_path)
    bad = dirs[2] / "cam2_000000000007_keypoints.json"
    bad.write_text(json.dumps({"people": [{"pose_keypoints_2d": [100.0, 100.0, 0.9] * 17}]}))
    assert run(calib, dirs, tmp_path / "walk") == 0
    assert "skipped 1 bad input entries (cam2 1 bad person entries)" in capsys.readouterr().out
    report = json.loads((tmp_path / "walk.report.json").read_text())
    entry = report["skipped"]["entries"][0]
    assert (entry["camera"], entry["file"], entry["entry"]) == ("cam2", str(bad), "person 0")
    assert "17 keypoints but layout body25 has 25" in entry["reason"] and "coco17" in entry["reason"]
    assert 7 in read_trc(tmp_path / "walk.trc").frame_numbers.tolist()


def test_keypoints_all_in_another_layout_stop_the_run(sessions, tmp_path, capsys):
    calib, dirs, _ = sessions["coco17"]
    assert run(calib, dirs, tmp_path / "walk", "--layout", "body25") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "nothing usable" in err and "--layout coco17" in err
    assert list(tmp_path.iterdir()) == []


def test_folder_count_must_match_the_cameras(sessions, tmp_path, capsys):
    calib, dirs, _ = sessions["single"]
    assert run(calib, dirs[:3], tmp_path / "walk") == 2
    err = capsys.readouterr().err
    assert "4 cameras (cam0, cam1, cam2, cam3)" in err and "3 keypoint folders" in err
    assert list(tmp_path.iterdir()) == []


def test_camera_named_folders_give_the_same_result_in_any_order(sessions, tmp_path, capsys):
    calib, dirs, _ = sessions["single"]
    assert run(calib, dirs, tmp_path / "listed") == 0
    named = [f"cam{c}={dirs[c]}" for c in (2, 0, 3, 1)]
    assert run(calib, named, tmp_path / "named") == 0
    assert read_trc(tmp_path / "named.trc").points.tobytes() == read_trc(tmp_path / "listed.trc").points.tobytes()
    capsys.readouterr()
    assert run(calib, named[:3], tmp_path / "three") == 2
    assert "no keypoint folder for camera(s) ['cam1']" in capsys.readouterr().err


def test_folders_in_another_order_than_the_cameras_are_flagged(sessions, tmp_path, caplog):
    calib, dirs, _ = sessions["single"]
    swapped = [dirs[1], dirs[0], dirs[2], dirs[3]]
    with caplog.at_level("WARNING"):
        assert run(calib, swapped, tmp_path / "walk", "--format", "json") == 0
    assert any("look like cameras ['cam1', 'cam0', 'cam2', 'cam3']" in r.getMessage() for r in caplog.records)
    cams = json.loads((tmp_path / "walk.report.json").read_text())["reprojection"]["cameras"]
    assert cams[0]["median_px"] > 1.5 * cams[2]["median_px"]    # the report shows which cameras disagree
