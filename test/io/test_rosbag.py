"""rosbag2 in and out without ROS: `hpe-ros process --bag` on a bag of coded-dot camera images (raw
bgr8 / rgb8 and PNG CompressedImage, jittered stamps, an unpaired message) gives 3D close to the truth;
`--bag-out` of `hpe-ros triangulate` read back with rosbags holds the JSON output's skeletons as
/human_pose_3d clouds, markers and TF at the frames' stamps, written atomically."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from hpe_ros.cli import main
from hpe_ros.io import read_skeleton_json, save_rig, write_openpose_frame
from hpe_ros.io.pose_cloud import HUMAN_POSE_FIELDS, NUMPY_CODE, HumanPoses
from hpe_ros.io.rosbag import BagImages, cdr_header_stamp_ns, match_stamps, write_pose_bag
from hpe_ros.sim import MotionScript, default_rig, observe
from hpe_ros.sim.keypoint_images import render_keypoint_dots
from hpe_ros.sim.observe import project
from hpe_ros.skeleton import get_layout

rosbags = pytest.importorskip("rosbags", reason="needs rosbags: pip install rosbags")
from rosbags.highlevel import AnyReader  # noqa: E402
from rosbags.rosbag2 import Writer  # noqa: E402
from rosbags.typesys import Stores, get_typestore  # noqa: E402

TYPESTORE = get_typestore(Stores.ROS2_HUMBLE)
T = TYPESTORE.types
FPS = 30.0
T0_NS = 1_700_000_000 * 10**9  # robot time: stamps far from zero


# --- helpers -------------------------------------------------------------------------------------

def header(stamp_ns: int, frame_id: str):
    return T["std_msgs/msg/Header"](stamp=T["builtin_interfaces/msg/Time"](sec=stamp_ns // 10**9,
                                                                            nanosec=stamp_ns % 10**9),
                                    frame_id=frame_id)


def image_message(bgr: np.ndarray, kind: str, stamp_ns: int, frame_id: str):
    """bgr8 / rgb8 sensor_msgs Image or a PNG CompressedImage of a BGR image, as rosbags messages."""
    if kind == "png":
        ok, png = cv2.imencode(".png", bgr)
        return T["sensor_msgs/msg/CompressedImage"](header=header(stamp_ns, frame_id),
                                                    format="bgr8; png compressed bgr8", data=png.reshape(-1))
    pixels = bgr if kind == "bgr8" else bgr[..., ::-1]
    h, w = bgr.shape[:2]
    return T["sensor_msgs/msg/Image"](header=header(stamp_ns, frame_id), height=h, width=w, encoding=kind,
                                      is_bigendian=0, step=3 * w,
                                      data=np.ascontiguousarray(pixels).reshape(-1))


def write_image_bag(path, topics, kinds, messages):
    """messages: (topic index, stamp ns, BGR image) in recording order -> a sqlite3 rosbag2 folder."""
    with Writer(path, version=8) as writer:
        conns = [writer.add_connection(topic, "sensor_msgs/msg/CompressedImage" if kind == "png"
                                       else "sensor_msgs/msg/Image", typestore=TYPESTORE)
                 for topic, kind in zip(topics, kinds)]
        for k, stamp_ns, bgr in messages:
            msg = image_message(bgr, kinds[k], stamp_ns, f"cam{k}_optical")
            writer.write(conns[k], stamp_ns + 3_000_000, TYPESTORE.serialize_cdr(msg, msg.__msgtype__))


def read_bag(path) -> dict[str, list]:
    """topic -> [(log time ns, deserialised message)] with the ROS-free reader."""
    out: dict[str, list] = {}
    with AnyReader([path]) as reader:
        for connection, log_ns, raw in reader.messages():
            out.setdefault(connection.topic, []).append((log_ns, reader.deserialize(raw, connection.msgtype)))
    return out


def decode_cloud(msg) -> dict[str, np.ndarray]:
    """PointCloud2 -> {field: (H, W)} with plain numpy, fields looked up by name."""
    dtype = np.dtype({"names": [f.name for f in msg.fields],
                      "formats": [("<" if not msg.is_bigendian else ">") + NUMPY_CODE[f.datatype] for f in msg.fields],
                      "offsets": [f.offset for f in msg.fields], "itemsize": msg.point_step})
    rows = np.frombuffer(msg.data.tobytes(), dtype=dtype).reshape(msg.height, msg.width)
    return {name: rows[name] for name in dtype.names}


def stamp_ns(msg_header) -> int:
    return msg_header.stamp.sec * 10**9 + msg_header.stamp.nanosec


# --- synchronising by stamp ----------------------------------------------------------------------

def test_match_stamps_pairs_nearest_within_slop_and_drops_incomplete_frames():
    ref = np.array([0, 100, 200, 300, 400])
    other = np.array([3, 97, 260, 402, 405])     # 200 has nothing within 20; 402 and 405 both near 400
    third = np.array([1, 101, 199, 301])          # nothing near 400
    frames = match_stamps([ref, other, third], slop_ns=20)
    np.testing.assert_array_equal(frames, [[0, 0, 0], [1, 1, 1]])
    assert match_stamps([ref, np.zeros(0, np.int64)], 20).shape == (0, 2)


def test_match_stamps_gives_a_shared_message_to_the_closest_frame_only():
    frames = match_stamps([np.array([0, 10]), np.array([8])], slop_ns=10)
    np.testing.assert_array_equal(frames, [[1, 0]])


def test_header_stamp_read_from_cdr_bytes():
    msg = image_message(np.zeros((2, 2, 3), np.uint8), "bgr8", T0_NS + 123_456_789, "c")
    assert cdr_header_stamp_ns(TYPESTORE.serialize_cdr(msg, msg.__msgtype__)) == T0_NS + 123_456_789


def test_bag_images_errors_name_the_bag_and_topic(tmp_path):
    bag = tmp_path / "images"
    write_image_bag(bag, ["/a/image_raw"], ["bgr8"], [(0, T0_NS, np.zeros((4, 4, 3), np.uint8))])
    with pytest.raises(ValueError, match=r"no topic /b/image_raw; image topics in the bag: /a/image_raw"):
        BagImages(bag, ["/b/image_raw"])
    with pytest.raises(ValueError, match="bag not found"):
        BagImages(tmp_path / "missing", ["/a/image_raw"])
    with BagImages(bag, ["/a/image_raw"]) as images:
        (index, stamp, (frame,)), = list(images)
        assert index == 0 and stamp == T0_NS and frame.shape == (4, 4, 3)


def test_bag_images_decode_bayer_and_mono_topics_to_bgr(tmp_path):
    y, x = np.mgrid[0:32, 0:48]
    bgr = np.stack([40 + 3 * x, 60 + 4 * y, 200 - 2 * x - y], axis=-1).clip(0, 255).astype(np.uint8)
    mosaic = np.empty((32, 48), np.uint8)                          # RGGB cells
    mosaic[0::2, 0::2], mosaic[0::2, 1::2] = bgr[0::2, 0::2, 2], bgr[0::2, 1::2, 1]
    mosaic[1::2, 0::2], mosaic[1::2, 1::2] = bgr[1::2, 0::2, 1], bgr[1::2, 1::2, 0]
    grey = bgr[..., 1]

    def raw(image, encoding, stamp_ns):
        return T["sensor_msgs/msg/Image"](header=header(stamp_ns, "c"), height=32, width=48, encoding=encoding,
                                          is_bigendian=0, step=48, data=image.reshape(-1))

    with Writer(tmp_path / "b", version=8) as writer:
        conns = [writer.add_connection(t, "sensor_msgs/msg/Image", typestore=TYPESTORE) for t in ("/bayer", "/mono")]
        for conn, msg in ((conns[0], raw(mosaic, "bayer_rggb8", T0_NS)), (conns[1], raw(grey, "mono8", T0_NS + 1000))):
            writer.write(conn, T0_NS, TYPESTORE.serialize_cdr(msg, msg.__msgtype__))
    with BagImages(tmp_path / "b", ["/bayer", "/mono"], slop_s=0.001) as bag:
        (_, _, (colour, mono)), = list(bag)
    assert np.abs(colour.astype(int) - bgr)[2:-2, 2:-2].max() <= 2
    np.testing.assert_array_equal(mono, np.repeat(grey[..., None], 3, axis=-1))


# --- process --bag -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def image_bag(tmp_path_factory):
    pytest.importorskip("onnxruntime", reason="needs onnxruntime: pip install '.[onnx]'")
    pytest.importorskip("torch", reason="the test network is built with torch: pip install '.[torch]'")
    from hpe_ros.sim.keypoint_net import export_keypoint_net

    root = tmp_path_factory.mktemp("bag")
    rig, frames = default_rig(3), 30
    save_rig(rig, root / "calib.toml")
    script = MotionScript(n_people=1, seed=3, activities=["walk"])
    truth = np.stack([script.pose(i / FPS)[0] for i in range(frames)])           # (T, 17, 3)
    rng = np.random.default_rng(0)
    topics = ["/cam1/image_raw", "/cam2/image_raw", "/cam3/image_raw/compressed"]
    kinds = ["bgr8", "rgb8", "png"]
    messages = []
    for t in range(frames):
        pixels, depth = project(rig, truth[t])
        stamps = T0_NS + int(t * 1e9 / FPS) + rng.integers(-2_000_000, 2_000_000, 3) * np.array([0, 1, 1])
        order = rng.permutation(3)                                                 # cameras arrive in any order
        messages += [(int(c), int(stamps[c]), render_keypoint_dots(pixels[c][None], depth[c][None],
                                                                   size=rig[c].size, radius=5)) for c in order]
    messages.insert(0, (1, T0_NS - 10**9, np.zeros((rig[1].size[1], rig[1].size[0], 3), np.uint8)))  # unpaired
    write_image_bag(root / "images_bag", topics, kinds, messages)
    model = export_keypoint_net(root / "dots", output="heatmap", input_size=(640, 480))
    return {"root": root, "truth": truth, "model": model, "topics": topics, "frames": frames}


def run_process(image_bag, out, *extra):
    return main(["process", "--bag", str(image_bag["root"] / "images_bag"), "--topics", *image_bag["topics"],
                 "--calib", str(image_bag["root"] / "calib.toml"), "--out", str(out),
                 "--model", str(image_bag["model"]), "--no-progress", *extra])


def test_process_bag_gives_3d_skeletons_close_to_the_truth(image_bag, tmp_path):
    out = tmp_path / "walk.json"
    assert run_process(image_bag, out, "--format", "json", "--bag-out", str(tmp_path / "poses_bag")) == 0
    seq = read_skeleton_json(out)
    assert len(seq.person_ids()) == 1 and len(seq.frames) == image_bag["frames"]
    points, _ = seq.track(seq.person_ids()[0])
    seen = np.isfinite(points).all(-1)
    assert seen[10:].mean() > 0.95
    err = np.linalg.norm(points - image_bag["truth"], axis=-1)[seen]
    assert np.median(err) < 0.03, np.median(err)
    report = json.loads((tmp_path / "walk.report.json").read_text())
    assert report["fps"] == pytest.approx(FPS, rel=0.02)
    assert [row["unmatched"] for row in report["inputs"]] == [0, 1, 0]
    assert all(row["median_px"] < 3.0 for row in report["reprojection"]["cameras"])
    clouds = read_bag(tmp_path / "poses_bag")["/human_pose_3d"]                  # fused at cam1's stamps
    assert [stamp_ns(m.header) for _, m in clouds] == [T0_NS + int(t * 1e9 / FPS) for t in range(len(clouds))]


def test_process_bag_input_errors_exit_2(image_bag, tmp_path, capsys):
    assert main(["process", "--bag", str(image_bag["root"] / "images_bag"), "--calib",
                 str(image_bag["root"] / "calib.toml"), "--out", str(tmp_path / "x.json"), "--no-progress"]) == 2
    assert "--bag and --topics go together" in capsys.readouterr().err
    assert run_process({**image_bag, "topics": image_bag["topics"][:2]}, tmp_path / "x.json") == 2
    assert "2 topics were given" in capsys.readouterr().err
    assert not (tmp_path / "x.json").exists()


# --- --bag-out -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def keypoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("keypoints")
    rig, script, rng = default_rig(4), MotionScript(n_people=2, seed=1), np.random.default_rng(1)
    save_rig(rig, root / "calib.toml")
    dirs = [root / cam.name for cam in rig]
    for d in dirs:
        d.mkdir()
    for t in range(25):
        obs = observe(rig, script.pose(t / FPS), rng)
        for c, (cam, d) in enumerate(zip(rig, dirs)):
            rows = obs.person_ids[c] >= 0
            write_openpose_frame(d / f"{cam.name}_{t:012d}_keypoints.json", obs.points2d[c, rows], obs.scores[c, rows])
    return root, dirs


def test_triangulate_bag_out_holds_the_json_skeletons_markers_and_tf(keypoints, tmp_path, capsys):
    root, dirs = keypoints
    bag = tmp_path / "out" / "poses_bag"
    assert main(["triangulate", "--calib", str(root / "calib.toml"), "--keypoints", *map(str, dirs),
                 "--layout", "coco17", "--out", str(tmp_path / "walk.json"), "--bag-out", str(bag),
                 "--no-progress"]) == 0
    assert f"wrote {bag}" in capsys.readouterr().out
    assert sorted(p.name for p in bag.iterdir()) == ["metadata.yaml", "poses_bag.mcap"]
    assert [p.name for p in bag.parent.iterdir()] == ["poses_bag"]                    # no temp folder left
    seq, topics = read_skeleton_json(tmp_path / "walk.json"), read_bag(bag)
    assert sorted(topics) == ["/human_pose_3d", "/human_pose_3d/markers", "/tf"]
    assert all(len(msgs) == len(seq.frames) == 25 for msgs in topics.values())
    layout, fields = get_layout("coco17"), [(name, dt) for name, dt in HUMAN_POSE_FIELDS]
    for frame, (log_ns, cloud), (_, markers), (_, tf) in zip(seq.frames, *topics.values()):
        stamp = round(frame.index * 1e9 / FPS)
        assert stamp_ns(cloud.header) == log_ns == stamp and cloud.header.frame_id == "world"
        assert [(f.name, f.datatype) for f in cloud.fields] == fields and not cloud.is_dense
        cols = decode_cloud(cloud)
        np.testing.assert_array_equal(cols["id"][:, 0], frame.ids)
        xyz = np.stack([cols["x"], cols["y"], cols["z"]], axis=-1)
        np.testing.assert_allclose(xyz, frame.points, atol=2e-6, equal_nan=True)   # float32 vs 6 decimals
        assert len(markers.markers) == 3 * len(frame.ids)
        assert {m.id for m in markers.markers} == {3 * i + k for i in frame.ids for k in range(3)}
        bodies = {t.child_frame_id: t for t in tf.transforms if t.child_frame_id.startswith("body_")}
        for pid, points in zip(frame.ids, frame.points):
            body = bodies[f"body_{pid}"].transform.translation
            assert [body.x, body.y, body.z] == pytest.approx(layout.hip_centre(points), abs=1e-5)
        assert all(stamp_ns(t.header) == stamp for t in tf.transforms)
        for t in tf.transforms:  # REP-155: bodies under the world, each joint under its own body
            pid = t.child_frame_id.rsplit("_", 1)[1]
            assert t.header.frame_id == ("world" if t.child_frame_id.startswith("body_") else f"body_{pid}")


def poses(stamp=2.5, ids=(3, 7)):
    rng = np.random.default_rng(4)
    points = rng.normal(size=(len(ids), 17, 3))
    points[0, 5] = np.nan
    return HumanPoses(points, rng.uniform(size=(len(ids), 17)), np.array(ids), np.full((len(ids), 17), 2), stamp,
                      "map")


def test_bag_cloud_bytes_equal_the_live_nodes_cloud(tmp_path):
    pointcloud = pytest.importorskip("hpe_ros.ros.pointcloud", reason="needs the ROS 2 message wheels")
    frame = poses()
    write_pose_bag(tmp_path / "b", [frame], "coco17")
    (_, cloud), = read_bag(tmp_path / "b")["/human_pose_3d"]
    live = pointcloud.human_pose_to_cloud(frame)
    assert cloud.data.tobytes() == bytes(live.data)
    assert (cloud.height, cloud.width, cloud.point_step, cloud.row_step) == (live.height, live.width,
                                                                              live.point_step, live.row_step)
    assert [(f.name, f.offset, f.datatype, f.count) for f in cloud.fields] == \
        [(f.name, f.offset, f.datatype, f.count) for f in live.fields]


def test_bag_out_replaces_an_earlier_bag_and_refuses_other_folders(tmp_path):
    write_pose_bag(tmp_path / "b", [poses(1.0)], "coco17")
    write_pose_bag(tmp_path / "b", [poses(2.0), poses(3.0)], "coco17")
    assert len(read_bag(tmp_path / "b")["/tf"]) == 2
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "keep.txt").write_text("x")
    with pytest.raises(ValueError, match="exists and is not a rosbag2 folder"):
        write_pose_bag(tmp_path / "notes", [poses()], "coco17")
    assert (tmp_path / "notes" / "keep.txt").read_text() == "x"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b", "notes"]


def test_a_failed_write_leaves_nothing_behind(tmp_path):
    bad = HumanPoses(np.zeros((1, 17, 3)), np.ones((1, 17)), np.array([-1]), np.zeros((1, 17)), 1.0, "world")
    with pytest.raises(ValueError, match="ids must lie in"):
        write_pose_bag(tmp_path / "b", [poses(), bad], "coco17")
    assert list(tmp_path.iterdir()) == []
