"""Parameters over the real parameter service, as `ros2 param set` sends them: the ones read only when
the node configures or activates are read-only (the set fails, saying why); runtime ones apply at once."""
from __future__ import annotations

import pytest

pytest.importorskip("rclpy")
pytestmark = [pytest.mark.ros, pytest.mark.timeout(120)]

from rcl_interfaces.srv import SetParameters  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from visualization_msgs.msg import MarkerArray  # noqa: E402

from hpe_ros.resources import DEFAULT_CONFIG, config_path  # noqa: E402
from hpe_ros.ros.launcher import load_config, make_nodes  # noqa: E402
from hpe_ros.ros.qos import POSES  # noqa: E402

from helpers.ros_spin import spin  # noqa: E402


def set_remotely(client_node, executor, node_name: str, **values):
    """SetParameters on /<node_name>/set_parameters (what `ros2 param set` calls) -> results in order."""
    client = client_node.create_client(SetParameters, f"/{node_name}/set_parameters")
    assert spin(executor, 10.0, until=client.service_is_ready)
    future = client.call_async(SetParameters.Request(
        parameters=[Parameter(k, value=v).to_parameter_msg() for k, v in values.items()]))
    assert spin(executor, 10.0, until=future.done)
    return future.result().results


def test_configure_time_parameters_refuse_runtime_ones_apply(ros_context):
    executor = SingleThreadedExecutor(context=ros_context)
    config = load_config(config_path(DEFAULT_CONFIG))
    overrides = {"rig_sim_node": {"num_people": 1, "seed": 2}, "fusion_node": {"use_lifter": False}}
    sim, fusion = make_nodes(["rig_sim_node", "fusion_node"], config, overrides, context=ros_context)
    client = Node("param_client", context=ros_context)
    lifetimes: list[float] = []
    client.create_subscription(MarkerArray, "/human_pose_3d/markers", lambda m: lifetimes.extend(
        k.lifetime.sec + k.lifetime.nanosec * 1e-9 for k in m.markers if k.action == k.ADD), POSES)
    try:
        for n in (client, sim, fusion):
            executor.add_node(n)
        assert sim.bring_up() and fusion.bring_up()
        for node_name, name, new in [("fusion_node", "world_frame", "elsewhere"), ("fusion_node", "cameras", ["cam0"]),
                                     ("fusion_node", "fusion.min_views", 3), ("rig_sim_node", "num_people", 4)]:
            (result,) = set_remotely(client, executor, node_name, **{name: new})
            assert not result.successful and "read-only" in result.reason, (name, result)
        assert fusion.get_parameter("world_frame").value == "world"

        assert spin(executor, 30.0, until=lambda: len(lifetimes) >= 3)
        assert set(lifetimes) == {0.5}
        (result,) = set_remotely(client, executor, "fusion_node", marker_lifetime_s=3.0)
        assert result.successful, result.reason
        lifetimes.clear()
        assert spin(executor, 30.0, until=lambda: len(lifetimes) >= 3)
        assert set(lifetimes[-3:]) == {3.0}  # the next frames' markers already carry it
    finally:
        for n in (sim, fusion, client):
            n.destroy_node()
        executor.shutdown()
