"""ROS4HRI (REP-155) output: the tracked bodies' ids on `humans/bodies/tracked`.

The body frames themselves (`body_<id>`, joints under them) are sent by TFSender. ROS4HRI tools
(pyhri, hri_rviz, ...) then find each body as `body_<id>` on /tf with `<id>` from this list; with a
`frame_prefix` they no longer match, so keep it empty for them. hri_msgs is generated at set-up
(tools/build_interfaces.py); without it `.available` is False and nothing is sent.
"""
from __future__ import annotations

from rclpy.qos import QoSProfile

from hpe_ros.ros.pointcloud import copy_header

TRACKED_TOPIC = "humans/bodies/tracked"  # relative: under the rig's namespace (/humans/... at the root)


class HRIPublisher:
    """Publishes hri_msgs/IdsList of the track ids (as strings) of every fused frame, empty ones included."""

    def __init__(self, node):
        try:
            from hri_msgs.msg import IdsList
        except ImportError:
            node.get_logger().warning("publish_hri: hri_msgs is not installed (`make interfaces` generates it); "
                                      f"no {TRACKED_TOPIC}")
            self.available, self._publisher = False, None
            return
        self._message_type = IdsList
        # A managed node's own_publisher: released on deactivate with the node's other publishers.
        create = getattr(node, "own_publisher", node.create_publisher)
        self._publisher = create(IdsList, TRACKED_TOPIC, QoSProfile(depth=10))
        self.available = True

    def publish(self, ids, header) -> None:
        """ids: (P,) track ids of one fused frame; header: its stamp and reference frame."""
        if self._publisher is not None:
            self._publisher.publish(self._message_type(header=copy_header(header),
                                                       ids=[str(int(i)) for i in ids]))
