"""3D-guided crops: fused skeletons projected into a camera -> BlazePose ROIs for the people it missed."""
from __future__ import annotations

import numpy as np
import pytest

from hpe_ros.camera import Camera, look_at
from hpe_ros.detect2d import blazepose_decode as bp
from hpe_ros.detect2d.guided_crops import EXTENT_TO_RADIUS, GuidedBackend, guided_rois
from hpe_ros.skeleton import get_layout

LAYOUT = get_layout("coco17")


def _camera(eye=(0.0, -4.0, 1.0), target=(0.0, 0.0, 1.0)) -> Camera:
    R, t = look_at(eye, target)
    return Camera("cam0", K=[[800, 0, 320], [0, 800, 240], [0, 0, 1]], R=R, t=t, size=(640, 480))


def _standing(x: float = 0.0, lean: float = 0.0) -> np.ndarray:
    """(17, 3) a person standing at (x, 0), z up, leaning `lean` rad sideways (about the y axis) at the hips."""
    pts = np.zeros((17, 3))
    heights = {"nose": 1.6, "left_eye": 1.65, "right_eye": 1.65, "left_ear": 1.62, "right_ear": 1.62,
               "left_shoulder": 1.4, "right_shoulder": 1.4, "left_elbow": 1.1, "right_elbow": 1.1,
               "left_wrist": 0.85, "right_wrist": 0.85, "left_hip": 0.9, "right_hip": 0.9,
               "left_knee": 0.5, "right_knee": 0.5, "left_ankle": 0.1, "right_ankle": 0.1}
    for name, z in heights.items():
        side = 0.15 if name.startswith("left") else -0.15 if name.startswith("right") else 0.0
        pts[LAYOUT.index(name)] = (x + side, 0.0, z)
    if lean:
        c, s = np.cos(lean), np.sin(lean)
        upper = pts[:, 2] > 0.9
        d = pts[upper] - (x, 0.0, 0.9)
        pts[upper] = np.stack([x + c * d[:, 0] + s * d[:, 2], d[:, 1], 0.9 - s * d[:, 0] + c * d[:, 2]], axis=1)
    return pts


def test_roi_is_centred_on_the_projected_hips_and_holds_the_body():
    cam = _camera()
    skeleton = _standing()
    rois = guided_rois(cam, skeleton[None], "coco17")
    assert rois.shape == (1, 4)
    px = cam.project(skeleton)
    np.testing.assert_allclose(rois[0, :2], px[[11, 12]].mean(0), atol=1e-6)
    assert abs(rois[0, 3]) < 1e-6                      # upright person: no rotation
    extent = np.linalg.norm(px - rois[0, :2], axis=1).max()
    np.testing.assert_allclose(rois[0, 2], 2 * extent * EXTENT_TO_RADIUS * bp.ROI_SCALE, rtol=1e-6)
    corners = bp.crop_to_image(np.array([[[0, 0], [1, 1]]], float), rois)[0]
    assert (corners[0] <= px.min(0)).all() and (corners[1] >= px.max(0)).all()   # whole body in the crop


@pytest.mark.parametrize("lean", [0.4, -0.6])
def test_roi_turns_with_the_torso(lean):
    cam = _camera()
    skeleton = _standing(lean=lean)
    roi = guided_rois(cam, skeleton[None], "coco17")[0]
    px = cam.project(skeleton)
    up = px[[5, 6]].mean(0) - px[[11, 12]].mean(0)
    # the crop's "up" (crop y decreasing) points along hips -> shoulders in the image
    crop_up = bp.crop_to_image(np.array([[[0.5, 0.0]]]), roi[None])[0, 0] - roi[:2]
    cos = crop_up @ up / np.linalg.norm(crop_up) / np.linalg.norm(up)
    assert cos > 0.999
    assert np.sign(roi[3]) == np.sign(up[0])            # leaning right on screen turns clockwise (positive)


def test_people_covered_by_a_tracked_roi_or_out_of_frame_are_skipped():
    cam = _camera()
    people = np.stack([_standing(-0.8), _standing(0.8), _standing(9.0)])   # the third is far out of frame
    rois = guided_rois(cam, people, "coco17")
    assert len(rois) == 2
    tracked = rois[:1] + np.array([5.0, -3.0, 10.0, 0.05])               # the first is tracked already
    left = guided_rois(cam, people, "coco17", tracked_rois=tracked)
    np.testing.assert_allclose(left, rois[1:])


def test_missing_and_behind_the_camera_people_give_no_roi():
    cam = _camera()
    nan = np.full((17, 3), np.nan)
    no_hips = _standing()
    no_hips[[11, 12]] = np.nan
    behind = _standing() + (0.0, -8.0, 0.0)                              # behind the camera at y = -4
    assert guided_rois(cam, np.stack([nan, no_hips, behind]), "coco17").shape == (0, 4)
    assert guided_rois(cam, np.zeros((0, 17, 3)), "coco17").shape == (0, 4)
    with pytest.raises(ValueError, match="skeletons"):
        guided_rois(cam, np.zeros((1, 25, 3)), "coco17")


class _FakeBlazePose:
    name, layout = "fake", "blazepose33"

    def __init__(self):
        self.guides, self.calls = {}, 0

    def guide(self, stream, rois):
        self.guides[stream] = rois

    def tracked_rois(self, stream):
        return np.zeros((0, 4))

    def infer(self, images, streams):
        self.calls += 1
        return [(np.zeros((0, 33, 2)), np.zeros((0, 33))) for _ in images]


def test_guided_backend_hands_each_steps_rois_to_its_cameras():
    from hpe_ros.camera import Rig

    rig = Rig([_camera()])
    steps = [np.stack([_standing()]), np.zeros((0, 17, 3))]
    inner = _FakeBlazePose()
    guided = GuidedBackend(inner, rig, steps, "coco17")
    image = np.zeros((480, 640, 3), np.uint8)
    guided.infer([image], ["cam0"])
    assert inner.guides["cam0"].shape == (1, 4)
    guided.infer([image], ["cam0"])
    assert inner.guides["cam0"].shape == (0, 4)
    guided.infer([image], ["cam0"])                                       # past the known steps: nothing new
    assert inner.calls == 3 and guided.guided == {"cam0": 1} and guided.layout == "blazepose33"
    with pytest.raises(ValueError, match="guided ROIs"):
        GuidedBackend(object.__new__(type("Plain", (), {"name": "plain"})), rig, steps, "coco17")
