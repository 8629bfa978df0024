"""benchmarks/bench_soak.py: the memory trend and verdict it reports per process."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("bench_soak", ROOT / "benchmarks" / "bench_soak.py")
bench_soak = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench_soak)

TIMES = list(np.arange(10.0, 610.0, 10.0))  # a 10-minute run sampled every 10 s


def trend(rss, warmup_s=60.0, threshold=0.02):
    return bench_soak.memory_trend(TIMES, list(rss), warmup_s, threshold)


def test_a_steady_leak_is_growing_with_its_slope():
    t = np.asarray(TIMES) / 60.0
    r = trend(100.0 + 0.05 * t + 0.001 * np.sin(7 * t))
    assert r["verdict"] == "growing"
    assert r["slope_mb_per_min"] == pytest.approx(0.05, abs=1e-3) and r["slope_se"] < 1e-3
    assert r["first_half"] == pytest.approx(0.05, abs=2e-3) and r["second_half"] == pytest.approx(0.05, abs=2e-3)


def test_growth_that_stops_in_the_first_half_is_settling_and_flat_memory_is_flat():
    t = np.asarray(TIMES) / 60.0
    assert trend(100.0 + 0.5 * np.minimum(t, 4.0))["verdict"] == "settling"
    flat = trend(np.full(len(TIMES), 100.0))
    assert flat["verdict"] == "flat" and flat["slope_mb_per_min"] == pytest.approx(0.0) and flat["growth_mb"] == 0.0


def test_start_up_allocations_before_the_warm_up_do_not_count():
    rss = np.full(len(TIMES), 120.0)
    rss[:5] = [80.0, 100.0, 110.0, 115.0, 118.0]  # the first 50 s
    assert trend(rss)["verdict"] == "flat"


def test_too_few_samples_give_no_verdict():
    r = bench_soak.memory_trend([10.0, 20.0, 70.0, 80.0], [1.0, 2.0, 3.0, 4.0], 60.0, 0.02)
    assert r["verdict"] == "too few samples" and r["slope_mb_per_min"] is None


def test_heap_parts_get_a_slope_each_and_a_missing_status_gives_none():
    t = np.asarray(TIMES) / 60.0
    parts = {"malloc_live_mb": list(50.0 + 0.1 * t), "malloc_free_mb": [float("nan")] * len(TIMES),
             "python_blocks": list(np.full(len(TIMES), 9000.0))}
    r = bench_soak.heap_trends(TIMES, parts, 60.0)
    assert r["malloc_live_mb"]["slope_per_min"] == pytest.approx(0.1, abs=1e-6)
    assert r["malloc_free_mb"]["slope_per_min"] is None and r["malloc_free_mb"]["samples"][0] is None
    assert r["python_blocks"]["slope_per_min"] == pytest.approx(0.0)


def test_backlog_benchmark_slope_leaves_out_the_first_minute():
    spec2 = importlib.util.spec_from_file_location("bench_executor_backlog",
                                                   ROOT / "benchmarks" / "bench_executor_backlog.py")
    backlog = importlib.util.module_from_spec(spec2)
    spec2.loader.exec_module(backlog)
    rows = [{"t_s": t, "malloc_live_mb": (50.0 if t < 60 else 20.0 + 1.0 * t / 60.0)} for t in range(10, 250, 10)]
    assert backlog.slope_mb_per_min(rows) == pytest.approx(1.0)
    assert backlog.slope_mb_per_min(rows[:7]) is None                 # under 3 samples after the first minute
