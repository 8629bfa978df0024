"""Model manifests: what a network file is, where it comes from, and how to feed and decode it.

One TOML file per model in the package's models/ folder (see models/README.md for the fields). The
manifest is the single place that knows a model's input size, normalisation, colour order, joint layout
and output kind, so the top-down pipeline and the runners never hard-code them.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, fields
from pathlib import Path

from hpe_ros.resources import share_dir
from hpe_ros.runtime.cache import model_cache_dir

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

KINDS = ("pose", "detector")
POSE_OUTPUTS = ("heatmap", "simcc")
DETECTOR_OUTPUTS = ("yolox", "end2end")
COLORS = ("rgb", "bgr")
ARCHIVE_SUFFIXES = (".zip", ".tar.gz", ".tgz", ".tar")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")


class ManifestError(ValueError):
    """A manifest file is missing a field or holds a bad value; the message names the file and field."""


@dataclass(frozen=True)
class ModelManifest:
    """One model. Sizes are (w, h) px; mean/std per channel in the model's colour order, 0–255 scale."""

    name: str
    kind: str                                   # "pose" | "detector"
    file: str                                   # file name in the model cache (e.g. "rtmpose-m.onnx")
    input_size: tuple[int, int]                 # (w, h)
    output: str                                 # "heatmap" | "simcc" | "yolox" | "end2end"
    description: str = ""
    url: str = ""                               # "" when no download is published (see note)
    sha256: str = ""                            # of the download (the archive when archive_member is set)
    archive_member: str = ""                    # glob of the member to unpack from a .zip / .tar.gz
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    color: str = "rgb"                          # channel order the network expects: "rgb" | "bgr"
    layout: str = ""                            # hpe_ros.skeleton layout of a pose model ("coco17", ...)
    simcc_split_ratio: float = 2.0              # SimCC bins per input pixel
    strides: tuple[int, ...] = (8, 16, 32)      # YOLOX feature strides
    license: str = ""
    source: str = ""                            # where the URL / weights come from
    note: str = ""                              # how to obtain or export the file when there is no URL
    manifest_path: str = field(default="", compare=False)  # the TOML file it was read from

    @property
    def is_archive(self) -> bool:
        return bool(self.archive_member)


_TOML_FIELDS = [f.name for f in fields(ModelManifest) if f.name != "manifest_path"]
_REQUIRED = ("name", "kind", "file", "input_size", "output")


def models_dir() -> Path:
    """The package's models/ folder (source tree or colcon share dir)."""
    return share_dir() / "models"


def _fail(path, key: str, msg: str) -> ManifestError:
    return ManifestError(f"{path}: field '{key}': {msg}")


def _number_list(path, key, value, n: int | None, kind=float, positive=False) -> tuple:
    if not isinstance(value, (list, tuple)) or (n is not None and len(value) != n) or not value:
        want = f"a list of {n}" if n else "a non-empty list of"
        raise _fail(path, key, f"expected {want} numbers, got {value!r}")
    out = []
    for v in value:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or (kind is int and not float(v).is_integer()):
            raise _fail(path, key, f"expected {'integers' if kind is int else 'numbers'}, got {value!r}")
        if positive and v <= 0:
            raise _fail(path, key, f"expected positive values, got {value!r}")
        out.append(kind(v))
    return tuple(out)


def _string(path, key, value) -> str:
    if not isinstance(value, str):
        raise _fail(path, key, f"expected a string, got {value!r}")
    return value.strip()


