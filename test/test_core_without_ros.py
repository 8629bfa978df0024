"""The core never needs ROS: every module outside hpe_ros/ros/ imports with rclpy and messages unimportable."""
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "hpe_ros"

BLOCK_ROS = r"""
import importlib.abc, sys
ROS = ("rclpy", "rosidl_runtime_py", "sensor_msgs", "std_msgs", "std_srvs", "geometry_msgs",
       "visualization_msgs", "diagnostic_msgs", "lifecycle_msgs", "builtin_interfaces", "tf2_ros",
       "tf2_msgs", "hri_msgs", "rcl_interfaces")

class BlockRos(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ROS:
            raise ImportError(f"{name} is blocked: the core must not import ROS")
        return None

sys.meta_path.insert(0, BlockRos())
import importlib
for name in sys.argv[1:]:
    importlib.import_module(name)
print("imported", len(sys.argv) - 1)
"""


def core_modules() -> list[str]:
    names = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[1:2] == ["ros"]:
            continue
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names.append(".".join(parts))
    return names


def test_every_core_module_imports_without_ros():
    modules = core_modules()
    assert "hpe_ros.fusion.pipeline" in modules and not any(m.startswith("hpe_ros.ros") for m in modules)
    run = subprocess.run([sys.executable, "-c", BLOCK_ROS, *modules], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert f"imported {len(modules)}" in run.stdout
