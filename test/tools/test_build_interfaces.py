"""tools/build_interfaces.py: the wheel it packs from a staging prefix, and the interfaces it installed."""
from __future__ import annotations

import base64
import hashlib
import importlib.util
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("build_interfaces", ROOT / "tools" / "build_interfaces.py")
build_interfaces = importlib.util.module_from_spec(spec)
spec.loader.exec_module(build_interfaces)


def test_interface_definitions_are_read_from_package_xml():
    tf2 = build_interfaces.read_package(ROOT / "interfaces" / "tf2_msgs")
    assert tf2["name"] == "tf2_msgs" and tf2["depends"] == ["geometry_msgs"] and tf2["messages"] == ["TFMessage"]
    hri = build_interfaces.read_package(ROOT / "interfaces" / "hri_msgs")
    assert hri["depends"] == ["std_msgs"] and "IdsList" in hri["messages"]
    tf_message = (ROOT / "interfaces/tf2_msgs/msg/TFMessage.msg").read_text()
    assert tf_message == "geometry_msgs/TransformStamped[] transforms\n"


def test_source_hash_follows_the_definitions(tmp_path):
    pkg = tmp_path / "demo_msgs"
    (pkg / "msg").mkdir(parents=True)
    (pkg / "msg" / "A.msg").write_text("int32 a\n")
    before = build_interfaces.source_hash(pkg)
    assert build_interfaces.source_hash(pkg) == before
    (pkg / "msg" / "A.msg").write_text("int64 a\n")
    assert build_interfaces.source_hash(pkg) != before


def test_wheel_puts_the_python_package_at_the_root_and_the_rest_in_the_prefix(tmp_path):
    stage = tmp_path / "stage"
    files = {
        "lib/python3.11/site-packages/demo_msgs/__init__.py": b"",
        "lib/python3.11/site-packages/demo_msgs/msg/_a.py": b"A = 1\n",
        "lib/python3.11/site-packages/demo_msgs/__pycache__/x.pyc": b"skip",
        "lib/python3.11/site-packages/demo_msgs-0.0.0-py3.11.egg-info/PKG-INFO": b"skip",
        "lib/libdemo_msgs__rosidl_generator_c.so": b"\x7fELF",
        "share/demo_msgs/msg/A.msg": b"int32 a\n",
    }
    for rel, data in files.items():
        (stage / rel).parent.mkdir(parents=True, exist_ok=True)
        (stage / rel).write_bytes(data)
    package = {"name": "demo_msgs", "version": "0.0.0", "depends": ["std_msgs"], "messages": ["A"]}
    wheel = build_interfaces.pack_wheel(stage, package, "ros-demo-msgs", "0.0.0+src1", tmp_path / "dist")

    assert wheel.name.startswith("ros_demo_msgs-0.0.0+src1-cp3") and wheel.suffix == ".whl"
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        data_dir = "ros_demo_msgs-0.0.0+src1.data/data/"
        info = "ros_demo_msgs-0.0.0+src1.dist-info/"
        assert names == {"demo_msgs/__init__.py", "demo_msgs/msg/_a.py",
                         data_dir + "lib/libdemo_msgs__rosidl_generator_c.so", data_dir + "share/demo_msgs/msg/A.msg",
                         info + "METADATA", info + "WHEEL", info + "top_level.txt", info + "RECORD"}
        metadata = zf.read(info + "METADATA").decode()
        assert "Name: ros-demo-msgs\n" in metadata and "Requires-Dist: ros-std-msgs\n" in metadata
        assert "Root-Is-Purelib: false" in zf.read(info + "WHEEL").decode()
        for line in zf.read(info + "RECORD").decode().splitlines():  # every file with its hash and size
            name, digest, size = line.split(",")
            if name == info + "RECORD":
                assert digest == size == ""
                continue
            data = zf.read(name)
            expected = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            assert digest == f"sha256={expected}" and int(size) == len(data)


def test_missing_python_package_in_the_stage_is_one_clear_error(tmp_path):
    (tmp_path / "stage" / "lib").mkdir(parents=True)
    package = {"name": "demo_msgs", "version": "0.0.0", "depends": [], "messages": []}
    with pytest.raises(build_interfaces.BuildError, match="no Python package 'demo_msgs'"):
        build_interfaces.pack_wheel(tmp_path / "stage", package, "ros-demo-msgs", "0.0.0", tmp_path / "dist")


@pytest.mark.ros
def test_installed_interfaces_carry_the_upstream_fields():
    """What `make interfaces` installed: the fields of the upstream definitions, serializable through rclpy."""
    pytest.importorskip("rclpy")
    tf2_msgs = pytest.importorskip("tf2_msgs.msg", reason="tf2_msgs not built (`make interfaces`)")
    hri_msgs = pytest.importorskip("hri_msgs.msg", reason="hri_msgs not built (`make interfaces`)")
    from rclpy.serialization import deserialize_message, serialize_message

    assert tf2_msgs.TFMessage.get_fields_and_field_types() == {
        "transforms": "sequence<geometry_msgs/TransformStamped>"}
    assert hri_msgs.IdsList.get_fields_and_field_types() == {"header": "std_msgs/Header", "ids": "sequence<string>"}
    ids = hri_msgs.IdsList(ids=["body_1", "body_7"])
    ids.header.frame_id = "world"
    back = deserialize_message(serialize_message(ids), hri_msgs.IdsList)
    assert back.ids == ["body_1", "body_7"] and back.header.frame_id == "world"
