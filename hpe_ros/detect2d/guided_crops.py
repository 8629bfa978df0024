"""3D-guided crops: fused 3D skeletons projected into a camera give BlazePose ROIs for the people its
own detector and tracker missed.

With several cameras, a person the detector misses in one view (small, occluded, turned away) is usually
fused from the others; projecting that skeleton back gives the rotated ROI BlazePose would have tracked:
centre at the projected hip centre, "up" along hip centre -> shoulder centre, side from the projected
skeleton's extent (MediaPipe's alignment circle around the whole body, times ROI_SCALE).

- `guided_rois`: the pure projection (camera, skeletons (P, J, 3), layout) -> ROIs (K, 4) (cx, cy, size,
  angle), leaving out people already covered by a tracked ROI or not in the image.
- `GuidedBackend`: wraps a backend with `guide` / `tracked_rois` (BlazePoseBackend) to replay known 3D per
  time step, as `hpe-ros process`'s second pass does with the first pass's skeletons.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from hpe_ros.checks import check_shape
from hpe_ros.detect2d import blazepose_decode as bp
from hpe_ros.detect2d.boxes import box_iou
from hpe_ros.skeleton import get_layout

# |scale point - hip centre| over the farthest projected body joint from the hip centre: BlazePose's
# alignment circle holds the whole body with a margin (hands and feet beyond wrists and ankles, hair above
# the nose); measured on BlazePose's own landmarks of Pose2Sim's multi-person demo (median 1.23).
EXTENT_TO_RADIUS = 1.2
# A projected person whose ROI square overlaps a tracked one more is taken as tracked. Stricter than the
# backend's same_person_iou (0.5): on the two-person demo 0.5 also revived a short-lived ghost of the first
# pass as a third id; 0.3 keeps the two people and still fills the missed views.
COVERED_IOU = 0.3
MIN_INSIDE = 0.5           # share of the projected joints that must fall in the image
MIN_JOINTS = 4             # fewer fused joints give no reliable extent


def guided_rois(camera, skeletons: np.ndarray, layout, tracked_rois: np.ndarray | None = None,
                image_size: tuple[int, int] | None = None, covered_iou: float = COVERED_IOU) -> np.ndarray:
    """ROIs (K, 4) cx, cy, size, angle (image px, radians; blazepose_decode's convention) for the people of
    `skeletons` this camera should look at.

    camera: hpe_ros.camera.Camera (world -> pixels); skeletons: (P, J, 3) world m in `layout` (NaN = missing
    joint or person); tracked_rois: (T, 4) the ROIs the backend already follows in this camera; image_size:
    (w, h) px (default camera.size). A person is left out when it has fewer than MIN_JOINTS joints in
    front of the camera, no hip or shoulder centre, less than MIN_INSIDE of its joints in the image, or a
    ROI square overlapping a tracked one by more than `covered_iou`.
    """
    layout = get_layout(layout)
    check_shape("skeletons", skeletons, ("P", layout.num_joints, 3))
    w, h = camera.size if image_size is None else image_size
    px = camera.project(np.asarray(skeletons, dtype=np.float64))               # (P, J, 2), NaN behind
    valid = np.isfinite(px).all(-1)
    hip = layout.hip_centre(px)
    shoulders = 0.5 * (px[:, layout.index("left_shoulder")] + px[:, layout.index("right_shoulder")])
    inside = valid & (px[..., 0] >= 0) & (px[..., 0] < w) & (px[..., 1] >= 0) & (px[..., 1] < h)
    usable = (valid.sum(1) >= MIN_JOINTS) & np.isfinite(hip).all(-1) & np.isfinite(shoulders).all(-1)
    usable &= inside.sum(1) >= MIN_INSIDE * np.maximum(valid.sum(1), 1)
    if not usable.any():
        return np.zeros((0, 4))
    px, valid, hip, shoulders = px[usable], valid[usable], hip[usable], shoulders[usable]
    extent = np.nanmax(np.where(valid, np.linalg.norm(px - hip[:, None], axis=-1), np.nan), axis=1)
    up = shoulders - hip
    up /= np.maximum(np.linalg.norm(up, axis=1, keepdims=True), 1e-9)
    rois = bp.rois_from_alignment(hip, hip + up * (extent * EXTENT_TO_RADIUS)[:, None])
    rois = rois[rois[:, 2] > 1.0]
    if tracked_rois is None or not len(tracked_rois) or not len(rois):
        return rois
    tracked = bp.roi_boxes(np.asarray(tracked_rois, dtype=np.float64).reshape(-1, 4))
    covered = [box_iou(box, tracked).max() > covered_iou for box in bp.roi_boxes(rois)]
    return rois[~np.array(covered, dtype=bool)]


class GuidedBackend:
    """A PoseBackend that, before each time step's `infer`, hands the wrapped backend the guided ROIs of
    that step's known skeletons in every camera of the call.

    backend: has `guide(stream, rois)` and `tracked_rois(stream)` (BlazePoseBackend); rig: hpe_ros.camera.Rig
    whose camera names are the streams; skeletons: per time step (P, J, 3) world m in `layout` (e.g. a first
    pass's OfflineResult.points[t]). Time steps are counted by calls: one `infer` per step, as
    hpe_ros.videos makes (a step where every camera's frame failed to decode makes no call).
    `guided` counts the ROIs handed over per camera.
    """

    def __init__(self, backend, rig, skeletons: Sequence[np.ndarray], layout):
        if not (hasattr(backend, "guide") and hasattr(backend, "tracked_rois")):
            raise ValueError(f"2D backend {getattr(backend, 'name', backend)!r} takes no guided ROIs "
                             "(the blazepose backend does)")
        self.backend, self.rig, self.skeletons = backend, rig, skeletons
        self.skeleton_layout = get_layout(layout)
        self.name, self.layout, self.step = f"{backend.name}+guided", backend.layout, 0
        self.guided = {name: 0 for name in rig.names}

    def infer(self, images: list[np.ndarray], streams: list[str]) -> list[tuple[np.ndarray, np.ndarray]]:
        if self.step < len(self.skeletons):
            skeletons = np.asarray(self.skeletons[self.step], dtype=np.float64)
            for image, stream in zip(images, streams):
                rois = guided_rois(self.rig[stream], skeletons, self.skeleton_layout, self.backend.tracked_rois(stream),
                                   (image.shape[1], image.shape[0]))
                self.backend.guide(stream, rois)
                self.guided[stream] += len(rois)
        self.step += 1
        return self.backend.infer(images, streams)

    def __getattr__(self, name):  # last_timings, reset, close: the wrapped backend's
        return getattr(self.backend, name)
