"""2D keypoint JSON lines (hpe_ros.io.pose2d_jsonl) and recordings stored in them (hpe_ros.lift.recordings).

1. A simulated recording survives save_recording_jsonl / load_recording_jsonl exactly (2D, NaN where missing).
2. Malformed files are refused with a ValueError naming the line and what is wrong.
3. The writer is atomic: a failure leaves no file, or the previous one unchanged, and no temp file.
4. `hpe-ros train-lifter --method epipolar --jsonl F --calib C` trains and exports lifter.onnx.
"""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from hpe_ros.io import pose2d_jsonl
from hpe_ros.io.calibration import save_rig
from hpe_ros.io.pose2d_jsonl import FORMAT, read_pose2d_jsonl, write_pose2d_jsonl
from hpe_ros.lift.recordings import load_recording_jsonl, save_recording_jsonl, simulate_recording
from hpe_ros.sim.rig import default_rig

J = 17


@pytest.fixture(scope="module")
def rig():
    return default_rig(3)


@pytest.fixture(scope="module")
def recording(rig):
    return simulate_recording(rig, seconds=3.0, fps=10.0, n_people=2, seed=0)


def _same_2d(a_points, a_scores, b_points, b_scores):
    """Equal detections up to trailing all-missing rows; NaN / score 0 wherever a joint is missing."""
    P = max(a_points.shape[2], b_points.shape[2])

    def pad(points, scores):
        F, C, p = scores.shape[:3]
        pts = np.concatenate([points, np.full((F, C, P - p, J, 2), np.nan)], 2)
        sc = np.concatenate([scores, np.zeros((F, C, P - p, J))], 2)
        ok = np.isfinite(pts).all(-1) & np.isfinite(sc) & (sc > 0)
        return np.where(ok[..., None], pts, np.nan), np.where(ok, sc, 0.0)

    ap, asc = pad(a_points, a_scores)
    bp, bsc = pad(b_points, b_scores)
    np.testing.assert_array_equal(ap, bp)                # NaN == NaN for assert_array_equal
    np.testing.assert_array_equal(asc, bsc)


def test_round_trip_simulated_recording(tmp_path, rig, recording):
    assert (recording.scores == 0).any() and (recording.scores > 0).any()   # has missing and present joints
    path = tmp_path / "rec.jsonl"
    save_recording_jsonl(recording, path, fps=10.0)
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 1 + recording.num_frames
    assert json.loads(lines[0]) == {"format": FORMAT, "layout": "coco17", "cameras": rig.names, "fps": 10.0}

    # By a calibration file and by a Rig.
    save_rig(rig, tmp_path / "calib.toml")
    for calib in (tmp_path / "calib.toml", rig):
        back = load_recording_jsonl(calib, path)
        assert back.rig.names == rig.names and back.layout == "coco17"
        assert back.truth is None and back.person_ids is None
        np.testing.assert_array_equal(back.stamps, recording.stamps)
        _same_2d(recording.points2d, recording.scores, back.points2d, back.scores)

    # Row positions survive: camera 1's row 0 empty while row 1 is seen; an all-empty frame of camera 2.
    points, scores = recording.points2d.copy(), recording.scores.copy()
    points[:5, 1, 0], scores[:5, 1, 0] = np.nan, 0.0
    points[7, 2], scores[7, 2] = np.nan, 0.0
    assert (scores[:5, 1, 1] > 0).any()
    holed = dataclasses.replace(recording, points2d=points, scores=scores)
    save_recording_jsonl(holed, path)
    back = load_recording_jsonl(rig, path)
    assert back.points2d.shape == recording.points2d.shape
    np.testing.assert_array_equal(back.points2d, points)
    np.testing.assert_array_equal(back.scores, scores)

    seq = read_pose2d_jsonl(path)
    stamps, points2d, scores, cameras, layout, fps = seq
    assert cameras == rig.names and layout == "coco17" and fps is None
    assert points2d.shape[:2] == (recording.num_frames, 3) and points2d.shape[3:] == (J, 2)


