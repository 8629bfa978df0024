"""hpe_ros.heap: freed C-heap pages below a live block go back to the system when asked (glibc)."""
from __future__ import annotations

import platform
import subprocess
import sys

import pytest

SCRIPT = """
import sys
from hpe_ros.heap import release_free_memory

def rss_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024

blocks = [bytes(4000) for _ in range(40000)]   # 160 MB of malloc'd blocks (over pymalloc's 512 B, under mmap's)
pin = bytes(4000)                               # a live block above them: free() alone cannot shrink the heap
del blocks
before = rss_mb()
called = release_free_memory()
print(called, round(before, 1), round(rss_mb(), 1))
"""


@pytest.mark.skipif(platform.system() != "Linux" or not platform.libc_ver()[0] == "glibc", reason="glibc only")
def test_freed_heap_pages_go_back_to_the_system():
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=True).stdout.split()
    called, before, after = out[0] == "True", float(out[1]), float(out[2])
    assert called
    assert before - after > 100.0, (before, after)   # the freed 160 MB were still resident before the trim


USAGE = """
import json
from hpe_ros.heap import heap_usage

before = heap_usage()
blocks = [bytes(4000) for _ in range(10000)]   # 40 MB live in the C heap
objects = [object() for _ in range(100000)]     # 100 000 Python blocks
during = heap_usage()
print(json.dumps([before, during]))
"""


@pytest.mark.skipif(platform.system() != "Linux" or not platform.libc_ver()[0] == "glibc", reason="glibc only")
def test_heap_usage_sees_live_c_heap_and_python_blocks():
    import json

    out = subprocess.run([sys.executable, "-c", USAGE], capture_output=True, text=True, check=True).stdout
    before, during = json.loads(out)
    assert set(before) == {"rss_mb", "malloc_live_mb", "malloc_free_mb", "python_blocks"}
    assert 35.0 < during["malloc_live_mb"] - before["malloc_live_mb"] < 60.0
    assert during["python_blocks"] - before["python_blocks"] >= 100000
    assert during["rss_mb"] - before["rss_mb"] > 35.0
