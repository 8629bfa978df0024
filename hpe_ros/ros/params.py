"""Declare ROS parameters with a description and range in one line each, and read them back typed."""
from __future__ import annotations

from typing import Any

from rclpy.exceptions import ParameterUninitializedException
from rclpy.parameter import Parameter
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, ParameterType

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


STRING_ARRAY = ParameterType.PARAMETER_STRING_ARRAY
