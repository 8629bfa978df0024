"""rosbag2 files read and written with `rosbags` (PyPI), no ROS install needed.

Reading: image topics (sensor_msgs Image in any encoding hpe_ros.io.image_encodings decodes, or
CompressedImage) of a sqlite3 or MCAP bag, grouped into synchronised frames by header stamp: each
message of the first topic is paired with the nearest-stamped message of every other topic within
`slop` (default half the first topic's median frame period); a frame lacking a camera is dropped
and counted.

Writing: fused skeletons as the live fusion_node publishes them, into an MCAP bag written in a temp
folder and renamed into place: /human_pose_3d (PointCloud2, the same bytes as the live cloud),
/human_pose_3d/markers (MarkerArray) and /tf (TFMessage: body_<id> at the hip centre and
<joint>_<id>, identity rotations, parented to the world frame).

    >>> with BagImages("run.bag", ["/cam1/image_raw", "/cam2/image_raw/compressed"]) as bag:
    ...     for index, stamp_ns, images in bag: ...     # images: BGR uint8 per topic
    >>> write_pose_bag("out/poses_bag", poses_per_frame, "coco17")
"""
from __future__ import annotations

import contextlib
import os
import shutil
import struct
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np

from hpe_ros.fusion.frames import rep155_joint_name
from hpe_ros.io.image_encodings import decode_compressed, decode_image, to_bgr
from hpe_ros.io.pose_cloud import HUMAN_POSE_FIELDS, HumanPoses, human_pose_columns, pack_columns
from hpe_ros.io.pose_markers import LABEL_HEIGHT, skeleton_parts
from hpe_ros.skeleton import Layout, get_layout

IMAGE = "sensor_msgs/msg/Image"
COMPRESSED_IMAGE = "sensor_msgs/msg/CompressedImage"
POSE_TOPIC = "/human_pose_3d"
MARKER_TOPIC = "/human_pose_3d/markers"
TF_TOPIC = "/tf"


def _rosbags():
    """The rosbags modules, or an error that says how to install them."""
    try:
        from rosbags.highlevel import AnyReader
        from rosbags.rosbag2 import StoragePlugin, Writer
        from rosbags.typesys import Stores, get_typestore
    except ImportError as exc:
        raise RuntimeError("reading and writing rosbag2 files needs the rosbags package: "
                           "pip install rosbags") from exc
    return AnyReader, Writer, StoragePlugin, get_typestore(Stores.ROS2_HUMBLE)  # same types on Jazzy


# --- reading images ------------------------------------------------------------------------------

def cdr_header_stamp_ns(raw: bytes) -> int:
    """header.stamp of a serialised message whose first field is a std_msgs/Header, in ns.

    Reads the 8 bytes after the 4-byte CDR encapsulation (whose 2nd byte is 1 for little-endian),
    so stamps of every image come without deserialising the pixels.
    """
    order = "<" if raw[1] == 1 else ">"
    sec, nanosec = struct.unpack_from(order + "iI", raw, 4)
    return sec * 1_000_000_000 + nanosec


def match_stamps(stamps: Sequence[np.ndarray], slop_ns: int) -> np.ndarray:
    """(T, C) index into each topic's stamps of the synchronised frames.

    stamps[c]: (N_c,) sorted int ns of topic c. Each stamp of topic 0 takes the nearest stamp of every
    other topic within slop_ns; a frame missing a topic, or losing a shared message to a closer frame, is dropped.
    """
    reference = np.asarray(stamps[0], dtype=np.int64)
    keep = np.ones(len(reference), dtype=bool)
    columns = [np.arange(len(reference))]
    for other in stamps[1:]:
        other = np.asarray(other, dtype=np.int64)
        if len(other) == 0:
            return np.zeros((0, len(stamps)), dtype=np.int64)
        right = np.clip(np.searchsorted(other, reference), 0, len(other) - 1)
        left = np.clip(right - 1, 0, len(other) - 1)
        nearest = np.where(np.abs(other[left] - reference) <= np.abs(other[right] - reference), left, right)
        gap = np.abs(other[nearest] - reference)
        keep &= gap <= slop_ns
        # one message serves one frame: the closest claimant keeps it
        order = np.lexsort((gap, nearest))
        first = np.r_[True, nearest[order][1:] != nearest[order][:-1]]
        keep[order[~first]] = False
        columns.append(nearest)
    return np.stack(columns, axis=1)[keep]


def _decode_message(msg, msgtype: str) -> np.ndarray:
    """A deserialised Image / CompressedImage -> BGR uint8 (H, W, 3)."""
    if msgtype == COMPRESSED_IMAGE:
        return decode_compressed(msg.format, msg.data)
    return to_bgr(decode_image(msg.encoding, msg.height, msg.width, msg.step, bool(msg.is_bigendian), msg.data))


