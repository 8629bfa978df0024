"""Two small validators every module shares: array shapes and dataclass configs from mappings.

`check_shape` turns "points2d must be (C, P, J, 2)" into one call that binds the letters as it goes,
so later arrays can be checked against sizes an earlier one fixed::

    dims = check_shape("points2d", points2d, ("C", "P", "J", 2))
    check_shape("scores", scores, ("C", "P", "J"), dims)

`config_from_mapping` builds a (possibly nested) dataclass from YAML / ROS parameters / CLI options,
rejecting unknown keys and values of the wrong kind with one clear line.
"""
from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

import numpy as np

Dim = int | str | None  # a fixed size, a named size bound on first use, or "any"
T = TypeVar("T")


def check_shape(name: str, array: Any, shape: Sequence[Dim], dims: dict[str, int] | None = None,
                leading: bool = False) -> dict[str, int]:
    """Check `array.shape` against `shape`; named sizes bind in (and are checked against) `dims`.

    With `leading=True` any number of leading axes may come before `shape` (the `(..., D)` pattern).
    Returns `dims` (a new dict when none was given) so calls can be chained. Raises ValueError naming
    the array, the expected shape with the sizes already known, and what arrived.
    """
    dims = {} if dims is None else dims
    got = tuple(np.shape(array))
    tail = got[len(got) - len(shape):] if leading and len(got) >= len(shape) else got
    bound = dict(dims)  # bind into a copy: a failed check must not report sizes it read from the bad array
    ok = len(tail) == len(shape)
    if ok:
        for want, size in zip(shape, tail):
            if isinstance(want, str):
                if bound.setdefault(want, size) != size:
                    ok = False
            elif want is not None and want != size:
                ok = False
    if not ok:
        spelled = ", ".join("?" if w is None else str(dims.get(w, w)) if isinstance(w, str) else str(w)
                            for w in shape)
        prefix = "..., " if leading else ""
        if len(shape) == 1:
            spelled += ","
        raise ValueError(f"{name} must have shape ({prefix}{spelled}), got {got}")
    dims.update(bound)
    return dims


def _coerce(owner: str, key: str, kind: Any, value: Any) -> Any:
    """`value` converted to the field's declared kind, or ValueError."""
    choices = typing.get_args(kind)
    if type(None) in choices and len(choices) == 2:  # `X | None`: None ("automatic") or an X
        if value is None:
            return None
        kind = next(c for c in choices if c is not type(None))
    if kind is bool:
        if not isinstance(value, (bool, np.bool_)):
            raise ValueError(f"{owner} option {key} must be true or false, got {value!r}")
        return bool(value)
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or float(value) != int(value):
            raise ValueError(f"{owner} option {key} must be an integer, got {value!r}")
        return int(value)
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
            raise ValueError(f"{owner} option {key} must be a number, got {value!r}")
        return float(value)
    if kind is str:
        if not isinstance(value, str):
            raise ValueError(f"{owner} option {key} must be a string, got {value!r}")
        return value
    return value  # tuples, unions, ...: the dataclass' own __post_init__ validates them


def config_from_mapping(cls: type[T], data: Mapping[str, Any], owner: str | None = None) -> T:
    """Build dataclass `cls` from `data`; nested dataclass fields take nested mappings.

    Unknown keys and values of the wrong kind (bool / int / float / str fields) raise ValueError that
    names `owner` (default: the class name) and lists the valid keys. Missing keys keep their defaults.
    """
    owner = owner or cls.__name__
    if not isinstance(data, Mapping):
        raise ValueError(f"{owner} options must be a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    valid = {f.name: f for f in dataclasses.fields(cls) if f.init}  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(valid))
    if unknown:
        raise ValueError(f"unknown {owner} option(s) {unknown}; valid: {', '.join(valid)}")
    kwargs = {}
    for key, value in data.items():
        kind = hints.get(key)
        if dataclasses.is_dataclass(kind) and isinstance(value, Mapping):
            kwargs[key] = config_from_mapping(kind, value, f"{owner}.{key}")  # type: ignore[arg-type]
        else:
            kwargs[key] = _coerce(owner, key, kind, value)
    return cls(**kwargs)
