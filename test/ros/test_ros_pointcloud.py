"""PointCloud2 pose schema: round trips, byte layout, foreign layouts, validation, speed."""
import array
import time

import numpy as np
import pytest
from builtin_interfaces.msg import Time
from sensor_msgs.msg import PointCloud2, PointField
from std_msgs.msg import Header

from hpe_ros.ros.pointcloud import (
    HumanPoses,
    cloud_to_human_pose,
    cloud_to_pose2d,
    cloud_to_pose3d,
    human_pose_to_cloud,
    make_header,
    pose2d_to_cloud,
    pose3d_to_cloud,
    seconds_to_stamp,
    stamp_to_seconds,
)

F32, I32, U32, F64 = PointField.FLOAT32, PointField.INT32, PointField.UINT32, PointField.FLOAT64


def random_poses(rng, persons, joints, dim, missing=0.2):
    points = rng.uniform(-5, 5, (persons, joints, dim)).astype(np.float32).astype(np.float64)
    scores = rng.uniform(0.1, 1, (persons, joints)).astype(np.float32).astype(np.float64)
    gone = rng.random((persons, joints)) < missing
    points[gone] = np.nan
    return points, scores, gone


def assert_missing_rule(points, scores):
    finite = np.isfinite(points).all(axis=-1)
    assert np.all(np.isnan(points[~finite]))
    assert np.all(scores[~finite] == 0)


# --- stamps -----------------------------------------------------------------------------------------

def test_stamp_helpers_round_trip():
    t = seconds_to_stamp(1712345678.123456789)
    assert t.sec == 1712345678 and abs(t.nanosec - 123456789) < 500  # float64 resolution at 1.7e9 s
    assert seconds_to_stamp(2.9999999999).sec == 3 and seconds_to_stamp(2.9999999999).nanosec == 0
    assert stamp_to_seconds(Time(sec=3, nanosec=250_000_000)) == pytest.approx(3.25)
    assert stamp_to_seconds(7.5) == 7.5
    h = make_header(3.25, "world")
    assert (h.stamp.sec, h.stamp.nanosec, h.frame_id) == (3, 250_000_000, "world")
    assert stamp_to_seconds(h) == pytest.approx(3.25)
    h2 = make_header(Time(sec=4, nanosec=5), "cam0")
    assert (h2.stamp.sec, h2.stamp.nanosec) == (4, 5)
    with pytest.raises(ValueError):
        seconds_to_stamp(float("nan"))
    with pytest.raises(ValueError):
        seconds_to_stamp(-1.0)


# --- round trips ------------------------------------------------------------------------------------

@pytest.mark.parametrize("persons", [0, 1, 4])
def test_pose2d_round_trip(persons):
    rng = np.random.default_rng(persons)
    pts, scores, gone = random_poses(rng, persons, 17, 2)
    msg = pose2d_to_cloud(pts, scores, make_header(1.5, "cam0_optical_frame"))
    assert (msg.height, msg.width, msg.point_step, msg.row_step) == (persons, 17, 20, 340)
    assert msg.is_dense is False and msg.is_bigendian is False
    assert [f.name for f in msg.fields] == ["u", "v", "confidence", "person", "joint"]
    assert len(msg.data) == 340 * persons
    out_pts, out_scores = cloud_to_pose2d(msg)
    assert out_pts.shape == (persons, 17, 2) and out_pts.dtype == np.float64
    np.testing.assert_array_equal(out_pts, pts)  # float32-representable input survives exactly
    np.testing.assert_array_equal(out_scores, np.where(gone, 0.0, scores))
    assert_missing_rule(out_pts, out_scores)


@pytest.mark.parametrize("persons", [0, 3])
def test_pose3d_round_trip(persons):
    rng = np.random.default_rng(10 + persons)
    pts, scores, gone = random_poses(rng, persons, 17, 3)
    person = np.arange(persons) * 7 + 2
    msg = pose3d_to_cloud(pts, scores, make_header(2.0, "cam1_optical_frame"), person=person)
    assert (msg.height, msg.width, msg.point_step, msg.row_step) == (persons, 17, 24, 408)
    out_pts, out_scores, out_person = cloud_to_pose3d(msg)
    np.testing.assert_array_equal(out_pts, pts)
    np.testing.assert_array_equal(out_scores, np.where(gone, 0.0, scores))
    np.testing.assert_array_equal(out_person, person)
    # default person labels are the row index
    np.testing.assert_array_equal(cloud_to_pose3d(pose3d_to_cloud(pts, scores, None))[2], np.arange(persons))


