"""`hpe-ros models fetch NAME`: download a model named by its manifest, verify it, put it in place.

Download to a temp file beside the target, verify sha256, unpack the archive member when there is one,
then rename: a failed fetch never leaves a half-written or unverified model behind.

Trust on first use: when a manifest publishes no sha256, the first download's hash is printed and
recorded in `<file>.sha256` next to the model; later fetches must match it (delete that file to trust a
new download). The record also holds the model file's own hash, so a file already in place is checked
without downloading it again.
"""
from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import logging
import os
import shutil
import sys
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path

from hpe_ros.detect2d.manifest import ModelManifest, load_manifest, models_dir, resolve_model_file
from hpe_ros.runtime.cache import model_cache_dir, sha256_file

log = logging.getLogger("hpe_ros.fetch")

CHUNK = 1 << 20
TIMEOUT_S = 60.0


class FetchError(RuntimeError):
    """A model could not be fetched; the message says what happened and what to do."""


# ------------------------------------------------------------------------------- the .sha256 record

def record_path(model_path) -> Path:
    return Path(str(model_path) + ".sha256")


def read_record(model_path) -> dict[str, str]:
    """The `<file>.sha256` record as {name: hash} (sha256sum format: "HASH  NAME" lines, # comments)."""
    try:
        text = record_path(model_path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    out: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(maxsplit=1)
        if len(parts) == 2 and len(parts[0]) == 64:
            out[parts[1].lstrip("*").strip()] = parts[0].lower()
    return out


def write_record(model_path, file_hash: str, download_name: str = "", download_hash: str = "",
                 comment: str = "") -> Path:
    from hpe_ros.io.atomic import write_text_atomic

    model_path = Path(model_path)
    lines = [f"# {comment}"] if comment else []
    if download_name and download_name != model_path.name and download_hash:
        lines.append(f"{download_hash}  {download_name}")
    lines.append(f"{file_hash}  {model_path.name}")
    return write_text_atomic(record_path(model_path), "\n".join(lines) + "\n")


def download_name(m: ModelManifest) -> str:
    """The downloaded file's name: the URL's last path segment (the model file when there is none)."""
    name = Path(urllib.parse.urlparse(m.url).path).name
    return name or m.file


def expected_download_sha256(m: ModelManifest, target: Path) -> tuple[str, str]:
    """(hash the download must have, where that rule comes from): the manifest's, else the TOFU record's."""
    if m.sha256:
        return m.sha256, "the manifest"
    rec = read_record(target)
    name = download_name(m) if m.is_archive else target.name
    if rec.get(name):
        return rec[name], f"{record_path(target)} (recorded on first download)"
    return "", ""


# ------------------------------------------------------------------------------------------ fetching

def _echo(msg: str, progress: bool) -> None:
    if progress:
        print(msg, file=sys.stderr, flush=True)
    else:
        log.warning("%s", msg)


def _by_hand(m: ModelManifest, target: Path) -> str:
    what = f"the archive's member matching {m.archive_member!r} (unpacked)" if m.is_archive else "the file"
    return (f"download {m.url} on a machine with network access and place {what} at {target} by hand "
            f"(or set HPE_ROS_MODEL_DIR to the folder holding {m.file})")


def _download(m: ModelManifest, dest: Path, progress: bool) -> tuple[Path, str]:
    """Download m.url to a temp file in `dest`; returns (temp path, sha256). Removes it on failure."""
    fd, tmp_name = tempfile.mkstemp(prefix=f".{m.file}.", suffix=".part", dir=dest)
    tmp = Path(tmp_name)
    h = hashlib.sha256()
    try:
        with os.fdopen(fd, "wb") as out:
            req = urllib.request.Request(m.url, headers={"User-Agent": "hpe_ros-fetch"})
            with urllib.request.urlopen(req, timeout=TIMEOUT_S) as resp:
                total = resp.headers.get("Content-Length") if hasattr(resp, "headers") else None
                bar = _progress_bar(int(total) if total and str(total).isdigit() else None,
                                    download_name(m), progress)
                try:
                    while True:
                        block = resp.read(CHUNK)
                        if not block:
                            break
                        out.write(block)
                        h.update(block)
                        bar.update(len(block))
                finally:
                    bar.close()
            out.flush()
            os.fsync(out.fileno())
    except urllib.error.HTTPError as exc:
        tmp.unlink(missing_ok=True)
        raise FetchError(f"{m.name}: the server answered HTTP {exc.code} ({exc.reason}) for {m.url}; "
                         f"the file may have moved. To install it by hand, {_by_hand(m, dest / m.file)}") from exc
    except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as exc:
        tmp.unlink(missing_ok=True)
        reason = getattr(exc, "reason", exc)
        raise FetchError(f"{m.name}: could not download {m.url} (network unreachable or source missing: "
                         f"{reason}). To install it by hand, {_by_hand(m, dest / m.file)}") from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp, h.hexdigest()


def _progress_bar(total: int | None, desc: str, progress: bool):
    try:
        from tqdm import tqdm

        return tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=desc,
                    disable=not progress, file=sys.stderr, leave=False)
    except ImportError:  # tqdm is a dependency, but a fetch should not fail for want of a progress bar
        class _Null:
            def update(self, n):
                pass

            def close(self):
                pass

        return _Null()


