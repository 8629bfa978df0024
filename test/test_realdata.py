"""The real-data cache on a tiny stand-in wheel: extraction of the demos only, atomic and idempotent,
and one clear reason when the corpus is absent (no download here)."""
import zipfile

import pytest

from hpe_ros import realdata


def fake_wheel(path, demos=realdata.DEMOS, extra=()):
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("Pose2Sim/calibration.py", "# code, not data\n")
        for demo in demos:
            archive.writestr(f"Pose2Sim/{demo}/calibration/Calib.qca.txt", "<calibration/>")
            archive.writestr(f"Pose2Sim/{demo}/Config.toml", "")
        for name in extra:
            archive.writestr(name, "")
    return path


def test_fetch_extracts_only_the_demos_once(tmp_path, monkeypatch):
    monkeypatch.setenv("HPE_ROS_DATA", str(tmp_path / "cache"))
    assert "run `make realdata`" in realdata.missing_reason()
    with pytest.raises(realdata.RealDataMissing, match="Demo_SinglePerson, Demo_MultiPerson, Demo_Batch not under"):
        realdata.demo_dir("Demo_SinglePerson")
    folder = realdata.fetch(wheel=fake_wheel(tmp_path / "p.whl"))
    assert realdata.missing_reason() is None
    assert (realdata.demo_dir("Demo_Batch") / "calibration" / "Calib.qca.txt").is_file()
    assert not (folder / "Pose2Sim" / "calibration.py").exists()
    assert realdata.fetch(wheel=tmp_path / "absent.whl") == folder      # cached: the wheel is not read again
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [folder.name]   # no temporary folders left
    with pytest.raises(ValueError, match="unknown demo 'Demo_X'"):
        realdata.demo_dir("Demo_X")


def test_bad_wheels_leave_no_corpus(tmp_path, capsys):
    root = tmp_path / "cache"
    partial = fake_wheel(tmp_path / "partial.whl", demos=("Demo_SinglePerson",))
    with pytest.raises(realdata.RealDataMissing, match="has no Demo_MultiPerson, Demo_Batch"):
        realdata.fetch(root, wheel=partial)
    unsafe = fake_wheel(tmp_path / "unsafe.whl", extra=("Pose2Sim/Demo_Batch/../../../evil.txt",))
    with pytest.raises(realdata.RealDataMissing, match="unsafe member path"):
        realdata.fetch(root, wheel=unsafe)
    (tmp_path / "junk.whl").write_text("not a zip")
    assert realdata.main(["--root", str(root), "--wheel", str(tmp_path / "junk.whl")]) == 1
    assert "not a readable wheel" in capsys.readouterr().err
    assert realdata.missing_reason(root) is not None
    assert [p.name for p in root.iterdir()] == []
