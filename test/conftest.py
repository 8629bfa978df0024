"""Shared test set-up: every test session gets its own DDS domain, and discovery stays on this machine."""
import os

import pytest

# Set before anything imports rclpy, and inherited by the node processes the tests start.
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("ROS_DOMAIN_ID", str(1 + os.getpid() % 100))


@pytest.fixture
def ros_context():
    """A private rclpy context (init + shutdown) so ROS tests never share global state."""
    rclpy = pytest.importorskip("rclpy")
    context = rclpy.context.Context()
    rclpy.init(context=context)
    yield context
    rclpy.try_shutdown(context=context)
