"""Real recordings for tests and benchmarks: the Pose2Sim demo captures, downloaded once into a cache.

The `pose2sim` wheel on PyPI (BSD-3-Clause, about 51 MB) ships three demos filmed by the same four
synchronised portrait cameras (1088 x 1920 sensor, Qualisys calibration ``calibration/Calib.qca.txt``):

* ``Demo_SinglePerson``: one person, videos, and the real checkerboard images the cameras were
  calibrated with (``calibration/intrinsics/int_camXX_img``, ``calibration/extrinsics``);
* ``Demo_MultiPerson``: two people;
* ``Demo_Batch``: two trials (``Trial_1``, ``Trial_2``) sharing one calibration.

`fetch` (run by ``make realdata``) downloads the wheel with pip and extracts only ``Pose2Sim/Demo_*``
into the corpus root: ``$HPE_ROS_DATA`` when set, else ``~/.cache/hpe_ros/realdata``. The extraction
goes to a temporary folder renamed into place, so a corpus is either complete or absent.

    >>> calib = demo_dir("Demo_SinglePerson") / "calibration" / "Calib.qca.txt"
    >>> reason = missing_reason()   # None when the corpus is there, else why not (for pytest.skip)

Command line: ``python -m hpe_ros.realdata [--root DIR] [--wheel FILE]`` (exit status 1 with one line
on failure).
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path, PurePosixPath

PACKAGE = "pose2sim"
VERSION = "0.10.49"
DEMOS = ("Demo_SinglePerson", "Demo_MultiPerson", "Demo_Batch")
_MEMBER_PREFIX = "Pose2Sim/Demo_"
_DOWNLOAD_TIMEOUT_S = 600


class RealDataMissing(FileNotFoundError):
    """The real-data corpus (or one demo of it) is not in the cache."""


def corpus_root() -> Path:
    """Where the corpus lives: $HPE_ROS_DATA, else ~/.cache/hpe_ros/realdata."""
    env = os.environ.get("HPE_ROS_DATA")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "hpe_ros" / "realdata"


def _version_dir(root: Path) -> Path:
    return root / f"{PACKAGE}-{VERSION}"


def missing_reason(root: str | os.PathLike | None = None) -> str | None:
    """None when every demo is in the corpus, else a one-line reason naming the fix."""
    folder = _version_dir(Path(root) if root is not None else corpus_root())
    absent = [d for d in DEMOS if not (folder / "Pose2Sim" / d).is_dir()]
    if not absent:
        return None
    return (f"real-data corpus missing ({', '.join(absent)} not under {folder}); run `make realdata` "
            f"(downloads {PACKAGE}=={VERSION} with pip) or set HPE_ROS_DATA")


def demo_dir(name: str, root: str | os.PathLike | None = None) -> Path:
    """Folder of one demo, e.g. demo_dir("Demo_SinglePerson"); RealDataMissing when it is not cached."""
    if name not in DEMOS:
        raise ValueError(f"unknown demo {name!r}; known: {', '.join(DEMOS)}")
    reason = missing_reason(root)
    if reason:
        raise RealDataMissing(reason)
    return _version_dir(Path(root) if root is not None else corpus_root()) / "Pose2Sim" / name


def download_wheel(into: Path, python: str = sys.executable) -> Path:
    """`pip download --no-deps pose2sim==VERSION` into `into`; returns the wheel's path."""
    into.mkdir(parents=True, exist_ok=True)
    command = [python, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:", "--dest", str(into),
               f"{PACKAGE}=={VERSION}"]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=_DOWNLOAD_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise RealDataMissing(f"pip download of {PACKAGE}=={VERSION} took over {_DOWNLOAD_TIMEOUT_S} s") from None
    wheels = sorted(into.glob(f"{PACKAGE}-{VERSION}-*.whl"))
    if result.returncode != 0 or not wheels:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise RealDataMissing(f"pip could not download {PACKAGE}=={VERSION}: {last}")
    return wheels[0]


def extract_demos(wheel: str | os.PathLike, root: Path) -> Path:
    """Extract Pose2Sim/Demo_* from `wheel` into the corpus under `root`, atomically; returns that folder."""
    target = _version_dir(root)
    root.mkdir(parents=True, exist_ok=True)
    try:
        archive = zipfile.ZipFile(wheel)
    except (OSError, zipfile.BadZipFile) as e:
        raise RealDataMissing(f"{wheel}: not a readable wheel ({e})") from None
    tmp = Path(tempfile.mkdtemp(prefix=".extract-", dir=root))
    try:
        with archive:
            members = [m for m in archive.namelist() if m.startswith(_MEMBER_PREFIX) and not m.endswith("/")]
            unsafe = [m for m in members if ".." in PurePosixPath(m).parts]
            if unsafe:
                raise RealDataMissing(f"{wheel}: refusing unsafe member path {unsafe[0]!r}")
            archive.extractall(tmp, members=members)
        missing = [d for d in DEMOS if not (tmp / "Pose2Sim" / d).is_dir()]
        if missing:
            raise RealDataMissing(f"{wheel}: has no {', '.join(missing)}")
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def fetch(root: str | os.PathLike | None = None, wheel: str | os.PathLike | None = None) -> Path:
    """Make sure the corpus is cached under `root` (default `corpus_root()`); download only when absent.

    `wheel`: a local copy of the wheel to extract instead of downloading. Returns the corpus folder.
    """
    root = Path(root) if root is not None else corpus_root()
    if missing_reason(root) is None:
        return _version_dir(root)
    if wheel is None:
        downloads = root / "downloads"
        cached = sorted(downloads.glob(f"{PACKAGE}-{VERSION}-*.whl"))
        wheel = cached[0] if cached else download_wheel(downloads)
    return extract_demos(wheel, root)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hpe_ros.realdata",
                                     description="Download and cache the real-data test corpus (Pose2Sim demos).")
    parser.add_argument("--root", help="corpus folder (default: $HPE_ROS_DATA or ~/.cache/hpe_ros/realdata)")
    parser.add_argument("--wheel", help=f"use this local {PACKAGE}-{VERSION} wheel instead of downloading")
    args = parser.parse_args(argv)
    try:
        folder = fetch(args.root, args.wheel)
    except (RealDataMissing, OSError) as e:
        print(f"realdata: {e}", file=sys.stderr)
        return 1
    print(f"realdata: corpus ready in {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