class BagImages:
    """Synchronised image frames from image topics of a rosbag2 bag (sqlite3 or MCAP folder, or .mcap file).

    Iterate to get (frame index, header stamp ns of the first topic, [BGR uint8 (H, W, 3) per topic]).
    stamps_ns: (T,) int ns of the frames; counts: messages per topic; unmatched: messages per topic left out.
    Raises ValueError naming the bag for a missing bag or topic or a topic that is not an image.
    """

    def __init__(self, path: str | os.PathLike, topics: Sequence[str], slop_s: float | None = None):
        AnyReader, *_ = _rosbags()
        self.path, self.topics = Path(path), list(topics)
        if not self.path.exists():
            raise ValueError(f"{self.path}: bag not found")
        if not self.topics:
            raise ValueError(f"{self.path}: give at least one image topic")
        if len(set(self.topics)) != len(self.topics):
            raise ValueError(f"{self.path}: a topic is given twice in {self.topics}")
        self._reader = AnyReader([self.path])
        try:
            self._reader.open()
        except Exception as exc:  # rosbags raises its own error types for unreadable bags
            raise ValueError(f"{self.path}: not a readable rosbag2 bag ({exc})") from exc
        try:
            self._connections = [self._connection(topic) for topic in self.topics]
            self._index_frames(slop_s)
        except ValueError:
            self.close()
            raise

    def _connection(self, topic: str):
        found = [c for c in self._reader.connections if c.topic == topic]
        images = sorted({c.topic for c in self._reader.connections if c.msgtype in (IMAGE, COMPRESSED_IMAGE)})
        if not found:
            raise ValueError(f"{self.path}: no topic {topic}; image topics in the bag: {', '.join(images) or 'none'}")
        if found[0].msgtype not in (IMAGE, COMPRESSED_IMAGE):
            raise ValueError(f"{self.path}: topic {topic} is {found[0].msgtype}, not an Image or CompressedImage")
        return found[0]

    def _index_frames(self, slop_s: float | None) -> None:
        stamps: list[list[int]] = [[] for _ in self.topics]
        column = {c.id: k for k, c in enumerate(self._connections)}
        for connection, _, raw in self._reader.messages(connections=self._connections):
            stamps[column[connection.id]].append(cdr_header_stamp_ns(raw))
        self.counts = [len(s) for s in stamps]
        # duplicate stamps within a topic: the first message counts
        self._stamps = [np.unique(np.asarray(s, dtype=np.int64)) for s in stamps]
        if slop_s is None:
            periods = np.diff(self._stamps[0])
            slop_ns = int(np.median(periods) // 2) if len(periods) else 0
        else:
            slop_ns = int(round(float(slop_s) * 1e9))
        self._frames = match_stamps(self._stamps, slop_ns)                      # (T, C)
        self.stamps_ns = self._stamps[0][self._frames[:, 0]]
        self.unmatched = [n - len(self._frames) for n in self.counts]
        self.slop_s = slop_ns * 1e-9

    def __len__(self) -> int:
        return len(self._frames)

    def frame_period(self) -> float | None:
        """Median time between frames, s (None for fewer than two frames)."""
        return float(np.median(np.diff(self.stamps_ns))) * 1e-9 if len(self.stamps_ns) > 1 else None

    def __iter__(self) -> Iterator[tuple[int, int, list[np.ndarray]]]:
        # (topic column, stamp) -> frame; frames are emitted in order once all their images arrived
        wanted = {(k, int(self._stamps[k][i])): t for t, row in enumerate(self._frames) for k, i in enumerate(row)}
        column = {c.id: k for k, c in enumerate(self._connections)}
        pending: dict[int, dict[int, np.ndarray]] = {}
        next_frame = 0
        for connection, _, raw in self._reader.messages(connections=self._connections):
            k = column[connection.id]
            t = wanted.get((k, cdr_header_stamp_ns(raw)))
            if t is None or t < next_frame or k in pending.get(t, {}):
                continue  # not in a frame, or a repeated stamp
            msg = self._reader.deserialize(raw, connection.msgtype)
            pending.setdefault(t, {})[k] = _decode_message(msg, connection.msgtype)
            while len(pending.get(next_frame, {})) == len(self.topics):
                images = pending.pop(next_frame)
                yield next_frame, int(self.stamps_ns[next_frame]), [images[c] for c in range(len(self.topics))]
                next_frame += 1

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._reader.close()

    def __enter__(self) -> BagImages:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# --- writing poses -------------------------------------------------------------------------------

class _PoseMessages:
    """rosbags messages of what fusion_node publishes for one frame."""

    def __init__(self, typestore, layout: Layout, marker_lifetime_s: float):
        self.t = typestore.types
        self.layout = layout
        self.lifetime = self._duration(marker_lifetime_s)

    def _duration(self, seconds: float):
        ns = int(round(max(seconds, 0.0) * 1e9))
        return self.t["builtin_interfaces/msg/Duration"](sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)

    def header(self, stamp_ns: int, frame_id: str):
        time = self.t["builtin_interfaces/msg/Time"](sec=stamp_ns // 1_000_000_000, nanosec=stamp_ns % 1_000_000_000)
        return self.t["std_msgs/msg/Header"](stamp=time, frame_id=frame_id)

    def cloud(self, poses: HumanPoses, header):
        shape = poses.points.shape[:2]
        packed = pack_columns(HUMAN_POSE_FIELDS, human_pose_columns(poses), shape)
        field = self.t["sensor_msgs/msg/PointField"]
        fields = [field(name=name, offset=packed.dtype.fields[name][1], datatype=datatype, count=1)
                  for name, datatype in HUMAN_POSE_FIELDS]
        return self.t["sensor_msgs/msg/PointCloud2"](
            header=header, height=shape[0], width=shape[1], fields=fields, is_bigendian=False,
            point_step=packed.dtype.itemsize, row_step=packed.dtype.itemsize * shape[1],
            data=np.frombuffer(packed.tobytes(), dtype=np.uint8), is_dense=False)

    def _marker(self, header, marker_id: int, kind: int, action: int, color=(0.0, 0.0, 0.0), scale=(0.0, 0.0, 0.0),
                points=(), position=(0.0, 0.0, 0.0), text: str = ""):
        t = self.t
        Marker = t["visualization_msgs/msg/Marker"]
        point, vector = t["geometry_msgs/msg/Point"], t["geometry_msgs/msg/Vector3"]
        pose = t["geometry_msgs/msg/Pose"](position=point(*(float(v) for v in position)),
                                           orientation=t["geometry_msgs/msg/Quaternion"](x=0.0, y=0.0, z=0.0, w=1.0))
        alpha = 1.0 if action == Marker.ADD else 0.0
        return Marker(
            header=header, ns="human_pose", id=marker_id, type=kind, action=action, pose=pose,
            scale=vector(*(float(v) for v in scale)), color=t["std_msgs/msg/ColorRGBA"](*map(float, color), alpha),
            lifetime=self.lifetime if action == Marker.ADD else self._duration(0.0), frame_locked=False,
            points=[point(x, y, z) for x, y, z in np.asarray(points, dtype=np.float64).tolist()], colors=[],
            texture_resource="", texture=t["sensor_msgs/msg/CompressedImage"](
                header=t["std_msgs/msg/Header"](stamp=t["builtin_interfaces/msg/Time"](sec=0, nanosec=0), frame_id=""),
                format="", data=np.zeros(0, dtype=np.uint8)),
            uv_coordinates=[], text=text, mesh_resource="",
            mesh_file=t["visualization_msgs/msg/MeshFile"](filename="", data=np.zeros(0, dtype=np.uint8)),
            mesh_use_embedded_materials=False)

    def markers(self, poses: HumanPoses, header, joint_scale: float = 0.05, bone_width: float = 0.03):
        """As hpe_ros.ros.markers.skeleton_markers: 3 markers per person, DELETE for what has nothing to draw."""
        Marker = self.t["visualization_msgs/msg/Marker"]
        out = []
        for person in skeleton_parts(poses.points, poses.confidence, poses.ids, self.layout):
            base, color = person.base_id, person.color
            if len(person.joints) == 0:
                out += [self._marker(header, base + k, 0, Marker.DELETE) for k in range(3)]
                continue
            out.append(self._marker(header, base, Marker.SPHERE_LIST, Marker.ADD, color, (joint_scale,) * 3,
                                    person.joints))
            out.append(self._marker(header, base + 1, Marker.LINE_LIST, Marker.ADD, color, (bone_width, 0.0, 0.0),
                                    person.segments) if len(person.segments)
                       else self._marker(header, base + 1, 0, Marker.DELETE))
            out.append(self._marker(header, base + 2, Marker.TEXT_VIEW_FACING, Marker.ADD, color,
                                    (0.0, 0.0, LABEL_HEIGHT), position=person.label_xyz,
                                    text=f"id {person.track_id}"))
        return self.t["visualization_msgs/msg/MarkerArray"](markers=out)

    def transforms(self, poses: HumanPoses, header):
        """As hpe_ros.ros.tf.skeleton_transforms without orientations: body_<id> at the hip centre, under it
        the joints (REP-155 names); a person without hips is left out."""
        t = self.t
        vector, quaternion = t["geometry_msgs/msg/Vector3"], t["geometry_msgs/msg/Quaternion"]
        stamped, transform = t["geometry_msgs/msg/TransformStamped"], t["geometry_msgs/msg/Transform"]

        def frame(parent_header, child: str, xyz):
            return stamped(header=parent_header, child_frame_id=child,
                           transform=transform(translation=vector(*(float(v) for v in xyz)),
                                               rotation=quaternion(x=0.0, y=0.0, z=0.0, w=1.0)))

        bodies = self.layout.hip_centre(poses.points)                          # (P, 3)
        names = [rep155_joint_name(n) for n in self.layout.joint_names]
        out = []
        for p, track_id in enumerate(np.asarray(poses.ids).tolist()):
            if not np.isfinite(bodies[p]).all():
                continue
            out.append(frame(header, f"body_{track_id}", bodies[p]))
            body_header = t["std_msgs/msg/Header"](stamp=header.stamp, frame_id=f"body_{track_id}")
            for j in np.flatnonzero(np.isfinite(poses.points[p]).all(-1)):
                out.append(frame(body_header, f"{names[j]}_{track_id}", poses.points[p, j] - bodies[p]))
        return t["tf2_msgs/msg/TFMessage"](transforms=out)


def check_bag_out(path: str | os.PathLike) -> Path:
    """`path` as a bag to write: free, or an earlier rosbag2 folder (replaced); ValueError for anything else."""
    path = Path(path)
    if path.exists() and not (path.is_dir() and (path / "metadata.yaml").is_file()):
        raise ValueError(f"{path}: exists and is not a rosbag2 folder; not overwriting it")
    return path


def _replace_bag(tmp_bag: Path, path: Path) -> None:
    """Rename the finished bag over `path` (an earlier bag there is removed only once the new one is in place)."""
    if not check_bag_out(path).exists():
        os.replace(tmp_bag, path)
        return
    old = path.with_name(f".{path.name}.old.{os.getpid()}")
    os.replace(path, old)
    os.replace(tmp_bag, path)
    shutil.rmtree(old, ignore_errors=True)


def write_pose_bag(path: str | os.PathLike, frames: Iterable[HumanPoses], layout: Layout | str,
                   stamps_ns: Iterable[int] | None = None, marker_lifetime_s: float = 0.5) -> Path:
    """Write /human_pose_3d, /human_pose_3d/markers and /tf of each frame into an MCAP bag folder `path`.

    frames: HumanPoses per frame (frame_id = the world frame); stamps_ns: each frame's exact header stamp
    (default: poses.stamp rounded to ns; float seconds of robot time keep only ~0.2 us). Messages are
    logged at their header stamps. The bag is written in a temp folder beside `path` and renamed into
    place; an existing bag at `path` is replaced, anything else there is an error. Returns the bag path.
    """
    _, Writer, StoragePlugin, typestore = _rosbags()
    layout = get_layout(layout)
    path = check_bag_out(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    build = _PoseMessages(typestore, layout, marker_lifetime_s)
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        tmp_bag = tmp_dir / path.name
        with Writer(tmp_bag, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
            topics = {topic: writer.add_connection(topic, msgtype, typestore=typestore)
                      for topic, msgtype in ((POSE_TOPIC, "sensor_msgs/msg/PointCloud2"),
                                             (MARKER_TOPIC, "visualization_msgs/msg/MarkerArray"),
                                             (TF_TOPIC, "tf2_msgs/msg/TFMessage"))}
            stamps = iter(stamps_ns) if stamps_ns is not None else None
            for poses in frames:
                stamp_ns = int(next(stamps)) if stamps is not None else int(round(poses.stamp * 1e9))
                header = build.header(stamp_ns, poses.frame_id)
                for topic, msg in ((POSE_TOPIC, build.cloud(poses, header)),
                                   (MARKER_TOPIC, build.markers(poses, header)),
                                   (TF_TOPIC, build.transforms(poses, header))):
                    writer.write(topics[topic], stamp_ns, typestore.serialize_cdr(msg, msg.__msgtype__))
        _replace_bag(tmp_bag, path)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    return path


__all__ = ["BagImages", "match_stamps", "cdr_header_stamp_ns", "check_bag_out", "write_pose_bag", "POSE_TOPIC",
           "MARKER_TOPIC", "TF_TOPIC"]
