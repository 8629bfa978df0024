"""The offline tools on real-world input: bad entries are skipped, counted and named, the good data is kept,
and only input with nothing usable stops a run (one line, exit 2, nothing written).

OpenPose folders and videos are written here as the real tools write them (OpenPose JSON from the simulator's
detections; MJPG / mp4v videos with OpenCV), then damaged the ways recordings are: a person without keypoints,
a truncated or unreadable file, a byte order mark, a body of another layout, codec padding, frame counts a
frame apart, a damaged stretch in the middle of a video.
"""
from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from hpe_ros.camera import Rig
from hpe_ros.cli import main
from hpe_ros.io.calibration import save_rig
from hpe_ros.io.openpose import write_openpose_frame
from hpe_ros.io.trc import read_trc
from hpe_ros.sim import MotionScript, default_rig, observe
from hpe_ros.skeleton import convert, convert_scores
from hpe_ros.videos import process_videos

FRAMES = 30
FPS = 30.0


def one_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert "Traceback" not in text
    return lines[0]


# --- OpenPose folders ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def session(tmp_path_factory):
    """A calibration and one body25 OpenPose folder per camera of a 4-camera rig, one walking person."""
    root = tmp_path_factory.mktemp("openpose")
    rig = default_rig(4)
    save_rig(rig, root / "calib.toml")
    script, rng = MotionScript(n_people=1, seed=2), np.random.default_rng(2)
    dirs = [root / f"{cam.name}_json" for cam in rig]
    for d in dirs:
        d.mkdir()
    for f in range(FRAMES):
        obs = observe(rig, script.pose(f / FPS), rng)
        for c, cam in enumerate(rig):
            rows = obs.person_ids[c] >= 0
            points = convert(obs.points2d[c, rows], "coco17", "body25")
            scores = convert_scores(obs.scores[c, rows], "coco17", "body25")
            write_openpose_frame(dirs[c] / f"{cam.name}_{f:012d}_keypoints.json", points, scores)
    return root


def copy_session(session: Path, dst: Path) -> tuple[Path, list[Path]]:
    shutil.copytree(session, dst, dirs_exist_ok=True)
    return dst / "calib.toml", sorted(dst.glob("cam*_json"))


def triangulate(calib, dirs, out, *extra):
    return main(["triangulate", "--calib", str(calib), "--keypoints", *map(str, dirs), "--out", str(out),
                 "--no-progress", "--format", "trc", *extra])


def frame_file(dirs, camera: int, frame: int) -> Path:
    return dirs[camera] / f"cam{camera}_{frame:012d}_keypoints.json"


