"""What every `hpe-ros` command shares: the one error wrapper, the per-camera path option, layout choices.

Errors: a command raises ValueError / OSError (and the extra types it declares with
`set_defaults(input_errors=...)`) for bad input; `run_command` turns them into one line on stderr and
exit status 2, Ctrl-C (SIGINT) into one line and exit status 130 and SIGTERM into one line and 143, never
a traceback. Both signals raise in the main thread (SIGTERM as `Terminated`, a KeyboardInterrupt), so
`finally` blocks run: atomic writes remove their temp files and no partial output is left.

Usage errors, meaningless values included (a count <= 0, a size 0x0, an fps <= 0: the argparse types
here), are one line too, exit 2 (`OneLineParser`).

Per-camera paths (`--keypoints`, `--images`) come in one of two forms, the same for every command:
`PATH PATH ...` in the calibration's camera order, or `CAMERA=PATH CAMERA=PATH ...` in any order.
"""
from __future__ import annotations

import argparse
import contextlib
import logging
import math
import os
import signal
import sys
import threading
from collections.abc import Sequence

from hpe_ros.skeleton import LAYOUTS

BAD_INPUT: tuple[type[BaseException], ...] = (ValueError, OSError)  # CalibrationError is a ValueError
LAYOUT_CHOICES = list(LAYOUTS)
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it
EXIT_TERMINATED = 143   # 128 + SIGTERM


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the main thread is: every handler of Ctrl-C (cleanup included) handles it too."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C, as the command's SIGINT handler raises it. Not KeyboardInterrupt itself: once that exact type
    has left a nested interpreter run (a module import running code through PyRun_*, e.g. some Cython
    modules) CPython ends the process with -SIGINT, whatever status the command returns."""


def _raise_interrupted(signum, frame):
    raise Interrupted


def _raise_terminated(signum, frame):
    raise Terminated


@contextlib.contextmanager
def _stop_signals_raise():
    """In the block SIGINT raises KeyboardInterrupt and SIGTERM Terminated; the handlers before are restored
    after it (a caller in the same process, e.g. a test, keeps its own). Main thread only: elsewhere Python
    cannot change handlers, and the process's own stay."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    signal.signal(signal.SIGINT, _raise_interrupted)
    signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            if handler is not None:  # None: a handler not set from Python, which cannot be put back
                signal.signal(sig, handler)


def _ignore_stop_signals() -> None:
    """A second Ctrl-C / SIGTERM while the command is already stopping must not interrupt the cleanup."""
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)


def command_name(args: argparse.Namespace) -> str:
    """'hpe-ros triangulate', 'hpe-ros calibrate board', ...: the prefix of the command's messages."""
    action = getattr(args, "action", None)
    return f"hpe-ros {args.command}" + (f" {action}" if action else "")


def run_command(args: argparse.Namespace) -> int:
    """Run the parsed command: bad input -> one line on stderr and 2; Ctrl-C -> one line and 130;
    SIGTERM -> one line and 143."""
    name = command_name(args)
    logging.basicConfig(level=logging.WARNING, format=f"{name}: %(message)s")
    with _stop_signals_raise():
        try:
            return args.func(args)
        except KeyboardInterrupt as exc:
            _ignore_stop_signals()  # until _stop_signals_raise restores the caller's handlers
            terminated = isinstance(exc, Terminated)
            print(f"{name}: {'terminated' if terminated else 'interrupted'}", file=sys.stderr, flush=True)
            return EXIT_TERMINATED if terminated else EXIT_INTERRUPTED
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


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors (a missing or meaningless value) are one line on stderr and exit 2."""

    def error(self, message: str):
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _number(kind, text: str):
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'}, "
                                         f"got {text!r}") from None
    if kind is float and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def at_least(minimum, kind=int):
    """argparse type: a number of `kind` >= minimum."""
    def parse(text: str):
        value = _number(kind, text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {text}")
        return value
    parse.__name__ = f"{kind.__name__} >= {minimum}"
    return parse


def in_range(low: float, high: float):
    """argparse type: a finite number in [low, high]."""
    def parse(text: str):
        value = _number(float, text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be between {low} and {high}, got {text}")
        return value
    parse.__name__ = f"number in [{low}, {high}]"
    return parse


def positive_int(text: str) -> int:
    """argparse type: an integer > 0 (counts, steps, sizes)."""
    value = _number(int, text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0 (rates, durations, lengths)."""
    value = _number(float, text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


non_negative_int = at_least(0)
non_negative_float = at_least(0.0, float)


def image_size(text: str) -> tuple[int, int]:
    """argparse type: 'WIDTHxHEIGHT', both > 0 -> (width, height)."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT, e.g. 640x480, got {text!r}") from None
    if w <= 0 or h <= 0:
        raise argparse.ArgumentTypeError(f"width and height must be > 0, got {text!r}")
    return w, h


def add_progress_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


__all__ = ["run_command", "command_name", "camera_paths", "named_camera_paths", "add_progress_flag",
           "OneLineParser", "positive_int", "positive_float", "non_negative_int", "non_negative_float", "at_least",
           "in_range", "image_size", "LAYOUT_CHOICES", "BAD_INPUT", "EXIT_BAD_INPUT", "EXIT_INTERRUPTED",
           "EXIT_TERMINATED", "Interrupted", "Terminated"]