def manifest_from_dict(data: dict, path: str | os.PathLike = "<manifest>") -> ModelManifest:
    """Validate a parsed TOML table and build the manifest. Errors name `path` and the field."""
    unknown = sorted(set(data) - set(_TOML_FIELDS))
    if unknown:
        raise _fail(path, unknown[0], f"unknown field (known: {', '.join(_TOML_FIELDS)})")
    for key in _REQUIRED:
        if key not in data or data[key] in ("", None):
            raise _fail(path, key, "required field is missing")
    v: dict = {}
    for key in ("name", "kind", "file", "output", "description", "url", "sha256", "archive_member",
                "color", "layout", "license", "source", "note"):
        if key in data:
            v[key] = _string(path, key, data[key])
    if not _NAME.match(v["name"]):
        raise _fail(path, "name", f"use lower-case letters, digits, '.', '_' or '-', got {v['name']!r}")
    if v["kind"] not in KINDS:
        raise _fail(path, "kind", f"expected one of {', '.join(KINDS)}, got {v['kind']!r}")
    outputs = POSE_OUTPUTS if v["kind"] == "pose" else DETECTOR_OUTPUTS
    if v["output"] not in outputs:
        raise _fail(path, "output", f"a {v['kind']} model's output is one of {', '.join(outputs)}, got {v['output']!r}")
    if "/" in v["file"] or "\\" in v["file"] or v["file"] in (".", ".."):
        raise _fail(path, "file", f"expected a plain file name (no folders), got {v['file']!r}")
    v["input_size"] = _number_list(path, "input_size", data["input_size"], 2, int, positive=True)
    if "mean" in data:
        v["mean"] = _number_list(path, "mean", data["mean"], 3)
    if "std" in data:
        v["std"] = _number_list(path, "std", data["std"], 3, positive=True)
    if "strides" in data:
        v["strides"] = _number_list(path, "strides", data["strides"], None, int, positive=True)
    if "simcc_split_ratio" in data:
        r = data["simcc_split_ratio"]
        if isinstance(r, bool) or not isinstance(r, (int, float)) or r <= 0:
            raise _fail(path, "simcc_split_ratio", f"expected a positive number, got {r!r}")
        v["simcc_split_ratio"] = float(r)
    if v.get("color", "rgb") not in COLORS:
        raise _fail(path, "color", f"expected one of {', '.join(COLORS)}, got {v['color']!r}")
    sha = v.get("sha256", "").lower()
    if sha and not _HEX64.match(sha):
        raise _fail(path, "sha256", f"expected 64 hex digits (or \"\" when none is published), got {sha!r}")
    v["sha256"] = sha
    url = v.get("url", "")
    if url and not re.match(r"^(https?|file)://", url):
        raise _fail(path, "url", f"expected an http(s):// or file:// URL (or \"\"), got {url!r}")
    if v.get("archive_member") and not url:
        raise _fail(path, "archive_member", "set, but there is no url to download the archive from")
    if not url and not v.get("note"):
        raise _fail(path, "note", "a model without a url needs a note saying how to obtain or export the file")
    if v["kind"] == "pose":
        if not v.get("layout"):
            raise _fail(path, "layout", "a pose model needs its joint layout (e.g. \"coco17\")")
        from hpe_ros.skeleton import get_layout

        try:
            v["layout"] = get_layout(v["layout"]).name
        except KeyError as exc:
            raise _fail(path, "layout", str(exc.args[0])) from None
    elif v.get("layout"):
        raise _fail(path, "layout", "a detector has no joint layout; leave it out or set \"\"")
    return ModelManifest(**v, manifest_path=str(path))


def read_manifest(path: str | os.PathLike) -> ModelManifest:
    """Parse and validate one manifest file."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: manifest not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ManifestError(f"{path}: not valid TOML: {exc}") from None
    return manifest_from_dict(data, path)


def manifest_paths() -> list[Path]:
    return sorted(models_dir().glob("*.toml"))


def list_manifests() -> list[ModelManifest]:
    """Every manifest shipped in the package's models/ folder, sorted by file name."""
    return [read_manifest(p) for p in manifest_paths()]


def load_manifest(name_or_path: str | os.PathLike | ModelManifest) -> ModelManifest:
    """A manifest by model name ("rtmpose-m") or by the path of a .toml file."""
    if isinstance(name_or_path, ModelManifest):
        return name_or_path
    text = str(name_or_path)
    p = Path(text).expanduser()
    if p.suffix == ".toml" or os.sep in text or p.is_file():
        return read_manifest(p)
    candidate = models_dir() / f"{text}.toml"
    if candidate.is_file():
        return read_manifest(candidate)
    for path in manifest_paths():  # a manifest whose file name differs from its name field
        m = read_manifest(path)
        if m.name == text:
            return m
    names = ", ".join(p.stem for p in manifest_paths()) or "(none)"
    raise FileNotFoundError(f"unknown model {text!r}: no {candidate}; known models: {names}")


def model_search_dirs(manifest: ModelManifest) -> list[Path]:
    """Where a model's file is looked for, in order: the cache dir, the package's models/, the manifest's folder."""
    dirs = [model_cache_dir(), models_dir()]
    if manifest.manifest_path:
        dirs.append(Path(manifest.manifest_path).parent)
    out: list[Path] = []
    for d in dirs:
        if d not in out:
            out.append(d)
    return out


def resolve_model_file(manifest: ModelManifest | str) -> Path | None:
    """The model's file if it is present (cache dir first, then the package's models/), else None."""
    manifest = load_manifest(manifest)
    for d in model_search_dirs(manifest):
        p = d / manifest.file
        if p.is_file():
            return p
    return None