def test_cameras_matched_by_name(tmp_path, rig, recording):
    # The file holds cam2 and cam0 only, in that order; the calibration's cam1 gets no detections.
    path = tmp_path / "two.jsonl"
    sel = [2, 0]
    write_pose2d_jsonl(path, recording.points2d[:, sel], recording.scores[:, sel], recording.stamps,
                       ["cam2", "cam0"], "coco17")
    back = load_recording_jsonl(rig, path)
    assert back.rig.names == rig.names
    assert np.isnan(back.points2d[:, 1]).all() and (back.scores[:, 1] == 0).all()
    P = back.points2d.shape[2]
    for c in (0, 2):
        _same_2d(recording.points2d[:, c:c + 1], recording.scores[:, c:c + 1],
                 back.points2d[:, c:c + 1, :P], back.scores[:, c:c + 1, :P])
    # A camera the calibration lacks is an error.
    write_pose2d_jsonl(path, recording.points2d[:, :1], recording.scores[:, :1], recording.stamps, ["cam9"])
    with pytest.raises(ValueError, match=r"cam9.*not in the calibration"):
        load_recording_jsonl(rig, path)


def test_reader_conventions(tmp_path):
    """null and score 0 are missing; [] and absent cameras are empty; persons are padded with NaN."""
    joint = [10.0, 20.0, 0.9]
    person = [joint] + [None] * (J - 2) + [[1.0, 2.0, 0.0]]
    lines = [{"format": FORMAT, "layout": "coco17", "cameras": ["a", "b"]},
             {"stamp": 0.0, "views": {"a": [person, person], "b": []}},
             {"stamp": 0.5, "views": {"b": [person]}}]
    path = tmp_path / "x.jsonl"
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n\n", encoding="utf-8")
    stamps, pts, sc, cams, layout, fps = read_pose2d_jsonl(path)
    assert pts.shape == (2, 2, 2, J, 2) and fps is None and cams == ["a", "b"]
    np.testing.assert_array_equal(stamps, [0.0, 0.5])
    np.testing.assert_array_equal(pts[0, 0, :, 0], [[10.0, 20.0]] * 2)
    assert sc[0, 0, 0, 0] == 0.9 and (sc[0, 0, :, 1:] == 0).all() and np.isnan(pts[0, 0, :, 1:]).all()
    assert (sc[0, 1] == 0).all() and (sc[1, 0] == 0).all() and (sc[1, 1, 1] == 0).all() and sc[1, 1, 0, 0] == 0.9
    # A header and no frames: an empty recording.
    path.write_text(json.dumps(lines[0]) + "\n", encoding="utf-8")
    out = read_pose2d_jsonl(path)
    assert out.points2d.shape == (0, 2, 0, J, 2) and out.stamps.shape == (0,)


HEADER = {"format": FORMAT, "layout": "coco17", "cameras": ["cam0", "cam1"]}
PERSON = [[1.0, 2.0, 0.5]] * J


def _frame(stamp, **views):
    return {"stamp": stamp, "views": views or {"cam0": [PERSON]}}


