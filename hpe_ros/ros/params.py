"""Declare ROS parameters with a description and range in one line each, and read them back typed.

Config dataclasses declare themselves: `declare_config(node, FusionConfig, "fusion")` makes one parameter
per field (`fusion.min_views`, `fusion.tracker.gate_m`, ...) with the field's default and the help text
and range in its metadata; `config_values` reads them back as the nested mapping that
`hpe_ros.checks.config_from_mapping` turns into the dataclass. `read_only_except` marks the parameters
a node reads only at configure/activate time read-only.
"""
from __future__ import annotations

import copy
import dataclasses
import typing
from typing import Any

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, ParameterType
from rclpy.exceptions import ParameterUninitializedException
from rclpy.parameter import Parameter

_TYPES = {
    bool: ParameterType.PARAMETER_BOOL,
    int: ParameterType.PARAMETER_INTEGER,
    float: ParameterType.PARAMETER_DOUBLE,
    str: ParameterType.PARAMETER_STRING,
}


def declare(node, name: str, default: Any, description: str, *, low=None, high=None,
            read_only: bool = False, type_=None) -> Any:
    """Declare `name` with a description (and a range for numbers); return its current value.

    Lists need `type_` (list of str -> ParameterType.PARAMETER_STRING_ARRAY) so an empty default is typed.
    """
    desc = ParameterDescriptor(description=description, read_only=read_only)
    if type_ is not None:
        desc.type = type_
    elif type(default) in _TYPES:
        desc.type = _TYPES[type(default)]
    if low is not None or high is not None:
        if isinstance(default, float):
            desc.floating_point_range = [FloatingPointRange(from_value=float(low), to_value=float(high), step=0.0)]
        elif isinstance(default, int) and not isinstance(default, bool):
            desc.integer_range = [IntegerRange(from_value=int(low), to_value=int(high), step=1)]
    if isinstance(default, list) and not default:
        # rclpy cannot infer the type of an empty list: declare the type alone (unset until given).
        node.declare_parameter(name, Parameter.Type(desc.type), desc)
    else:
        node.declare_parameter(name, default, desc)
    return value(node, name)


def value(node, name: str) -> Any:
    """Current value; an unset (type-only) array parameter reads as []."""
    try:
        v = node.get_parameter(name).value
    except ParameterUninitializedException:
        return []
    return list(v) if isinstance(v, (tuple, list)) or type(v).__name__ == "array" else v


def _config_fields(cls, prefix: str):
    """(parameter name, field, nested dataclass or None) for every field of dataclass `cls`."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        nested = hints[f.name] if dataclasses.is_dataclass(hints[f.name]) else None
        yield (f"{prefix}.{f.name}" if prefix else f.name), f, nested


def declare_config(node, cls, prefix: str = "") -> None:
    """Declare a parameter per field of dataclass `cls`, nested dataclasses as `<prefix>.<field>.<name>`;
    description and range from the field's metadata ("help", "range": (low, high))."""
    for name, f, nested in _config_fields(cls, prefix):
        if nested is not None:
            declare_config(node, nested, name)
            continue
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        low, high = f.metadata.get("range", (None, None))
        declare(node, name, default, f.metadata.get("help", name), low=low, high=high)


def config_values(node, cls, prefix: str = "") -> dict[str, Any]:
    """The current values of the parameters `declare_config` made for `cls`, as a nested mapping."""
    return {f.name: config_values(node, nested, name) if nested is not None else value(node, name)
            for name, f, nested in _config_fields(cls, prefix)}


def read_only_except(node, runtime: tuple[str, ...] = ()) -> None:
    """Make every parameter declared so far read-only except `runtime` (and use_sim_time), so that
    `ros2 param set` on one that is only read when the node configures or activates fails, saying so,
    instead of being accepted and silently ignored. Call it at the end of the node's __init__."""
    for name in node.list_parameters([], 0).names:
        if name in runtime or name == "use_sim_time":
            continue
        descriptor = copy.deepcopy(node.describe_parameter(name))  # rclpy hands out the node's own descriptor
        if descriptor.read_only:
            continue
        descriptor.read_only = True
        try:
            node.set_descriptor(name, descriptor)
        except ParameterUninitializedException:  # a type-only array: declare it again, read-only
            node.undeclare_parameter(name)
            node.declare_parameter(name, Parameter.Type(descriptor.type), descriptor)


STRING_ARRAY = ParameterType.PARAMETER_STRING_ARRAY