@pytest.mark.parametrize("persons", [0, 5])
def test_human_pose_round_trip(persons):
    rng = np.random.default_rng(20 + persons)
    pts, conf, gone = random_poses(rng, persons, 26, 3)
    ids = np.array([0, 3, 2**32 - 1, 17, 9][:persons], dtype=np.uint64)
    views = rng.integers(0, 6, (persons, 26))
    msg = human_pose_to_cloud(HumanPoses(pts, conf, ids, views, 12.5, "world"))
    assert (msg.height, msg.width, msg.point_step, msg.row_step) == (persons, 26, 28, 728)
    out = cloud_to_human_pose(msg)
    assert isinstance(out, HumanPoses)
    np.testing.assert_array_equal(out.points, pts)
    np.testing.assert_array_equal(out.confidence, np.where(gone, 0.0, conf))
    np.testing.assert_array_equal(out.ids, ids.astype(np.int64))
    np.testing.assert_array_equal(out.views, views)
    assert out.stamp == pytest.approx(12.5) and out.frame_id == "world"
    assert out.num_persons == persons
    # A header given with the poses (shared with other messages) is the one sent.
    header = make_header(Time(sec=3, nanosec=250_000_000), "map")
    again = cloud_to_human_pose(human_pose_to_cloud(out, header))
    assert (again.stamp, again.frame_id) == (3.25, "map")
    np.testing.assert_array_equal(again.points, pts)


def test_non_finite_coordinates_force_zero_confidence():
    pts = np.zeros((2, 3, 3))
    pts[0, 0, 1] = np.nan   # one bad coordinate poisons the whole joint
    pts[1, 2, 0] = np.inf
    scores = np.full((2, 3), 0.9)
    scores[0, 1] = np.nan   # NaN confidence on a finite joint -> 0, coords kept
    scores[1, 1] = -0.5     # negative -> clipped to 0
    out_pts, out_scores, _ = cloud_to_pose3d(pose3d_to_cloud(pts, scores, Header()))
    assert np.all(np.isnan(out_pts[0, 0])) and np.all(np.isnan(out_pts[1, 2]))
    np.testing.assert_array_equal(out_scores, np.float32([[0, 0, 0.9], [0.9, 0, 0]]))
    np.testing.assert_array_equal(out_pts[0, 1], [0, 0, 0])
    assert_missing_rule(out_pts, out_scores)


def test_byte_layout_matches_independent_structured_array():
    pts = np.array([[[1.0, 2.0, 3.0], [np.nan, 0, 0]], [[4.0, 5.0, 6.0], [7.0, 8.0, 9.0]]])
    conf = np.array([[0.5, 0.7], [0.25, 1.0]])
    ids = np.array([42, 7])
    views = np.array([[2, 0], [3, 4]])
    msg = human_pose_to_cloud(HumanPoses(pts, conf, ids, views, 0.0, ""), Header())
    expected = np.zeros((2, 2), dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("confidence", "<f4"),
                                       ("id", "<u4"), ("joint", "<i4"), ("views", "<i4")])
    expected["x"], expected["y"], expected["z"] = pts[..., 0], pts[..., 1], pts[..., 2]
    expected["x"][0, 1] = expected["y"][0, 1] = expected["z"][0, 1] = np.nan
    expected["confidence"] = [[0.5, 0.0], [0.25, 1.0]]
    expected["id"] = [[42, 42], [7, 7]]
    expected["joint"] = [[0, 1], [0, 1]]
    expected["views"] = views
    assert bytes(msg.data) == expected.tobytes()
    assert [(f.name, f.offset, f.datatype, f.count) for f in msg.fields] == [
        ("x", 0, F32, 1), ("y", 4, F32, 1), ("z", 8, F32, 1), ("confidence", 12, F32, 1),
        ("id", 16, U32, 1), ("joint", 20, I32, 1), ("views", 24, I32, 1)]


# --- foreign layouts ---------------------------------------------------------------------------------

def foreign_cloud(struct: np.ndarray, fields, row_padding=0, big_endian=False) -> PointCloud2:
    """Cloud from an arbitrary structured array (P, J); fields = [(name, datatype)]."""
    persons, joints = struct.shape
    rows = struct.view(np.uint8).reshape(persons, joints * struct.dtype.itemsize)
    rows = np.concatenate([rows, np.full((persons, row_padding), 0xAB, np.uint8)], axis=1)
    msg = PointCloud2(height=persons, width=joints, is_bigendian=big_endian, is_dense=False,
                      point_step=struct.dtype.itemsize, row_step=rows.shape[1])
    msg.fields = [PointField(name=n, offset=struct.dtype.fields[n][1], datatype=d, count=1) for n, d in fields]
    msg.data = array.array("B", rows.tobytes())
    return msg


def test_decode_reordered_fields_with_padding_and_float64():
    rng = np.random.default_rng(3)
    pts, scores, gone = random_poses(rng, 3, 5, 2)
    dtype = np.dtype({"names": ["joint", "confidence", "v", "u", "person"],
                      "formats": ["<i4", "<f4", "<f8", "<f8", "<i4"],
                      "offsets": [0, 8, 16, 32, 44], "itemsize": 56})  # gaps + 8 bytes of tail padding
    struct = np.zeros((3, 5), dtype=dtype)
    struct["u"], struct["v"], struct["confidence"] = pts[..., 0], pts[..., 1], scores
    msg = foreign_cloud(struct, [("joint", I32), ("confidence", F32), ("v", F64), ("u", F64), ("person", I32)],
                        row_padding=12)
    out_pts, out_scores = cloud_to_pose2d(msg)
    np.testing.assert_array_equal(out_pts, pts)
    np.testing.assert_array_equal(out_scores, np.where(gone, 0, scores))


