"""OpenPose JSON reading on real folders: bad entries are skipped and recorded (file, entry, reason), the good
detections are kept, and only a recording with nothing usable is an error."""
from __future__ import annotations

import json

import numpy as np
import pytest

from hpe_ros.io.openpose import OpenPoseFolder, SynchronisedOpenPose, read_openpose_frame

BODY25 = [float(v) for j in range(25) for v in (100.0 + j, 200.0 + j, 0.8)]


def write(path, people, prefix=b""):
    path.write_bytes(prefix + json.dumps({"version": 1.3, "people": people}).encode())
    return path


def test_a_bad_person_is_skipped_into_the_list_and_the_others_kept(tmp_path):
    path = write(tmp_path / "f.json", [{"pose_keypoints_2d": BODY25}, {"face_keypoints_2d": []},
                                       {"pose_keypoints_2d": [1.0, 2.0, 0.5] * 18}, "not a person",
                                       {"pose_keypoints_2d": BODY25[:-1]}, {"pose_keypoints_2d": BODY25}])
    skipped = []
    points, scores = read_openpose_frame(path, "body25", skipped)
    assert points.shape == (2, 25, 2) and points[1, 3].tolist() == [103.0, 203.0] and scores.min() == 0.8
    assert [(s["entry"], s["reason"]) for s in skipped] == [
        ("person 1", 'has no "pose_keypoints_2d" list'),
        ("person 2", "has 18 keypoints but layout body25 has 25; no known layout has that many"),
        ("person 3", 'has no "pose_keypoints_2d" list'),
        ("person 4", "pose_keypoints_2d has 74 values, not a multiple of 3 (x, y, confidence per keypoint)")]
    assert all(s["file"] == str(path) for s in skipped)
    with pytest.raises(ValueError, match=r"f.json: person 1 has no \"pose_keypoints_2d\" list"):
        read_openpose_frame(path, "body25")                       # without a list: the first problem raises


def test_a_byte_order_mark_is_accepted(tmp_path):
    path = write(tmp_path / "bom.json", [{"pose_keypoints_2d": BODY25}], prefix=b"\xef\xbb\xbf")
    points, _ = read_openpose_frame(path, "body25")
    assert points.shape == (1, 25, 2)


def test_folder_skips_bad_files_ignores_other_files_and_keeps_the_good_frames(tmp_path, caplog):
    d = tmp_path / "cam0"
    d.mkdir()
    for f in range(6):
        write(d / f"cam0_{f:012d}_keypoints.json", [{"pose_keypoints_2d": BODY25}])
    (d / "cam0_000000000001_keypoints.json").write_text('{"people": [{"pose_keypoi')       # truncated
    (d / "cam0_000000000002_keypoints.json").write_bytes(b"\xff\xfe{\x00")                 # UTF-16, not UTF-8
    write(d / "cam0_000000000003_keypoints.json", [{"pose_keypoints_2d": BODY25}], prefix=b"\xef\xbb\xbf")
    (d / "cam0_000000000004_keypoints.json").write_text('{"people": []}')
    (d / "notes.txt").write_text("not keypoints")
    (d / "cam0.avi").write_bytes(b"RIFF")
    folder = OpenPoseFolder(d, "body25")
    with caplog.at_level("WARNING"):
        counts = [len(folder.get(f)[0]) for f in range(7)]
    assert counts == [1, 0, 0, 1, 0, 1, 0]
    assert (folder.bad_files, folder.skipped_people, folder.ignored_files) == (2, 0, 2)
    assert (folder.empty_frames, folder.missing_frames, folder.read_files, folder.people) == (1, 1, 4, 3)
    reasons = {s["file"].rsplit("_", 2)[1]: s["reason"] for s in folder.skipped}
    assert reasons["000000000001"].startswith("not an OpenPose JSON file (Unterminated string")
    assert reasons["000000000002"].startswith("not an OpenPose JSON file (invalid UTF-8")
    skip_logs = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert len(skip_logs) == 1 and "cam0_000000000001_keypoints.json: not an OpenPose JSON file" in skip_logs[0]


def test_synchronised_reader_reports_per_camera_and_stops_only_on_nothing_usable(tmp_path):
    dirs = [tmp_path / "cam0", tmp_path / "cam1"]
    for d in dirs:
        d.mkdir()
        for f in range(4):
            write(d / f"{d.name}_{f:012d}_keypoints.json", [{"pose_keypoints_2d": BODY25}])
    (dirs[1] / "cam1_000000000002_keypoints.json").write_text("{")
    rec = SynchronisedOpenPose(dirs, "body25")
    frames, points, scores = rec.read_all()
    assert frames.tolist() == [0, 1, 2, 3] and np.isfinite(points[:, 0]).all()
    assert np.isfinite(points[[0, 1, 3], 1]).all() and not np.isfinite(points[2, 1]).any()
    report = rec.skip_report()
    assert report["total"] == 1
    assert report["per_camera"]["cam1"] == {"bad_files": 1, "bad_person_entries": 0, "ignored_files": 0}
    assert report["entries"][0]["camera"] == "cam1" and report["entries"][0]["entry"] is None
    assert rec.inputs()[1]["files_skipped"] == 1

    for d in dirs:                                                    # every body in another layout's length
        for f in d.glob("*.json"):
            write(f, [{"pose_keypoints_2d": [1.0, 2.0, 0.9] * 17}])
    with pytest.raises(ValueError, match=r"nothing usable in the keypoint folders: 8 files, 0 unusable, 8 person "
                                         r"entries skipped, none kept; first: .*cam0_000000000000_keypoints.json, "
                                         r"person 0: has 17 keypoints but layout body25 has 25; --layout coco17"):
        SynchronisedOpenPose(dirs, "body25").read_all()
    for d in dirs:                                                    # only empty frames: not an error
        for f in d.glob("*.json"):
            f.write_text('{"people": []}')
    frames, points, _ = SynchronisedOpenPose(dirs, "body25").read_all()
    assert len(frames) == 4 and points.shape[2] == 0