def _unpack(m: ModelManifest, archive: Path, dest: Path) -> Path:
    """Copy the one archive member matching m.archive_member to a temp file in `dest`."""
    fd, tmp_name = tempfile.mkstemp(prefix=f".{m.file}.", suffix=".unpack", dir=dest)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            if zipfile.is_zipfile(archive):
                with zipfile.ZipFile(archive) as zf:
                    names = [i.filename for i in zf.infolist() if not i.is_dir()]
                    member = _match_member(m, names)
                    with zf.open(member) as src:
                        shutil.copyfileobj(src, out, CHUNK)
            elif tarfile.is_tarfile(archive):
                with tarfile.open(archive) as tf:
                    members = {i.name: i for i in tf.getmembers() if i.isfile()}
                    member = _match_member(m, list(members))
                    src = tf.extractfile(members[member])
                    shutil.copyfileobj(src, out, CHUNK)
            else:
                raise FetchError(f"{m.name}: archive_member is set but the download from {m.url} is neither "
                                 "a zip nor a tar archive")
            out.flush()
            os.fsync(out.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def _match_member(m: ModelManifest, names: list[str]) -> str:
    hits = [n for n in names if fnmatch.fnmatch(n, m.archive_member)]
    if len(hits) == 1:
        return hits[0]
    listing = ", ".join(names[:20]) + (" …" if len(names) > 20 else "")
    if not hits:
        raise FetchError(f"{m.name}: no member of {download_name(m)} matches archive_member "
                         f"{m.archive_member!r} (it holds: {listing})")
    raise FetchError(f"{m.name}: archive_member {m.archive_member!r} matches {len(hits)} members of "
                     f"{download_name(m)} ({', '.join(hits)}); make the pattern specific")


def _check_present(m: ModelManifest, target: Path, progress: bool) -> str:
    """Verify a model file already in place: "ok", "stale" (download again) or "bad" (mismatch)."""
    rec = read_record(target)
    got = sha256_file(target)
    if rec.get(target.name):
        if m.sha256 and rec.get(download_name(m), rec[target.name]) != m.sha256:
            return "stale"  # the manifest now publishes another file than the one recorded
        return "ok" if rec[target.name] == got else "bad"
    if m.sha256 and not m.is_archive:
        return "ok" if got == m.sha256 else "bad"
    # Placed by hand, nothing to check it against: trust it now, and pin it from here on.
    with contextlib.suppress(OSError):  # a read-only install folder: trust without pinning
        write_record(target, got, comment="trust on first use: file found in place, not downloaded by hpe_ros")
    _echo(f"{m.name}: {target} was placed by hand and no hash can check it; trusting it (trust on first "
          f"use): sha256 {got}, recorded in {record_path(target)}", progress)
    return "ok"


def fetch_model(name_or_manifest, dest_dir=None, progress: bool = True, force: bool = False) -> Path:
    """Make sure the model's file is present and verified; download it when needed. Returns its path.

    dest_dir: where to put it (default: the model cache dir, $HPE_ROS_MODEL_DIR or ~/.cache/hpe_ros/models).
    force: download again even when a verified file is in place. Raises FetchError with a message saying
    what happened (no URL published, network unreachable, hash mismatch) and what to do.
    """
    m = load_manifest(name_or_manifest)
    dest = Path(dest_dir).expanduser() if dest_dir else model_cache_dir()
    target = dest / m.file
    if not force and not target.is_file() and dest_dir is None:
        shipped = resolve_model_file(m)  # a small model shipped in the package's models/ folder
        if shipped is not None and shipped.parent == models_dir():
            target = shipped
    if target.is_file() and not force:
        state = _check_present(m, target, progress)
        if state == "ok":
            return target
        if not m.url:
            raise FetchError(f"{m.name}: {target} does not match its recorded sha256 and there is no URL to "
                             f"download it again; replace it (see the note: {m.note})")
        why = "is from an older release" if state == "stale" else "does not match its recorded sha256"
        _echo(f"{m.name}: {target} {why}; downloading it again", progress)
        target = dest / m.file
    if not m.url:
        raise FetchError(f"{m.name}: no download URL is published for this model.\n{m.note}\n"
                         f"Then place the file at {target} (or in {models_dir()}).")
    dest.mkdir(parents=True, exist_ok=True)
    expected, rule = expected_download_sha256(m, target)
    tmp, got = _download(m, dest, progress)
    try:
        if expected and got != expected:
            raise FetchError(f"{m.name}: sha256 mismatch for {m.url}: expected {expected} (from {rule}), "
                             f"got {got}; the download was removed. If the publisher replaced the file on "
                             f"purpose, update the manifest's sha256 (or delete {record_path(target)}).")
        final_tmp = _unpack(m, tmp, dest) if m.is_archive else tmp
        try:
            file_hash = sha256_file(final_tmp) if m.is_archive else got
            os.chmod(final_tmp, 0o644)
            os.replace(final_tmp, target)
        finally:
            if final_tmp is not tmp:
                final_tmp.unlink(missing_ok=True)
    finally:
        tmp.unlink(missing_ok=True)
    if expected:
        write_record(target, file_hash, download_name(m), got, comment=f"sha256 verified against {rule.split(' (')[0]}")
    else:
        write_record(target, file_hash, download_name(m), got,
                     comment="trust on first use: no sha256 published; later fetches must match")
        _echo(f"{m.name}: no sha256 is published for {m.url}; trusting this first download (trust on "
              f"first use): sha256 {got}. Recorded in {record_path(target)}; later fetches must match it "
              "(delete that file to trust a new download).", progress)
    _echo(f"{m.name}: {target}", progress)
    return target


def build_engine_for(name, fetch: bool = True, progress: bool = True, **options) -> Path:
    """Build (or reuse from the cache) the TensorRT engine for a model: `hpe-ros models build-engine NAME`.

    Resolves the manifest's ONNX file (fetching it first when missing and `fetch`), then calls
    tensorrt_runner.ensure_engine → build_engine. options: engine_file_path (or engine_path),
    force_engine_update, enable_fp16, max_batch, opt_batch, workspace_mb, device, input_shape. Returns the
    engine path (by default the cache path the runtime looks up, so a later run reuses it).
    """
    from hpe_ros.runtime.tensorrt_runner import ensure_engine

    alias = options.pop("engine_path", None)
    if alias and not options.get("engine_file_path"):
        options["engine_file_path"] = str(alias)
    options = {k: v for k, v in options.items() if v is not None}
    m = load_manifest(name)
    onnx = resolve_model_file(m)
    if onnx is None:
        if not fetch:
            raise FileNotFoundError(f"{m.name}: {m.file} is not in {model_cache_dir()} or {models_dir()}; "
                                    f"run: hpe-ros models fetch {m.name}")
        onnx = fetch_model(m, progress=progress)
    if onnx.suffix.lower() != ".onnx":
        raise ValueError(f"{m.name}: {onnx} is not an ONNX file; a TensorRT engine is built from ONNX")
    # input_shape is not defaulted from the manifest: it is part of the cache key, and the runner that later
    # opens the engine passes none (the published ONNX files have static H, W). Give it only for an ONNX
    # with dynamic H / W, and give the runner the same value.
    return ensure_engine(onnx, **options)