def test_decode_big_endian_cloud():
    pts = np.arange(2 * 4 * 3, dtype=np.float64).reshape(2, 4, 3) / 4
    conf = np.linspace(0.1, 0.8, 8).reshape(2, 4).astype(np.float32)
    dtype = np.dtype([("x", ">f4"), ("y", ">f4"), ("z", ">f4"), ("confidence", ">f4"),
                      ("id", ">u4"), ("joint", ">i4"), ("views", ">i4")])
    struct = np.zeros((2, 4), dtype=dtype)
    struct["x"], struct["y"], struct["z"], struct["confidence"] = pts[..., 0], pts[..., 1], pts[..., 2], conf
    struct["id"] = [[70000], [5]]
    struct["views"] = 3
    msg = foreign_cloud(struct, [("x", F32), ("y", F32), ("z", F32), ("confidence", F32),
                                 ("id", U32), ("joint", I32), ("views", I32)], big_endian=True)
    out = cloud_to_human_pose(msg)
    np.testing.assert_array_equal(out.points, pts)
    np.testing.assert_allclose(out.confidence, conf)
    np.testing.assert_array_equal(out.ids, [70000, 5])
    assert np.all(out.views == 3)


# --- validation -------------------------------------------------------------------------------------

def test_missing_field_is_a_clear_error():
    msg = pose2d_to_cloud(np.zeros((1, 3, 2)), np.ones((1, 3)), Header())
    msg.fields = [f for f in msg.fields if f.name != "confidence"]
    with pytest.raises(ValueError, match="pose_2d cloud: missing field 'confidence'"):
        cloud_to_pose2d(msg)
    with pytest.raises(ValueError, match="human_pose cloud: missing field 'x'"):
        cloud_to_human_pose(msg)


def test_wrong_datatype_and_overrunning_field():
    msg = pose3d_to_cloud(np.zeros((1, 3, 3)), np.ones((1, 3)), Header())
    msg.fields[2].datatype = I32
    with pytest.raises(ValueError, match="field 'z' has datatype INT32.*expected FLOAT32 or FLOAT64"):
        cloud_to_pose3d(msg)
    msg = pose3d_to_cloud(np.zeros((1, 3, 3)), np.ones((1, 3)), Header())
    msg.fields[0].offset = 22
    with pytest.raises(ValueError, match="overruns point_step"):
        cloud_to_pose3d(msg)


def test_truncated_data_and_bad_row_step():
    msg = pose3d_to_cloud(np.zeros((2, 3, 3)), np.ones((2, 3)), Header())
    msg.data = msg.data[:-4]
    with pytest.raises(ValueError, match=r"pose_3d cloud: data has 140 bytes; expected .* = 144"):
        cloud_to_pose3d(msg)
    msg = pose3d_to_cloud(np.zeros((2, 3, 3)), np.ones((2, 3)), Header())
    msg.row_step = 20
    with pytest.raises(ValueError, match="row_step 20 < point_step 24"):
        cloud_to_pose3d(msg)


def test_encoder_input_validation():
    with pytest.raises(ValueError, match=r"points must be \(P, J, 2\)"):
        pose2d_to_cloud(np.zeros((1, 3, 3)), np.ones((1, 3)), Header())
    with pytest.raises(ValueError, match="scores must be"):
        pose3d_to_cloud(np.zeros((1, 3, 3)), np.ones((1, 4)), Header())
    with pytest.raises(ValueError, match="ids must lie in"):
        human_pose_to_cloud(HumanPoses(np.zeros((1, 3, 3)), np.ones((1, 3)), [-1], np.zeros((1, 3)), 0.0, "w"))
    with pytest.raises(ValueError, match="views must be"):
        human_pose_to_cloud(HumanPoses(np.zeros((1, 3, 3)), np.ones((1, 3)), [1], np.zeros((2, 3)), 0.0, "w"))


def test_header_is_copied_not_shared():
    header = make_header(1.0, "world")
    msg = pose2d_to_cloud(np.zeros((1, 2, 2)), np.ones((1, 2)), header)
    header.frame_id = "changed"
    assert msg.header.frame_id == "world"


# --- speed (printed, not asserted: see benchmarks/) ------------------------------------------------------

def test_encode_decode_speed_6x17(capsys):
    rng = np.random.default_rng(0)
    pts, conf, _ = random_poses(rng, 6, 17, 3)
    ids, views, header = np.arange(6), np.full((6, 17), 3), make_header(1.0, "world")
    n = 300
    t0 = time.perf_counter()
    for _ in range(n):
        msg = human_pose_to_cloud(HumanPoses(pts, conf, ids, views, 1.0, "world"), header)
    t1 = time.perf_counter()
    for _ in range(n):
        cloud_to_human_pose(msg)
    t2 = time.perf_counter()
    with capsys.disabled():
        print(f"\nhuman_pose cloud 6x17: encode {(t1 - t0) / n * 1e6:.0f} us, decode {(t2 - t1) / n * 1e6:.0f} us")
