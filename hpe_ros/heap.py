"""Giving the C heap's free memory back to the system, so a long-running process's RSS is its live memory.

glibc's malloc keeps pages that were freed inside its heaps (and those of its per-thread arenas) until
something trims them; a node whose live memory is flat still steps up in RSS whenever a burst of
allocations (a busy frame, a larger message) leaves freed pages behind, and the step stays.
`malloc_trim(0)` returns such pages (it takes each arena's lock for the trim: ~0.1 ms when there is little
to return). Elsewhere (musl, macOS) this is a no-op.

`heap_usage()` says where a process's memory sits (the C heap's live and free bytes, Python's live
objects, RSS), so that a slow rise in RSS can be told apart: live C allocations, free memory the heap
keeps (fragmentation), or neither (memory mapped outside malloc, e.g. by the DDS library or Python's
object arenas).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
from typing import Any

_LIBC: dict[str, Any] = {}  # name -> the glibc function, or False where there is none


class _Mallinfo2(ctypes.Structure):
    """glibc's struct mallinfo2 (glibc >= 2.33): sizes in bytes, summed over every arena."""
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]


def _libc(name: str, argtypes: list, restype):
    """glibc's function `name` with its signature set, looked up once; False where there is none."""
    if name not in _LIBC:
        try:
            fn = getattr(ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6"), name)
            fn.argtypes, fn.restype = argtypes, restype
            _LIBC[name] = fn
        except (OSError, AttributeError):  # no glibc, or one without this function (mallinfo2: < 2.33)
            _LIBC[name] = False
    return _LIBC[name]


def release_free_memory() -> bool:
    """Return the C heap's free pages to the system (glibc malloc_trim(0)); False where there is none to call."""
    trim = _libc("malloc_trim", [ctypes.c_size_t], ctypes.c_int)
    if not trim:
        return False
    trim(0)
    return True


def rss_mb(pid: int | None = None) -> float | None:
    """Resident set size (MB) of process `pid` (default this one) from /proc; None where it cannot be read."""
    try:
        with open(f"/proc/{pid or os.getpid()}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return None


def heap_usage() -> dict[str, float]:
    """This process's memory (MB, and a count): rss_mb; with glibc malloc_live_mb (allocated and not freed,
    mmapped chunks included), malloc_free_mb (freed, kept inside the heaps); python_blocks (live
    Python-allocated memory blocks). Keys that cannot be read here are left out."""
    out: dict[str, float] = {}
    rss = rss_mb()
    if rss is not None:
        out["rss_mb"] = rss
    info = _libc("mallinfo2", [], _Mallinfo2)
    if info:
        m = info()
        out["malloc_live_mb"] = (m.uordblks + m.hblkhd) / 2**20
        out["malloc_free_mb"] = m.fordblks / 2**20
    out["python_blocks"] = float(sys.getallocatedblocks())
    return out