@pytest.mark.parametrize("lines, match", [
    ([], r"empty file"),
    (["{not json"], r"line 1: malformed JSON"),
    ([{"format": "hpe_ros.pose2d.v2", "layout": "coco17", "cameras": ["cam0"]}], r"line 1: unsupported version"),
    ([{"format": "openpose", "cameras": ["cam0"]}], r"line 1: unknown format 'openpose'"),
    ([{"layout": "coco17", "cameras": ["cam0"]}], r"line 1: unknown format None"),
    ([{**HEADER, "layout": "coco99"}], r"line 1: unknown layout 'coco99'"),
    ([{**HEADER, "cameras": ["cam0", "cam0"]}], r"line 1: .*unique"),
    ([{**HEADER, "cameras": []}], r"line 1: no cameras"),
    ([HEADER, _frame(0.0), "[1, 2"], r"line 3: malformed JSON"),
    ([HEADER, _frame(0.0), [1, 2]], r"line 3: a frame must be a JSON object"),
    ([HEADER, {"views": {}}], r"line 2: .*missing \['stamp'\]"),
    ([HEADER, _frame("0.1")], r"line 2: \"stamp\" must be a finite number"),
    ([HEADER, _frame(0.0, cam0=[[[1.0, 2.0, 0.5]] * 25])], r"line 2: camera 'cam0', person 0: 25 joints, but "
                                                            r"layout coco17 has 17 \(that is body25"),
    ([HEADER, _frame(0.0, cam0=[PERSON, PERSON[:16]])], r"line 2: camera 'cam0', person 1: 16 joints"),
    ([HEADER, _frame(0.0, cam2=[PERSON])], r"line 2: camera 'cam2' is not in the header's cameras"),
    ([HEADER, _frame(0.0, cam0=[[[1.0, 2.0]] + PERSON[1:]])], r"line 2: camera 'cam0', person 0, joint 0: "
                                                                r"expected \[u, v, score\]"),
    ([HEADER, _frame(0.0, cam0=[[[1.0, 2.0, -1]] + PERSON[1:]])], r"line 2: .*joint 0: score -1 < 0"),
    ([HEADER, _frame(0.0, cam0={"p": PERSON})], r"line 2: camera 'cam0': expected a list of persons"),
    ([HEADER, _frame(0.0), _frame(0.1), _frame(0.1)], r"line 4: stamp 0.1 repeats the previous frame's stamp "
                                                      r"0.1 \(line 3\)"),
    ([HEADER, _frame(1.0), "", _frame(0.5)], r"line 4: stamp 0.5 goes back from the previous frame's stamp 1.0 "
                                             r"\(line 2\)"),
])
def test_strict_reading_names_the_line_of_the_first_problem(tmp_path, lines, match):
    path = tmp_path / "bad.jsonl"
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines), encoding="utf-8")
    with pytest.raises(ValueError, match=match) as info:
        read_pose2d_jsonl(path, strict=True)
    assert str(path) in str(info.value)


