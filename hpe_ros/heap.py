"""Giving the C heap's free memory back to the system, so a long-running process's RSS is its live memory.

glibc's malloc keeps pages that were freed inside its heaps (and those of its per-thread arenas) until
something trims them; a node whose live memory is flat still steps up in RSS whenever a burst of
allocations (a busy frame, a larger message) leaves freed pages behind, and the step stays.
`malloc_trim(0)` returns such pages (it takes each arena's lock for the trim: ~0.1 ms when there is little
to return). Elsewhere (musl, macOS) this is a no-op.
"""
from __future__ import annotations

import ctypes
import ctypes.util

_TRIM = None


def _malloc_trim():
    global _TRIM
    if _TRIM is None:
        try:
            _TRIM = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
            _TRIM.argtypes, _TRIM.restype = [ctypes.c_size_t], ctypes.c_int
        except (OSError, AttributeError):  # no glibc
            _TRIM = False
    return _TRIM


def release_free_memory() -> bool:
    """Return the C heap's free pages to the system (glibc malloc_trim(0)); False where there is none to call."""
    trim = _malloc_trim()
    if not trim:
        return False
    trim(0)
    return True
