"""Model manifests (shipped ones valid, bad ones named precisely) and fetch over file:// URLs."""
import hashlib
import io
import tarfile
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest

from hpe_ros.detect2d import fetch as fetch_mod
from hpe_ros.detect2d.fetch import FetchError, fetch_model, read_record, record_path
from hpe_ros.detect2d.manifest import (
    ManifestError,
    ModelManifest,
    list_manifests,
    load_manifest,
    models_dir,
    read_manifest,
    resolve_model_file,
)
from hpe_ros.runtime.cache import model_cache_dir

EXPECTED_MODELS = {"rtmpose-t", "rtmpose-s", "rtmpose-m", "hrnet-w32", "vitpose-b", "rtmdet-nano"}


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    """Every test gets its own model cache dir (never the user's ~/.cache)."""
    d = tmp_path / "cache"
    monkeypatch.setenv("HPE_ROS_MODEL_DIR", str(d))
    return d


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def manifest(url="", **kw) -> ModelManifest:
    base = dict(name="tiny", kind="pose", file="tiny.onnx", input_size=(192, 256), output="simcc",
                url=url, layout="coco17", note="export it yourself")
    base.update(kw)
    return ModelManifest(**base)


# ---------------------------------------------------------------------------------------- manifests

def test_every_shipped_manifest_loads_and_validates():
    ms = list_manifests()
    assert {m.name for m in ms} >= EXPECTED_MODELS
    for m in ms:
        assert Path(m.manifest_path).parent == models_dir()
        assert load_manifest(m.name) == m
        assert m.input_size[0] > 0 and m.input_size[1] > 0 and len(m.mean) == 3 and min(m.std) > 0
        assert m.sha256 == "" or len(m.sha256) == 64
        assert m.url or m.note  # either downloadable or says how to obtain it
        if m.kind == "pose":
            assert m.layout == "coco17" and m.output in ("heatmap", "simcc")
        else:
            assert m.output in ("yolox", "end2end") and m.layout == ""
    by = {m.name: m for m in ms}
    for v in "tsm":
        m = by[f"rtmpose-{v}"]
        assert m.output == "simcc" and m.input_size == (192, 256) and m.simcc_split_ratio == 2.0
        assert m.url.startswith("https://download.openmmlab.com/mmpose/v1/projects/rtmposev1/onnx_sdk/rtmpose-")
        assert m.url.endswith(".zip") and m.archive_member and m.color == "rgb"
    for name in ("hrnet-w32", "vitpose-b"):
        assert by[name].url == "" and "mmdeploy" in by[name].note and by[name].output == "heatmap"
    det = by["rtmdet-nano"]
    assert det.kind == "detector" and det.output == "end2end" and det.input_size == (320, 320) and det.color == "bgr"


def test_load_manifest_by_path_and_unknown_name(tmp_path):
    m = load_manifest(models_dir() / "rtmpose-m.toml")
    assert m.name == "rtmpose-m"
    with pytest.raises(FileNotFoundError, match="unknown model 'nope'.*known models:.*rtmpose-m"):
        load_manifest("nope")


GOOD = """\
name = "mine"
kind = "pose"
file = "mine.onnx"
input_size = [192, 256]
output = "heatmap"
layout = "coco17"
url = "https://example.org/mine.onnx"
mean = [123.675, 116.28, 103.53]
std = [58.395, 57.12, 57.375]
"""


@pytest.mark.parametrize("edit, field", [
    (lambda t: t.replace('input_size = [192, 256]', 'input_size = [192]'), "input_size"),
    (lambda t: t.replace('input_size = [192, 256]', 'input_size = [192, -256]'), "input_size"),
    (lambda t: t.replace('kind = "pose"', 'kind = "segmenter"'), "kind"),
    (lambda t: t.replace('output = "heatmap"', 'output = "yolox"'), "output"),
    (lambda t: t.replace('layout = "coco17"', 'layout = "coco99"'), "layout"),
    (lambda t: t.replace('layout = "coco17"\n', ''), "layout"),
    (lambda t: t.replace('std = [58.395, 57.12, 57.375]', 'std = [58.395, 0, 57.375]'), "std"),
    (lambda t: t.replace('mean = [123.675, 116.28, 103.53]', 'mean = "imagenet"'), "mean"),
    (lambda t: t + 'sha256 = "abc"\n', "sha256"),
    (lambda t: t + 'color = "yuv"\n', "color"),
    (lambda t: t + 'colour = "rgb"\n', "colour"),
    (lambda t: t.replace('file = "mine.onnx"', 'file = "../mine.onnx"'), "file"),
    (lambda t: t.replace('file = "mine.onnx"\n', ''), "file"),
    (lambda t: t.replace('url = "https://example.org/mine.onnx"', 'url = "ftp://example.org/x"'), "url"),
    (lambda t: t.replace('url = "https://example.org/mine.onnx"', 'url = ""'), "note"),
    (lambda t: t + 'simcc_split_ratio = 0\n', "simcc_split_ratio"),
])
def test_corrupt_manifest_errors_name_file_and_field(tmp_path, edit, field):
    path = tmp_path / "mine.toml"
    path.write_text(GOOD)
    assert read_manifest(path).name == "mine"
    path.write_text(edit(GOOD))
    with pytest.raises(ManifestError) as err:
        read_manifest(path)
    assert str(path) in str(err.value) and f"field '{field}'" in str(err.value)