def test_not_utf8(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(json.dumps(HEADER).encode() + b"\n" + b'{"stamp": 0, "views": {"cam\xff": []}}\n')
    with pytest.raises(ValueError, match=r"line 2: not UTF-8"):
        read_pose2d_jsonl(path, strict=True)


def test_writer_refuses_bad_input_and_is_atomic(tmp_path, monkeypatch):
    F, C, P = 4, 2, 1
    pts = np.full((F, C, P, J, 2), 5.0)
    sc = np.full((F, C, P, J), 0.8)
    stamps = np.arange(F) * 0.1
    path = tmp_path / "out.jsonl"

    def leftovers():
        return sorted(p.name for p in tmp_path.iterdir())

    with pytest.raises(ValueError,
                       match=r"points2d \(4 stamps, 2 cameras, coco17\) must have shape \(4, 2, P, 17, 2\)"):
        write_pose2d_jsonl(path, pts[..., :16, :], sc[..., :16], stamps, ["a", "b"])
    with pytest.raises(ValueError, match=r"frame 2 .* is not after frame 1"):
        write_pose2d_jsonl(path, pts, sc, [0.0, 0.1, 0.1, 0.3], ["a", "b"])
    with pytest.raises(ValueError, match=r"unique"):
        write_pose2d_jsonl(path, pts, sc, stamps, ["a", "a"])
    with pytest.raises(ValueError, match=r"scores must have shape \(4, 2, 1, 17\), got \(4, 1, 1, 17\)"):
        write_pose2d_jsonl(path, pts, sc[:, :1], stamps, ["a", "b"])
    assert leftovers() == []

    write_pose2d_jsonl(path, pts, sc, stamps, ["a", "b"])
    before = path.read_bytes()
    # Fail halfway through the frames: the previous file stays, no temp file is left.
    real = pose2d_jsonl._frame_line
    calls = []

    def failing(*args):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("disk on fire")
        return real(*args)

    monkeypatch.setattr(pose2d_jsonl, "_frame_line", failing)
    with pytest.raises(RuntimeError, match="disk on fire"):
        write_pose2d_jsonl(path, pts * 2, sc, stamps, ["a", "b"])
    assert path.read_bytes() == before and leftovers() == ["out.jsonl"]
    calls.clear()
    with pytest.raises(RuntimeError):
        write_pose2d_jsonl(tmp_path / "new.jsonl", pts, sc, stamps, ["a", "b"])
    assert leftovers() == ["out.jsonl"]


def test_decimals(tmp_path):
    pts = np.full((1, 1, 1, J, 2), 1.23456789)
    sc = np.full((1, 1, 1, J), 0.987654)
    path = write_pose2d_jsonl(tmp_path / "r.jsonl", pts, sc, [0.0], ["a"], decimals=2)
    out = read_pose2d_jsonl(path)
    assert (out.points2d == 1.23).all() and (out.scores == 0.99).all()


def test_cli_train_lifter_epipolar_from_jsonl(tmp_path, rig, recording, capsys):
    from hpe_ros.cli import main

    save_rig(rig, tmp_path / "calib.toml")
    save_recording_jsonl(recording, tmp_path / "rec.jsonl")
    assert main(["lifter-data", "--out", str(tmp_path / "val.npz"), "--sequences", "1", "--seconds", "3"]) == 0
    out = tmp_path / "model"
    rc = main(["train-lifter", "--method", "epipolar", "--jsonl", str(tmp_path / "rec.jsonl"),
               "--calib", str(tmp_path / "calib.toml"), "--steps", "5", "--no-progress", "--out", str(out),
               "--width", "16", "--blocks", "1", "--batch", "32", "--val", str(tmp_path / "val.npz"),
               "--threads", "1", "--device", "cpu"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert (out / "lifter.onnx").is_file()
    assert "triangulated views of a recording" in captured.out

    # --jsonl without --calib, and a file camera the calibration lacks: one clear error line, status 2.
    assert main(["train-lifter", "--method", "epipolar", "--jsonl", str(tmp_path / "rec.jsonl"),
                 "--out", str(out)]) == 2
    assert "--jsonl needs --calib" in capsys.readouterr().err
    save_rig(rig.subset(["cam0", "cam1"]), tmp_path / "two.toml")
    assert main(["train-lifter", "--method", "epipolar", "--jsonl", str(tmp_path / "rec.jsonl"),
                 "--calib", str(tmp_path / "two.toml"), "--out", str(out)]) == 2
    assert "not in the calibration" in capsys.readouterr().err


def test_bad_lines_are_skipped_and_recorded_the_good_frames_kept(tmp_path, caplog):
    path = tmp_path / "rec.jsonl"
    lines = [HEADER, _frame(0.0), "{truncated", _frame(0.1, cam0=[PERSON, PERSON[:16]], cam2=[PERSON]),
             _frame(0.1), {"views": {}}, _frame(0.2, cam0=[[[1.0, 2.0, -1]] + PERSON[1:], PERSON]), _frame(0.3)]
    path.write_bytes(b"\xef\xbb\xbf" + "".join((x if isinstance(x, str) else json.dumps(x)) + "\n"
                                               for x in lines).encode())
    skipped = []
    with caplog.at_level("WARNING"):
        seq = read_pose2d_jsonl(path, skipped=skipped)
    assert seq.stamps.tolist() == [0.0, 0.1, 0.2, 0.3]
    assert np.isfinite(seq.points2d[1, 0, 0]).all() and not np.isfinite(seq.points2d[1, 0, 1]).any()
    assert not np.isfinite(seq.points2d[2, 0, 0]).any() and np.isfinite(seq.points2d[2, 0, 1]).all()
    assert [(s["entry"], s["reason"].split(":")[0]) for s in skipped] == [
        ("line 3", "malformed JSON"),
        ("line 4: camera 'cam0', person 1", "16 joints, but layout coco17 has 17"),
        ("line 4: camera 'cam2'", "is not in the header's cameras ['cam0', 'cam1']"),
        ("line 5", "stamp 0.1 repeats the previous frame's stamp 0.1 (line 4); stamps must increase strictly"),
        ("line 6", "a frame needs \"stamp\" and \"views\"; missing ['stamp']"),
        ("line 7: camera 'cam0', person 0", "joint 0")]
    assert all(s["file"] == str(path) for s in skipped)
    logged = [r.getMessage() for r in caplog.records if r.name == "hpe_ros.io.pose2d_jsonl"]
    assert len(logged) == 1 and "line 3: malformed JSON" in logged[0] and "6 bad entries in all, 4 frames kept" \
        in logged[0]


def test_a_file_without_a_usable_frame_is_an_error(tmp_path):
    path = tmp_path / "rec.jsonl"
    path.write_text(json.dumps(HEADER) + "\n{x\n[1]\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"rec.jsonl: no usable frame: 2 bad entries; first: line 2: malformed JSON"):
        read_pose2d_jsonl(path)
