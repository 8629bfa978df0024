import numpy as np
import pytest

from hpe_ros.io.atomic import atomic_path, write_text_atomic
from hpe_ros.render import frustum_lines, render_scene
from hpe_ros.sim import MotionScript, default_rig
from hpe_ros.skeleton import get_layout


def test_render_scene_writes_one_png_and_nothing_else(tmp_path):
    rig = default_rig(4)
    people = MotionScript(n_people=2, seed=0).pose(1.0)
    px = rig[0].project(people)
    out = render_scene(tmp_path / "scene.png", rig, get_layout("coco17"), people + 0.01, np.array([3, 7]),
                       ground_truth=people, view_points2d=px, view_scores=np.ones(px.shape[:2]))
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["scene.png"]


def test_frustum_starts_at_the_camera_centre():
    cam = default_rig(4)[1]
    seg = frustum_lines(cam, depth=0.5)
    np.testing.assert_allclose(seg[:4, 0], np.repeat(cam.center[None], 4, axis=0))
    depths = cam.world_to_camera(seg[:4, 1])[:, 2]
    np.testing.assert_allclose(depths, 0.5)


def test_atomic_write_keeps_old_content_on_failure(tmp_path):
    target = tmp_path / "a.txt"
    write_text_atomic(target, "old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("writer died")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]
    with pytest.raises(FileNotFoundError, match="does not exist"):
        write_text_atomic(tmp_path / "missing" / "b.txt", "x")
