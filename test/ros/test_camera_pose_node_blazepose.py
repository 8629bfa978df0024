"""camera_pose_node with the blazepose backend on LiteRT: a real photograph in, one COCO-17 person out per camera."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("rclpy")
pytest.importorskip("mediapipe", reason="needs mediapipe==0.10.14 (the BlazePose weights)")
pytest.importorskip("ai_edge_litert.interpreter", reason="needs ai-edge-litert: pip install '.[blazepose]'")
skimage_data = pytest.importorskip("skimage.data", reason="needs scikit-image for the test photograph")
pytestmark = [pytest.mark.ros, pytest.mark.timeout(120)]

from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from sensor_msgs.msg import Image, PointCloud2  # noqa: E402

from hpe_ros.ros.camera_pose_node import CameraPoseNode  # noqa: E402
from hpe_ros.ros.images import numpy_to_image  # noqa: E402
from hpe_ros.ros.pointcloud import cloud_to_pose2d, make_header  # noqa: E402
from hpe_ros.ros.qos import POSES, SENSOR  # noqa: E402
from hpe_ros.skeleton import get_layout  # noqa: E402

from helpers.ros_spin import spin  # noqa: E402

CAMS = ["left", "right"]


def test_blazepose_backend_publishes_each_cameras_person(ros_context):
    params = [Parameter("cameras", value=CAMS), Parameter("backend", value="blazepose"),
              Parameter("blazepose_runtime", value="tflite"), Parameter("output_layout", value="coco17"),
              Parameter("batch_timeout_s", value=0.05)]
    node = CameraPoseNode(context=ros_context, parameter_overrides=params)
    assert node.bring_up()
    tester = Node("tester", context=ros_context)
    out = {c: [] for c in CAMS}
    for c in CAMS:
        tester.create_subscription(PointCloud2, f"/{c}/pose_2d", lambda m, c=c: out[c].append(cloud_to_pose2d(m)),
                                   POSES)
    pubs = {c: tester.create_publisher(Image, f"/{c}/image_raw", SENSOR) for c in CAMS}
    executor = SingleThreadedExecutor(context=ros_context)
    executor.add_node(node)
    executor.add_node(tester)
    try:
        spin(executor, 0.5)  # discovery
        bgr = np.ascontiguousarray(skimage_data.astronaut()[..., ::-1])
        images = {"left": bgr, "right": np.ascontiguousarray(bgr[:, ::-1])}  # mirrored: she moves to the left
        for k in range(3):
            for c in CAMS:
                pubs[c].publish(numpy_to_image(images[c], "bgr8", make_header(1.0 + k, f"{c}_optical_frame")))
            spin(executor, 1.0, until=lambda: all(out[c] for c in CAMS))
        assert spin(executor, 20.0, until=lambda: all(out[c] for c in CAMS)), {c: len(v) for c, v in out.items()}
    finally:
        executor.shutdown()
        tester.destroy_node()
        node.destroy_node()
    nose = get_layout("coco17").index("nose")
    noses = {}
    for c in CAMS:
        points, scores = out[c][-1][:2]
        assert points.shape == (1, 17, 2), points.shape
        assert scores[0, nose] > 0.5
        noses[c] = points[0, nose]
    assert noses["right"][0] == pytest.approx(512 - 1 - noses["left"][0], abs=10.0)  # the mirror image's nose
    assert noses["right"][1] == pytest.approx(noses["left"][1], abs=10.0)


def test_fused_skeletons_guide_crops_into_the_next_frame(ros_context):
    """A skeleton on /human_pose_3d that no camera tracks becomes a guided ROI of the next frame's batch."""
    from hpe_ros.io.pose_cloud import HumanPoses
    from hpe_ros.ros.pointcloud import human_pose_to_cloud

    params = [Parameter("cameras", value=["cam0", "cam1"]), Parameter("blazepose_runtime", value="tflite"),
              Parameter("calibration_file", value="example_rig.toml"), Parameter("batch_timeout_s", value=0.05)]
    node = CameraPoseNode(context=ros_context, parameter_overrides=params)
    assert node.bring_up()
    assert node.backend.name.startswith("blazepose")          # the default backend
    tester = Node("guide_tester", context=ros_context)
    out = []
    tester.create_subscription(PointCloud2, "/cam0/pose_2d", out.append, POSES)
    images = {c: tester.create_publisher(Image, f"/{c}/image_raw", SENSOR) for c in ("cam0", "cam1")}
    guide = tester.create_publisher(PointCloud2, "/human_pose_3d", POSES)
    executor = SingleThreadedExecutor(context=ros_context)
    executor.add_node(node)
    executor.add_node(tester)
    layout = get_layout("coco17")
    skeleton = np.zeros((1, 17, 3))
    skeleton[0, :, 2] = np.linspace(1.7, 0.1, 17)                 # a vertical person at the world origin
    skeleton[0, [layout.index("left_shoulder"), layout.index("left_hip")], 0] = 0.15
    try:
        spin(executor, 0.5)
        guide.publish(human_pose_to_cloud(HumanPoses(skeleton, np.ones((1, 17)), np.array([7]), np.full((1, 17), 2),
                                                     1.0, "world")))
        assert spin(executor, 5.0, until=lambda: node.guide is not None)
        blank = np.zeros((480, 640, 3), np.uint8)
        for c, pub in images.items():
            pub.publish(numpy_to_image(blank, "bgr8", make_header(1.0, f"{c}_optical_frame")))
        assert spin(executor, 20.0, until=lambda: out)
    finally:
        executor.shutdown()
        tester.destroy_node()
        node.destroy_node()
    assert node.backend.last_timings["guided"] == 2             # one ROI per camera, both in view
    assert len(cloud_to_pose2d(out[-1])[0]) == 0                 # a blank image: the presence check drops it
