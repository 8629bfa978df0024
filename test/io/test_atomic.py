"""io.atomic: a single file and a group of files are written whole or not at all, and no temp file is left
when the writer fails, is interrupted (KeyboardInterrupt, SystemExit) or a rename fails half-way."""
import json
import os

import numpy as np
import pytest

from hpe_ros.io.atomic import atomic_group, atomic_path, write_text_atomic


def _listing(folder):
    return sorted(p.name for p in folder.iterdir())


@pytest.mark.parametrize("exc", [KeyboardInterrupt, SystemExit, RuntimeError])
def test_atomic_path_removes_its_temp_file_on_any_exception(tmp_path, exc):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(exc):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise exc()
    assert _listing(tmp_path) == ["out.txt"]
    assert target.read_text() == "old"


def test_atomic_group_writes_every_file(tmp_path):
    (tmp_path / "a.txt").write_text("old a")
    os.chmod(tmp_path / "a.txt", 0o640)
    with atomic_group([tmp_path / "a.txt", tmp_path / "b.txt"]) as (a, b):
        write_text_atomic(a, "new a")
        write_text_atomic(b, "new b")
    assert _listing(tmp_path) == ["a.txt", "b.txt"]
    assert (tmp_path / "a.txt").read_text() == "new a" and (tmp_path / "b.txt").read_text() == "new b"
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o640  # an existing file keeps its mode


@pytest.mark.parametrize("exc", [KeyboardInterrupt, SystemExit, OSError])
def test_atomic_group_changes_nothing_when_the_block_fails(tmp_path, exc):
    (tmp_path / "a.txt").write_text("old a")
    with pytest.raises(exc):
        with atomic_group([tmp_path / "a.txt", tmp_path / "b.txt"]) as (a, b):
            write_text_atomic(a, "new a")
            raise exc()
    assert _listing(tmp_path) == ["a.txt"]
    assert (tmp_path / "a.txt").read_text() == "old a"


def test_atomic_group_rolls_back_when_a_rename_fails_half_way(tmp_path, monkeypatch):
    (tmp_path / "b.txt").write_text("old b")
    real_replace = os.replace
    calls = []

    def replace(src, dst):
        calls.append(dst)
        if len(calls) == 2:  # the second target's rename: the first is already in place
            raise KeyboardInterrupt
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(KeyboardInterrupt):
        with atomic_group([tmp_path / "a.txt", tmp_path / "b.txt"]) as (a, b):
            write_text_atomic(a, "new a")
            write_text_atomic(b, "new b")
    monkeypatch.setattr(os, "replace", real_replace)
    assert _listing(tmp_path) == ["b.txt"]  # a.txt was new: removed again; b.txt untouched
    assert (tmp_path / "b.txt").read_text() == "old b"


def test_atomic_group_restores_a_replaced_file_when_a_later_one_is_missing(tmp_path):
    (tmp_path / "a.txt").write_text("old a")
    with pytest.raises(FileNotFoundError, match="b.txt"):
        with atomic_group([tmp_path / "a.txt", tmp_path / "b.txt"]) as (a, _b):
            write_text_atomic(a, "new a")  # b is never written
    assert _listing(tmp_path) == ["a.txt"]
    assert (tmp_path / "a.txt").read_text() == "old a"


def test_atomic_group_rejects_targets_in_two_folders(tmp_path):
    (tmp_path / "sub").mkdir()
    with pytest.raises(ValueError, match="one folder"):
        with atomic_group([tmp_path / "a.txt", tmp_path / "sub" / "b.txt"]):
            pass


def test_write_outputs_writes_no_result_when_the_report_cannot_be_written(tmp_path):
    from hpe_ros.offline import OfflineResult, write_outputs
    from hpe_ros.skeleton import get_layout

    layout = get_layout("coco17")
    T, J = 5, len(layout.joint_names)
    result = OfflineResult(layout=layout, fps=30.0, camera_names=["cam0", "cam1"], frame_indices=np.arange(T),
                           ids=np.array([0]), points=np.zeros((T, 1, J, 3)), confidence=np.ones((T, 1, J)),
                           views=np.full((T, 1, J), 2))
    result.report = {"not json": float("nan")}  # json.dumps(allow_nan=False) fails on it
    with pytest.raises(ValueError):
        write_outputs(result, tmp_path / "walk.trc")
    assert _listing(tmp_path) == []
    result.report = {"frames": T}
    info = write_outputs(result, tmp_path / "walk.trc")
    assert _listing(tmp_path) == ["walk.report.json", "walk.trc"]
    assert json.loads((tmp_path / "walk.report.json").read_text())["output"]["output"] == info["output"]