def test_invalid_toml_names_the_file(tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text('name = "x\n')
    with pytest.raises(ManifestError, match="broken.toml: not valid TOML"):
        read_manifest(path)


def test_cache_dir_and_resolve_model_file(tmp_path, monkeypatch, private_cache):
    assert model_cache_dir() == private_cache
    monkeypatch.delenv("HPE_ROS_MODEL_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert model_cache_dir() == tmp_path / "xdg" / "hpe_ros" / "models"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert model_cache_dir() == Path("~/.cache/hpe_ros/models").expanduser()
    monkeypatch.setenv("HPE_ROS_MODEL_DIR", str(private_cache))

    m = load_manifest("rtmpose-t")
    assert resolve_model_file(m) is None
    private_cache.mkdir()
    (private_cache / m.file).write_bytes(b"onnx")
    assert resolve_model_file("rtmpose-t") == private_cache / m.file


# -------------------------------------------------------------------------------------------- fetch

@pytest.fixture
def served(tmp_path):
    """A "server" folder reachable through file:// URLs."""
    d = tmp_path / "server"
    d.mkdir()

    def put(name: str, data: bytes) -> str:
        (d / name).write_bytes(data)
        return (d / name).as_uri()
    return put


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_fetch_right_hash_puts_the_file_in_place(served, tmp_path, private_cache):
    data = b"pretend this is an ONNX graph" * 1000
    m = manifest(served("tiny.onnx", data), sha256=sha(data))
    path = fetch_model(m, progress=False)
    assert path == private_cache / "tiny.onnx" and path.read_bytes() == data
    assert read_record(path) == {"tiny.onnx": sha(data)}
    assert leftovers(private_cache) == []
    assert fetch_model(m, progress=False) == path  # already in place and verified: no download
    dest = tmp_path / "elsewhere"
    assert fetch_model(m, dest_dir=dest, progress=False).read_bytes() == data


def test_fetch_wrong_hash_raises_and_leaves_nothing(served, private_cache):
    data = b"the real bytes"
    m = manifest(served("tiny.onnx", data), sha256=sha(b"other bytes"))
    with pytest.raises(FetchError) as err:
        fetch_model(m, progress=False)
    msg = str(err.value)
    assert "sha256 mismatch" in msg and sha(b"other bytes") in msg and sha(data) in msg and "removed" in msg
    assert not (private_cache / "tiny.onnx").exists() and not record_path(private_cache / "tiny.onnx").exists()
    assert leftovers(private_cache) == []


def test_fetch_unpacks_the_archive_member_from_a_zip(served, private_cache):
    onnx = b"the network inside the zip"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("20230504/rtmpose_onnx/rtmpose-t/end2end.onnx", onnx)
        zf.writestr("20230504/rtmpose_onnx/rtmpose-t/pipeline.json", b"{}")
        zf.writestr("20230504/rtmpose_onnx/rtmpose-t/deploy.json", b"{}")
    archive = buf.getvalue()
    m = manifest(served("rtmpose-t.zip", archive), sha256=sha(archive), archive_member="*end2end.onnx")
    path = fetch_model(m, progress=False)
    assert path.read_bytes() == onnx
    assert read_record(path) == {"rtmpose-t.zip": sha(archive), "tiny.onnx": sha(onnx)}
    assert sorted(p.name for p in private_cache.iterdir()) == ["tiny.onnx", "tiny.onnx.sha256"]
    assert fetch_model(m, progress=False) == path  # verified through the record, not downloaded again

    bad = replace(m, file="other.onnx", archive_member="*nothing.onnx")
    with pytest.raises(FetchError, match="no member of rtmpose-t.zip matches.*end2end.onnx"):
        fetch_model(bad, progress=False)
    many = replace(m, file="other.onnx", archive_member="*.json")
    with pytest.raises(FetchError, match="matches 2 members"):
        fetch_model(many, progress=False)
    assert not (private_cache / "other.onnx").exists() and leftovers(private_cache) == []


def test_fetch_unpacks_from_a_tar_gz(served, private_cache):
    onnx = b"tarred network"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        info = tarfile.TarInfo("model/end2end.onnx")
        info.size = len(onnx)
        tf.addfile(info, io.BytesIO(onnx))
    m = manifest(served("m.tar.gz", buf.getvalue()), archive_member="*/end2end.onnx")
    assert fetch_model(m, progress=False).read_bytes() == onnx


def test_fetch_without_url_says_how_to_get_the_file(private_cache):
    m = load_manifest("hrnet-w32")
    with pytest.raises(FetchError) as err:
        fetch_model(m, progress=False)
    msg = str(err.value)
    assert "no download URL is published" in msg and "mmdeploy" in msg
    assert str(private_cache / m.file) in msg


def test_fetch_network_unreachable_says_where_to_place_the_file(tmp_path, private_cache):
    m = manifest((tmp_path / "missing" / "tiny.onnx").as_uri())
    with pytest.raises(FetchError) as err:
        fetch_model(m, progress=False)
    msg = str(err.value)
    assert "could not download" in msg and "by hand" in msg and str(private_cache / "tiny.onnx") in msg
    assert leftovers(private_cache) == []


def test_trust_on_first_use(served, private_cache, capsys):
    data = b"first download"
    url = served("tiny.onnx", data)
    m = manifest(url)  # no sha256 published
    path = fetch_model(m, progress=True)
    err = capsys.readouterr().err
    assert "trust on first use" in err and sha(data) in err and str(record_path(path)) in err
    assert read_record(path) == {"tiny.onnx": sha(data)}

    assert fetch_model(m, progress=False) == path  # second fetch: verified against the record
    assert fetch_model(m, progress=False, force=True).read_bytes() == data  # same bytes downloaded again

    path.write_bytes(b"corrupted on disk")  # local damage: detected, downloaded again, verified
    assert fetch_model(m, progress=False).read_bytes() == data

    served("tiny.onnx", b"tampered at the source")  # the source changes: refused, good file kept
    with pytest.raises(FetchError, match="sha256 mismatch.*recorded on first download"):
        fetch_model(m, progress=False, force=True)
    assert path.read_bytes() == data and leftovers(private_cache) == []


def test_trust_on_first_use_for_an_archive_pins_the_download(served, private_cache):
    def zipped(payload):
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            zf.writestr("x/end2end.onnx", payload)
        return buf.getvalue()

    archive = zipped(b"net v1")
    m = manifest(served("pkg.zip", archive), archive_member="*end2end.onnx")
    path = fetch_model(m, progress=False)
    assert read_record(path)["pkg.zip"] == sha(archive)
    served("pkg.zip", zipped(b"net v2"))
    with pytest.raises(FetchError, match="sha256 mismatch"):
        fetch_model(m, progress=False, force=True)
    assert path.read_bytes() == b"net v1"


def test_hand_placed_file_without_url_is_trusted_and_pinned(private_cache):
    m = load_manifest("vitpose-b")
    private_cache.mkdir()
    placed = private_cache / m.file
    placed.write_bytes(b"exported by hand")
    assert fetch_model(m, progress=False) == placed
    assert read_record(placed) == {m.file: sha(b"exported by hand")}
    placed.write_bytes(b"changed later")
    with pytest.raises(FetchError, match="does not match its recorded sha256"):
        fetch_model(m, progress=False)


def test_interrupted_download_leaves_nothing(served, private_cache, monkeypatch):
    m = manifest(served("tiny.onnx", b"x" * 5000))

    class Boom(Exception):
        pass

    def broken_bar(*a, **k):
        class Bar:
            def update(self, n):
                raise Boom()

            def close(self):
                pass
        return Bar()

    monkeypatch.setattr(fetch_mod, "_progress_bar", broken_bar)
    with pytest.raises(Boom):
        fetch_model(m, progress=False)
    assert list(private_cache.iterdir()) == []


def test_a_new_published_hash_replaces_an_older_file(served, private_cache):
    old, new = b"release 1", b"release 2"
    m1 = manifest(served("tiny.onnx", old), sha256=sha(old))
    path = fetch_model(m1, progress=False)
    served("tiny.onnx", new)
    m2 = replace(m1, sha256=sha(new))  # the manifest was updated for a new release
    assert fetch_model(m2, progress=False).read_bytes() == new
    assert read_record(path) == {"tiny.onnx": sha(new)}


def test_build_engine_for_needs_the_onnx_file_then_tensorrt(private_cache):
    from hpe_ros.detect2d.backends import BackendUnavailable
    from hpe_ros.detect2d.fetch import build_engine_for

    with pytest.raises(FileNotFoundError, match="hpe-ros models fetch rtmpose-t"):
        build_engine_for("rtmpose-t", fetch=False)
    m = load_manifest("rtmpose-t")
    private_cache.mkdir()
    (private_cache / m.file).write_bytes(b"not really onnx")
    try:
        import tensorrt  # noqa: F401
        pytest.skip("tensorrt is installed: building is covered by the gpu test")
    except ImportError:
        pass
    with pytest.raises(BackendUnavailable, match="tensorrt"):
        build_engine_for("rtmpose-t", engine_path=str(private_cache / "x.engine"), max_batch=4)
