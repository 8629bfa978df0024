"""Ctrl-C (SIGINT) and SIGTERM stop a running `hpe-ros` command with one line on stderr and exit 130 / 143:
no traceback, no temp file, and the outputs all there or none of them.

Real subprocesses on inputs big enough to be mid-run. A command is signalled only once it has installed its
SIGTERM handler (read from /proc/<pid>/status), i.e. once the command itself runs: before that Python is
still importing and a signal gets Python's own default behaviour.
"""
import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from hpe_ros.cli.common import EXIT_TERMINATED, Terminated, run_command
from hpe_ros.io import write_openpose_frame
from hpe_ros.io.calibration import save_toml_rig
from hpe_ros.sim import MotionScript, default_rig, observe

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}
MESSAGE = {signal.SIGINT: "interrupted", signal.SIGTERM: "terminated"}


def catches_sigterm(pid: int) -> bool:
    """True once the process has a SIGTERM handler of its own (SigCgt bit 15)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            caught = next(line for line in f if line.startswith("SigCgt:")).split()[1]
    except (OSError, StopIteration):
        return False
    return bool(int(caught, 16) >> (signal.SIGTERM - 1) & 1)


def signal_command(args: list[str], cwd, sig: int, delay_s: float, group: bool = False) -> tuple[int, str]:
    """Start `hpe-ros ARGS`, wait until it runs, wait `delay_s` more, send `sig` (to its process group with
    `group`, as a terminal's Ctrl-C does); (exit code, stderr)."""
    proc = subprocess.Popen([sys.executable, "-m", "hpe_ros.cli", *args], cwd=cwd, env=ENV, text=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=group)
    try:
        deadline = time.monotonic() + 60.0
        while not catches_sigterm(proc.pid) and proc.poll() is None:
            assert time.monotonic() < deadline, f"{args[0]} did not start"
            time.sleep(0.02)
        time.sleep(delay_s)
        if group:
            os.killpg(proc.pid, sig)
        else:
            proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, err


def assert_clean_stop(args, code, err, sig, only_line=True):
    """Exit 128 + sig, no traceback, the command's one line last (and alone, with `only_line`)."""
    assert "Traceback" not in err, err
    assert code == 128 + sig, (code, err)
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines[-1] == f"hpe-ros {args[0]}: {MESSAGE[sig]}", err
    if only_line:
        assert len(lines) == 1, err


def leftovers(folder) -> list[str]:
    """Hidden temp files / staging folders anywhere under `folder`."""
    return [os.path.join(root, n) for root, dirs, files in os.walk(folder) for n in dirs + files
            if n.startswith(".") or ".tmp" in n or n.endswith(".staging")]


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    """A 4-camera calibration and 400 frames of OpenPose JSON per camera (2 people, sim detections)."""
    root = tmp_path_factory.mktemp("stops")
    rig = default_rig(4)
    save_toml_rig(rig, root / "calib.toml")
    script, rng = MotionScript(n_people=2, seed=1), np.random.default_rng(1)
    dirs = [root / f"{cam.name}_json" for cam in rig]
    for d in dirs:
        d.mkdir()
    for f in range(400):
        obs = observe(rig, script.pose(f / 30.0), rng)
        for c, cam in enumerate(rig):
            rows = obs.person_ids[c] >= 0
            write_openpose_frame(dirs[c] / f"{cam.name}_{f:012d}_keypoints.json", obs.points2d[c, rows],
                                 obs.scores[c, rows])
    return root, [str(d) for d in dirs]


@pytest.mark.parametrize("sig, delay_s", [(signal.SIGINT, 0.2), (signal.SIGTERM, 0.2), (signal.SIGTERM, 1.5),
                                          (signal.SIGINT, random.uniform(0.0, 3.0))])
def test_triangulate_stops_cleanly_with_all_outputs_or_none(session, tmp_path, sig, delay_s):
    root, dirs = session
    args = ["triangulate", "--calib", str(root / "calib.toml"), "--keypoints", *dirs, "--layout", "coco17",
            "--format", "json", "--out", str(tmp_path / "out" / "walk"), "--no-progress"]
    code, err = signal_command(args, tmp_path, sig, delay_s)
    outputs = sorted(p.name for p in (tmp_path / "out").glob("*")) if (tmp_path / "out").exists() else []
    assert not leftovers(tmp_path), leftovers(tmp_path)
    if code == 0:  # it finished before the signal: every output is there
        assert outputs == ["walk.json", "walk.report.json"], err
        return
    assert_clean_stop(args, code, err, sig)
    assert outputs == [], outputs


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_lifter_data_stops_cleanly(tmp_path, sig):
    args = ["lifter-data", "--out", str(tmp_path / "eval.npz"), "--sequences", "40", "--seconds", "30"]
    code, err = signal_command(args, tmp_path, sig, 0.5)
    assert_clean_stop(args, code, err, sig)
    assert os.listdir(tmp_path) == []


def test_train_lifter_stops_cleanly(tmp_path):
    args = ["train-lifter", "--out", str(tmp_path / "model"), "--steps", "100000", "--no-progress"]
    code, err = signal_command(args, tmp_path, signal.SIGTERM, 2.0)
    assert_clean_stop(args, code, err, signal.SIGTERM, only_line=False)
    assert not leftovers(tmp_path), leftovers(tmp_path)


@pytest.mark.parametrize("args, sig", [
    (["run", "--sim"], signal.SIGINT),                  # Ctrl-C in a terminal: the whole process group
    (["run", "--sim", "--in-process"], signal.SIGTERM),
    (["demo", "--duration", "60", "--out", "demo"], signal.SIGTERM),
])
def test_graph_commands_stop_cleanly(tmp_path, args, sig):
    code, err = signal_command(args, tmp_path, sig, 3.0, group=sig == signal.SIGINT)
    assert_clean_stop(args, code, err, sig, only_line=False)  # the nodes log to the same stderr
    assert not leftovers(tmp_path), leftovers(tmp_path)


@pytest.mark.parametrize("exc, code", [(KeyboardInterrupt, 130), (Terminated, EXIT_TERMINATED)])
def test_every_command_maps_the_signals_the_same_way(capsys, exc, code):
    """The wrapper all commands run through (process, calibrate board, models fetch included)."""
    import argparse

    def stopped(_args):
        raise exc

    assert run_command(argparse.Namespace(command="models", action="fetch", func=stopped)) == code
    assert capsys.readouterr().err == f"hpe-ros models fetch: {'terminated' if code == 143 else 'interrupted'}\n"
