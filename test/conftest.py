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


def pytest_runtest_setup(item):
    """Tests marked `realdata` skip, saying why, when the real-data corpus (`make realdata`) is absent."""
    if item.get_closest_marker("realdata"):
        from hpe_ros.realdata import missing_reason

        reason = missing_reason()
        if reason:
            pytest.skip(reason)


@pytest.fixture
def realdata_demo():
    """`demo_dir` of the real-data corpus: realdata_demo("Demo_SinglePerson") -> its folder; skips when absent."""
    from hpe_ros.realdata import demo_dir, missing_reason

    reason = missing_reason()
    if reason:
        pytest.skip(reason)
    return demo_dir
