"""Atomic file writes: a temp file beside the target, then rename (never a half-written file).

`atomic_path` / `write_text_atomic`: one file. `atomic_group`: several files that belong together (a result
and its report): all are written, or none is changed. Temp files are removed on any exception,
KeyboardInterrupt and SystemExit included (a CLI turns SIGTERM into one: hpe_ros.cli.common).
"""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path beside `path`; when the block succeeds it is renamed over `path`, else removed.

    For writers that want a file name (matplotlib's savefig, cv2.imwrite). The folder must exist
    (FileNotFoundError naming it otherwise); an existing file keeps its mode, a new one gets 0644.
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise FileNotFoundError(f"{path}: folder {str(path.parent)!r} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + path.suffix, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, (path.stat().st_mode & 0o777) if path.exists() else 0o644)  # mkstemp makes 0600
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write `text` (UTF-8, '\\n' line ends, fsynced) to `path` atomically. Returns the path written."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
    return Path(path)


@contextlib.contextmanager
def atomic_group(paths: Sequence[str | os.PathLike]) -> Iterator[list[Path]]:
    """Yield a staging path for each of `paths` (same file name, in a hidden folder beside them); when the
    block succeeds every staged file is renamed onto its target, else nothing is.

    Guarantee: when this raises (the block failed, a staged file is missing, a rename failed, or an
    exception such as KeyboardInterrupt arrived during the renames), every target is as it was before
    (a file that existed has its old content back, one that did not exist does not) and no staging file is
    left. When it returns, every target holds its new content. Between the first and the last rename a
    reader may see some targets new and some old; only a hard kill (SIGKILL, power loss) there can leave
    that mix, or the hidden staging folder, behind. All targets must be in one folder, which must exist.
    """
    targets = [Path(p) for p in paths]
    folders = {t.parent for t in targets}
    if len(folders) != 1 or len({t.name for t in targets}) != len(targets):
        raise ValueError(f"atomic_group: targets must be distinct files of one folder, got {[str(t) for t in targets]}")
    folder = folders.pop()
    if not folder.is_dir():
        raise FileNotFoundError(f"{targets[0]}: folder {str(folder)!r} does not exist")
    staging = Path(tempfile.mkdtemp(prefix=f".{targets[0].name}.", suffix=".staging", dir=folder))
    try:
        staged = [staging / t.name for t in targets]
        yield staged
        _commit(staged, targets, staging)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _commit(staged: list[Path], targets: list[Path], staging: Path) -> None:
    """Rename each staged file onto its target, keeping a hard link to the old target to roll back to."""
    done: list[tuple[Path, Path | None]] = []  # (target, its previous content or None)
    try:
        for i, (src, target) in enumerate(zip(staged, targets)):
            if not src.is_file():
                raise FileNotFoundError(f"{target}: nothing was written for it")
            backup = None
            if target.exists():
                backup = staging / f".previous{i}"
                try:
                    os.link(target, backup)
                except OSError:  # a file system without hard links
                    shutil.copy2(target, backup)
                os.chmod(src, target.stat().st_mode & 0o777)
            done.append((target, backup))
            os.replace(src, target)
    except BaseException:
        for target, backup in reversed(done):
            with contextlib.suppress(OSError):
                if backup is not None:
                    os.replace(backup, target)
                else:
                    os.unlink(target)
        raise
