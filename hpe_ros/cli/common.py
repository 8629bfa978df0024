"""What every `hpe-ros` command shares: the one error wrapper, the per-camera path option, layout choices.

Errors: a command raises ValueError / OSError (and the extra types it declares with
`set_defaults(input_errors=...)`) for bad input; `run_command` turns them into one line on stderr and
exit status 2, and Ctrl-C into one line and exit status 130, never a traceback.

Per-camera paths (`--keypoints`, `--images`) come in one of two forms, the same for every command:
`PATH PATH ...` in the calibration's camera order, or `CAMERA=PATH CAMERA=PATH ...` in any order.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Sequence

from hpe_ros.skeleton import LAYOUTS

BAD_INPUT: tuple[type[BaseException], ...] = (ValueError, OSError)  # CalibrationError is a ValueError
LAYOUT_CHOICES = list(LAYOUTS)
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it


def command_name(args: argparse.Namespace) -> str:
    """'hpe-ros triangulate', 'hpe-ros calibrate board', ...: the prefix of the command's messages."""
    action = getattr(args, "action", None)
    return f"hpe-ros {args.command}" + (f" {action}" if action else "")


def run_command(args: argparse.Namespace) -> int:
    """Run the parsed command: bad input -> one line on stderr and 2; Ctrl-C -> one line and 130."""
    name = command_name(args)
    logging.basicConfig(level=logging.WARNING, format=f"{name}: %(message)s")
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print(f"{name}: interrupted", file=sys.stderr, flush=True)
        return EXIT_INTERRUPTED
    except BAD_INPUT + tuple(getattr(args, "input_errors", ())) as exc:
        message = "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())
        print(f"{name}: error: {message or type(exc).__name__}", file=sys.stderr, flush=True)
        return EXIT_BAD_INPUT


def _camera_and_path(item: str) -> tuple[str, str] | None:
    """'cam0=some/dir' -> ('cam0', 'some/dir'); None for a plain path (a '=' after a '/' is part of it)."""
    name, sep, path = item.partition("=")
    if not sep or "/" in name or os.sep in name:
        return None
    return name, path


def camera_paths(items: Sequence[str], flag: str, form: str = "CAMERA=FOLDER") -> list[str] | dict[str, str]:
    """A per-camera option's values -> [path, ...] (plain paths: the calibration's camera order) or
    {camera: path} (CAMERA=PATH pairs). Raises ValueError naming `flag` for a mix of the two forms,
    an empty camera or path, or a camera given twice."""
    pairs = [_camera_and_path(item) for item in items]
    if all(p is None for p in pairs):
        return list(items)
    if any(p is None for p in pairs):
        raise ValueError(f"{flag}: give every camera as {form}, or only paths in the calibration's camera order, "
                         "not a mix")
    out: dict[str, str] = {}
    for item, (name, path) in zip(items, pairs):
        if not name or not path:
            raise ValueError(f"{flag} {item!r}: expected {form}")
        if name in out:
            raise ValueError(f"{flag}: camera {name!r} is given twice")
        out[name] = path
    return out


def named_camera_paths(items: Sequence[str], flag: str, form: str) -> dict[str, str]:
    """Like `camera_paths`, for commands without a calibration to order plain paths: CAMERA=PATH only."""
    paths = camera_paths(items, flag, form)
    if isinstance(paths, list):
        raise ValueError(f"{flag} {paths[0]!r}: expected {form} (there is no calibration to name the cameras)")
    return paths


def add_progress_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


__all__ = ["run_command", "command_name", "camera_paths", "named_camera_paths", "add_progress_flag",
           "LAYOUT_CHOICES", "BAD_INPUT", "EXIT_BAD_INPUT", "EXIT_INTERRUPTED"]