def test_bad_openpose_entries_are_skipped_counted_and_named(session, tmp_path, capsys, monkeypatch):
    calib, dirs = copy_session(session, tmp_path / "in")
    # cam0 frame 3: a second person entry without pose_keypoints_2d (the first person stays)
    data = json.loads(frame_file(dirs, 0, 3).read_text())
    data["people"].append({"person_id": [-1], "face_keypoints_2d": []})
    frame_file(dirs, 0, 3).write_text(json.dumps(data))
    # cam1 frame 5: an 18-point (COCO-18) body beside the 25-point one
    data = json.loads(frame_file(dirs, 1, 5).read_text())
    data["people"].append({"pose_keypoints_2d": [100.0, 100.0, 0.9] * 18})
    frame_file(dirs, 1, 5).write_text(json.dumps(data))
    # cam2 frame 7: truncated mid-write; frame 8: another layout altogether (no "people" list)
    text = frame_file(dirs, 2, 7).read_text()
    frame_file(dirs, 2, 7).write_text(text[: len(text) // 2])
    frame_file(dirs, 2, 8).write_text(json.dumps({"version": 1.3, "bodies": []}))
    # cam3 frame 9: a UTF-8 byte order mark (accepted); frame 10: unreadable; a README and a thumbnail beside
    frame_file(dirs, 3, 9).write_bytes(b"\xef\xbb\xbf" + frame_file(dirs, 3, 9).read_bytes())
    (dirs[3] / "README.txt").write_text("exported by OpenPose 1.7")
    (dirs[3] / "thumbs.db").write_bytes(b"\x00\x01")
    (dirs[1] / "cam1_000000000011_keypoints.json").write_text('{"people": []}')   # no detections, not an error
    frame_file(dirs, 0, 12).unlink()                                                 # a missing frame
    unreadable = frame_file(dirs, 3, 10)
    real_read_bytes = Path.read_bytes

    def read_bytes(self):
        if self == unreadable:
            raise PermissionError(13, "Permission denied", str(self))
        return real_read_bytes(self)

    monkeypatch.setattr(Path, "read_bytes", read_bytes)

    assert triangulate(calib, dirs, tmp_path / "walk") == 0
    out = capsys.readouterr().out
    summary = one_line("\n".join(line for line in out.splitlines() if line.startswith("skipped")))
    assert summary.startswith("skipped 5 bad input entries (cam0 1 bad person entries; cam1 1 bad person entries; "
                              "cam2 2 bad files; cam3 1 bad files, 2 ignored files); details in the report's")

    report = json.loads((tmp_path / "walk.report.json").read_text())
    skipped = report["skipped"]
    assert skipped["total"] == 5
    assert skipped["per_camera"]["cam3"] == {"bad_files": 1, "bad_person_entries": 0, "ignored_files": 2}
    where = {(e["camera"], Path(e["file"]).name, e["entry"]): e["reason"] for e in skipped["entries"]}
    assert where[("cam0", "cam0_000000000003_keypoints.json", "person 1")] == 'has no "pose_keypoints_2d" list'
    assert "18 keypoints but layout body25 has 25" in where[("cam1", "cam1_000000000005_keypoints.json", "person 1")]
    assert "not an OpenPose JSON file" in where[("cam2", "cam2_000000000007_keypoints.json", None)]
    assert 'no "people" list' in where[("cam2", "cam2_000000000008_keypoints.json", None)]
    assert "Permission denied" in where[("cam3", "cam3_000000000010_keypoints.json", None)]
    assert not any(name == "cam3_000000000009_keypoints.json" for _, name, _ in where)   # the BOM file is fine
    inputs = {row["camera"]: row for row in report["inputs"]}
    assert inputs["cam0"]["frames_without_file"] == 1 and inputs["cam1"]["frames_without_people"] == 1
    assert inputs["cam3"]["files_ignored"] == 2 and inputs["cam2"]["files_skipped"] == 2

    # the good data is kept: every frame is in the output, the person is there in the damaged frames
    trc = read_trc(tmp_path / "walk.trc")
    assert trc.frame_numbers.tolist() == list(range(trc.frame_numbers[0], FRAMES))
    for frame in (3, 5, 7, 8, 9, 10, 12):
        k = trc.frame_numbers.tolist().index(frame)
        assert np.isfinite(trc.points[k]).all(-1).mean() > 0.5, frame


def test_openpose_folders_with_nothing_usable_stop_with_one_line(session, tmp_path, capsys):
    calib, dirs = copy_session(session, tmp_path / "in")
    for d in dirs:
        for f in d.glob("*.json"):
            f.write_text("{truncated")
    assert triangulate(calib, dirs, tmp_path / "out" / "walk") == 2
    err = one_line(capsys.readouterr().err)
    assert "nothing usable in the keypoint folders" in err and f"{FRAMES * 4} unusable" in err
    assert not (tmp_path / "out").exists()


# --- videos ----------------------------------------------------------------------------------------
class FakeBackend:
    """A 2D backend that 'detects' the simulator's standing person in every image it is given, and records
    each call's cameras and image sizes (so the tests see which frames reached it)."""

    layout = "coco17"
    name = "fake"

    def __init__(self, rig: Rig):
        self.rig = {cam.name: cam for cam in rig}
        self.joints = MotionScript(n_people=1, seed=4, activities=["stand"]).pose(0.0)[0]     # (17, 3)
        self.calls: list[list[tuple[str, tuple[int, int]]]] = []

    def infer(self, images, streams):
        self.calls.append([(s, (im.shape[1], im.shape[0])) for s, im in zip(streams, images)])
        return [(self.rig[s].project(self.joints)[None], np.full((1, 17), 0.9)) for s in streams]


def write_video(path: Path, size: tuple[int, int], frames: int, fourcc: str = "MJPG") -> Path:
    w, h = size
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), FPS, (w, h))
    assert writer.isOpened()
    for f in range(frames):
        image = np.zeros((h, w, 3), np.uint8)
        image[:, :, 1] = (np.arange(w)[None] * 255 // w).astype(np.uint8)
        cv2.putText(image, f"{f}", (20 + 5 * f, h // 2), cv2.FONT_HERSHEY_SIMPLEX, 2.0, (255, 255, 255), 3)
        writer.write(image)
    writer.release()
    return path


def damage_middle(path: Path, frames=range(15, 18)) -> None:
    """Overwrite bytes in the middle of an MJPG AVI, the JPEG data of `frames` (each frame is a '00dc' chunk:
    tag, 4-byte size, JPEG), as a bad sector does: the decoder fails on those frames and recovers after them."""
    data = bytearray(path.read_bytes())
    chunks = [i for i in range(len(data) - 10) if data[i:i + 4] == b"00dc" and data[i + 8:i + 10] == b"\xff\xd8"]
    for f in frames:
        size = int.from_bytes(data[chunks[f] + 4:chunks[f] + 8], "little")
        data[chunks[f] + 8:chunks[f] + 8 + size] = bytes(size)
    path.write_bytes(bytes(data))


@pytest.fixture()
def rig_files(tmp_path):
    rig = default_rig(3)
    save_rig(rig, tmp_path / "calib.toml")
    return rig, tmp_path / "calib.toml"


def test_codec_padding_in_either_direction_is_accepted_with_the_assumption_stated(tmp_path, rig_files, caplog):
    rig, _ = rig_files
    # cam0's video is padded to 488 rows; cam1 was calibrated on padded frames (648 x 480) but decodes at 640
    cams = list(rig)
    cams[1] = dataclasses.replace(cams[1], size=(648, 480))
    padded_rig = Rig(cams)
    save_rig(padded_rig, tmp_path / "padded.toml")
    videos = [write_video(tmp_path / "c0.avi", (640, 488), 12), write_video(tmp_path / "c1.avi", (640, 480), 12),
              write_video(tmp_path / "c2.mp4", (640, 480), 12, "mp4v")]
    backend = FakeBackend(padded_rig)
    with caplog.at_level("WARNING"):
        result = process_videos(videos, tmp_path / "padded.toml", backend, progress=False)
    notes = [r.getMessage() for r in caplog.records if "codec padding" in r.getMessage()]
    assert len(notes) == 2
    assert "c0.avi: video is 640x488, camera cam0 is calibrated at 640x480: assuming codec padding (8 rows at " \
           "the bottom cropped off), intrinsics unchanged" in notes[0]
    assert "8 columns at the right missing from the video" in notes[1]
    assert all(dict(call)["cam0"] == (640, 480) for call in backend.calls)          # the padding never reaches 2D
    assert len(result.frame_indices) == 12 and len(result.ids) == 1
    assert [row["padding_assumed"] for row in result.report["inputs"]] == [True, True, False]


def test_another_resolution_is_still_refused(tmp_path, rig_files, capsys):
    rig, calib = rig_files
    videos = [write_video(tmp_path / f"c{c}.avi", (640, 480) if c else (1280, 720), 3) for c in range(3)]
    with pytest.raises(ValueError, match=r"c0.avi: video is 1280x720 but camera cam0 is calibrated at 640x480"):
        process_videos(videos, calib, FakeBackend(rig), progress=False)


def test_frame_counts_a_frame_apart_are_aligned_from_the_start_and_reported(tmp_path, rig_files, caplog):
    rig, calib = rig_files
    videos = [write_video(tmp_path / f"c{c}.avi", (640, 480), n) for c, n in enumerate((20, 21, 22))]
    with caplog.at_level("WARNING"):
        result = process_videos(videos, calib, FakeBackend(rig), progress=False)
    assert result.frame_indices.tolist() == list(range(20))
    assert [row["frames_unused_at_end"] for row in result.report["inputs"]] == [0, 1, 2]
    assert any("aligned from their first frames, the last 1 of c1.avi, 2 of c2.avi unused" in r.getMessage()
               for r in caplog.records)


@pytest.fixture()
def damaged(tmp_path, rig_files):
    rig, calib = rig_files
    videos = [write_video(tmp_path / f"c{c}.avi", (640, 480), 40) for c in range(3)]
    damage_middle(videos[1])
    return rig, calib, videos


def test_a_damaged_stretch_skips_that_cameras_frames_only(damaged, caplog):
    rig, calib, videos = damaged
    backend = FakeBackend(rig)
    with caplog.at_level("WARNING"):
        result = process_videos(videos, calib, backend, progress=False)
    skipped = result.report["skipped"]
    bad = skipped["per_camera"]["cam1"]["bad_frames"]
    assert bad > 0 and skipped["per_camera"]["cam0"]["bad_frames"] == 0 and skipped["total"] == bad
    entry = skipped["entries"][0]
    assert entry["camera"] == "cam1" and entry["file"].endswith("c1.avi") and entry["entry"].startswith("frame")
    first_bad = int(entry["entry"].split()[1].split("-")[0])
    assert (entry["entry"], bad) == ("frames 15-17", 3)
    warning = one_line("\n".join(r.getMessage() for r in caplog.records if "decoder failed" in r.getMessage()))
    assert f"c1.avi: the decoder failed on frame {first_bad} (of 40)" in warning
    # every frame is processed; the other cameras go on through the damage, cam1 resumes after it
    assert result.frame_indices.tolist() == list(range(40))
    cameras = [[s for s, _ in call] for call in backend.calls]
    assert cameras[first_bad] == ["cam0", "cam2"]
    assert all(len(c) >= 2 for c in cameras)
    assert any("cam1" in c for c in cameras[first_bad + 1:]), "cam1 never resumed"
    assert np.isfinite(result.points[first_bad]).any()


def test_a_truncated_video_leaves_the_other_cameras_going_to_the_end(tmp_path, rig_files):
    rig, calib = rig_files
    videos = [write_video(tmp_path / f"c{c}.avi", (640, 480), 30) for c in range(3)]
    videos[2].write_bytes(videos[2].read_bytes()[: videos[2].stat().st_size * 6 // 10])   # an interrupted copy
    backend = FakeBackend(rig)
    result = process_videos(videos, calib, backend, progress=False)
    entries = result.report["skipped"]["entries"]
    assert len(entries) == 1 and entries[0]["camera"] == "cam2" and entries[0]["entry"].endswith("-29")
    first_bad = int(entries[0]["entry"].split()[1].split("-")[0])
    assert 5 < first_bad < 25 and result.report["skipped"]["total"] == 30 - first_bad
    assert result.frame_indices.tolist() == list(range(30))
    assert [s for s, _ in backend.calls[-1]] == ["cam0", "cam1"] and np.isfinite(result.points[-1]).any()


def test_stop_on_bad_frame_stops_there_and_says_so(damaged, caplog):
    rig, calib, videos = damaged
    with caplog.at_level("WARNING"):
        result = process_videos(videos, calib, FakeBackend(rig), progress=False, stop_on_bad_frame=True)
    stopped = result.report["skipped"]["stopped_at_frame"]
    assert stopped is not None and result.frame_indices.tolist() == list(range(stopped))
    assert any(f"frame {stopped}: the decoder failed on c1.avi; stopping there (--stop-on-bad-frame)"
               in r.getMessage() for r in caplog.records)


def test_cli_process_reports_bad_frames_and_takes_stop_on_bad_frame(damaged, tmp_path, capfd, monkeypatch):
    rig, calib, videos = damaged
    monkeypatch.setattr("hpe_ros.cli.offline._backend_from_args", lambda a: FakeBackend(rig))
    base = ["process", "--videos", *map(str, videos), "--calib", str(calib), "--no-progress", "--format", "json"]
    assert main(base + ["--out", str(tmp_path / "all.json")]) == 0
    out, err = capfd.readouterr()
    line = one_line("\n".join(x for x in out.splitlines() if x.startswith("skipped")))
    assert line == "skipped 3 bad input entries (cam1 3 bad frames); details in the report's \"skipped\""
    assert "[mjpeg" not in err                     # FFmpeg's own line per damaged frame is kept quiet
    assert main(base + ["--out", str(tmp_path / "stop.json"), "--stop-on-bad-frame"]) == 0
    full = json.loads((tmp_path / "all.report.json").read_text())
    stop = json.loads((tmp_path / "stop.report.json").read_text())
    assert full["frames"] == 40 and stop["frames"] == stop["skipped"]["stopped_at_frame"] < 40


# --- meaningless values ----------------------------------------------------------------------------
@pytest.mark.parametrize("argv, message", [
    (["process", "--videos", "a.mp4", "--calib", "c.toml", "--out", "o", "--max-frames", "-5"],
     "argument --max-frames: must be > 0, got -5"),
    (["process", "--videos", "a.mp4", "--calib", "c.toml", "--out", "o", "--max-frames", "0"], "--max-frames"),
    (["process", "--videos", "a.mp4", "--calib", "c.toml", "--out", "o", "--fps", "0"], "argument --fps: must be > 0"),
    (["process", "--videos", "a.mp4", "--calib", "c.toml", "--out", "o", "--detect-every", "0"], "--detect-every"),
    (["process", "--bag", "b", "--topics", "t", "--calib", "c.toml", "--out", "o", "--sync-slop", "-1"], "--sync-slop"),
    (["triangulate", "--calib", "c.toml", "--keypoints", "k", "--out", "o", "--fps", "-30"], "--fps"),
    (["triangulate", "--calib", "c.toml", "--keypoints", "k", "--out", "o", "--fps", "nan"], "finite"),
    (["triangulate", "--calib", "c.toml", "--keypoints", "k", "--out", "o", "--fill-gaps", "-1"], "--fill-gaps"),
    (["triangulate", "--calib", "c.toml", "--keypoints", "k", "--out", "o", "--smooth-cutoff", "0"], "--smooth-cutoff"),
    (["lifter-data", "--out", "x.npz", "--size", "0x0"], "argument --size: width and height must be > 0"),
    (["lifter-data", "--out", "x.npz", "--size", "640"], "expected WIDTHxHEIGHT"),
    (["lifter-data", "--out", "x.npz", "--sequences", "0"], "--sequences"),
    (["lifter-data", "--out", "x.npz", "--seconds", "-1"], "--seconds"),
    (["lifter-data", "--out", "x.npz", "--noise-px", "-2"], "--noise-px"),
    (["train-lifter", "--out", "d", "--steps", "0"], "--steps"),
    (["train-lifter", "--out", "d", "--batch", "-1"], "--batch"),
    (["train-lifter", "--out", "d", "--lr", "0"], "--lr"),
    (["train-lifter", "--out", "d", "--fps", "0"], "--fps"),
    (["train-lifter", "--out", "d", "--people", "0"], "--people"),
    (["calibrate", "board", "--board", "checkerboard:9x6:0.04", "--images", "a=b", "--out", "o", "--step", "0"],
     "--step"),
    (["calibrate", "board", "--board", "checkerboard:9x6:0.04", "--images", "a=b", "--out", "o", "--max-views", "-1"],
     "--max-views"),
    (["calibrate", "from-people", "--calib", "c", "--keypoints", "k", "--out", "o", "--person-height", "0"],
     "--person-height: must be between 0.3 and 3.0"),
    (["models", "build-engine", "x", "--max-batch", "0"], "--max-batch"),
    (["demo", "--cameras", "1"], "--cameras: must be >= 2"),
    (["demo", "--duration", "0"], "--duration"),
])
def test_meaningless_values_are_one_line_and_exit_2(argv, message, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = one_line(capsys.readouterr().err)
    assert message in err and err.startswith(f"hpe-ros {argv[0]}")


# --- lifter files ----------------------------------------------------------------------------------
def test_lifter_tools_answer_bad_files_in_one_line(tmp_path, capsys):
    (tmp_path / "zero.npz").write_bytes(b"")
    (tmp_path / "junk.npz").write_bytes(b"PK\x03\x04" + b"junk" * 50)
    np.savez(tmp_path / "layout.npz", keypoints2d=np.zeros((3, 17, 2)), K=np.eye(3), joints3d=np.zeros((3, 17, 3)),
             layout="coco99")
    (tmp_path / "broken.onnx").write_bytes(b"\x08\x07not a network")
    assert main(["lifter-data", "--out", str(tmp_path / "ok.npz"), "--sequences", "1", "--seconds", "1"]) == 0
    capsys.readouterr()
    cases = [(["--data", str(tmp_path / "zero.npz")], "zero.npz: not a readable .npz file"),
             (["--data", str(tmp_path / "junk.npz")], "junk.npz: not a readable .npz file"),
             (["--data", str(tmp_path / "layout.npz")], "unknown layout 'coco99'"),
             (["--data", str(tmp_path / "ok.npz"), "--model", str(tmp_path / "broken.onnx")],
              "broken.onnx: cannot load this lifter")]
    for args, message in cases:
        assert main(["eval-lifter", *args]) == 2, args
        assert message in one_line(capsys.readouterr().err)
    assert main(["train-lifter", "--out", str(tmp_path / "t"), "--data", str(tmp_path / "zero.npz"),
                 "--no-progress"]) == 2
    assert "zero.npz: not a readable .npz file" in one_line(capsys.readouterr().err)
    (tmp_path / "broken.pt").write_bytes(b"junk")
    assert main(["train-lifter", "--out", str(tmp_path / "t"), "--init", str(tmp_path / "broken.pt"),
                 "--no-progress"]) == 2
    assert "broken.pt: not a lifter checkpoint" in one_line(capsys.readouterr().err)
    assert not (tmp_path / "t").exists()


# --- calibrate from-people -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def walk(tmp_path_factory):
    """150 frames (15 s at 10 fps) of one person walking, seen by 4 cameras, as OpenPose folders."""
    root = tmp_path_factory.mktemp("walk")
    rig = default_rig(4)
    script, rng = MotionScript(n_people=1, seed=5, activities=["walk"]), np.random.default_rng(5)
    dirs = [root / cam.name for cam in rig]
    for d in dirs:
        d.mkdir()
    for f in range(150):
        obs = observe(rig, script.pose(f / 10.0), rng, noise_px=2.0, outlier_rate=0.05)
        for c, d in enumerate(dirs):
            rows = obs.person_ids[c] >= 0
            write_openpose_frame(d / f"{rig[c].name}_{f:012d}_keypoints.json", obs.points2d[c][rows],
                                 obs.scores[c][rows])
    save_rig(rig, root / "intrinsics.toml")
    return root, dirs, script.heights[0]


def from_people(root, dirs, out):
    return main(["calibrate", "from-people", "--calib", str(root / "intrinsics.toml"), "--keypoints",
                 *map(str, dirs), "--layout", "coco17", "--out", str(out), "--no-progress"])


def test_from_people_prints_the_real_rms_and_warns_of_too_little_data(walk, tmp_path, capsys):
    root, dirs, _ = walk
    assert from_people(root, dirs, tmp_path / "rig.toml") == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("cam")]
    assert len(rows) == 4 and all("None" not in r and " rms " in r for r in rows), rows
    rms = [float(r.split(" rms ")[1].split(" px")[0]) for r in rows]
    assert all(0 < v < 10 for v in rms), rms
    assert "warning" not in out
    report = json.loads((tmp_path / "rig.toml.report.json").read_text())
    assert report["data"]["warnings"] == [] and report["data"]["frames_well_seen"] >= 100

    few = tmp_path / "few"
    for d in dirs:
        (few / d.name).mkdir(parents=True)
        for f in sorted(d.glob("*.json"))[60:63]:
            shutil.copy(f, few / d.name / f.name)
    assert from_people(root, [few / d.name for d in dirs], tmp_path / "few.toml") == 0
    out = capsys.readouterr().out
    warning = one_line("\n".join(x for x in out.splitlines() if "frames with a person" in x and "warning" in x))
    assert warning.startswith("warning: too little data: 3 frames with a person well seen by two cameras "
                              "(fewer than 100)")
    report = json.loads((tmp_path / "few.toml.report.json").read_text())
    assert report["data"]["frames_well_seen"] == 3 and report["data"]["warnings"][0] in warning
