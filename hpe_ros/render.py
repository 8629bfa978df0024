"""Pictures people would rather look at than read: 3D skeletons with camera frusta, and one camera's view."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from hpe_ros.camera import Camera, Rig
from hpe_ros.io.atomic import atomic_path
from hpe_ros.skeleton import Layout

_PALETTE = np.array([[0.12, 0.47, 0.71], [1.0, 0.5, 0.05], [0.17, 0.63, 0.17], [0.84, 0.15, 0.16],
                     [0.58, 0.4, 0.74], [0.55, 0.34, 0.29], [0.89, 0.47, 0.76], [0.5, 0.5, 0.5]])


def id_colour(i: int) -> np.ndarray:
    return _PALETTE[int(i) % len(_PALETTE)]


def frustum_lines(camera: Camera, depth: float = 0.6) -> np.ndarray:
    """(8, 2, 3) world segments: centre to the 4 image corners at `depth`, and the far rectangle."""
    w, h = camera.size
    corners = np.array([[0, 0], [w, 0], [w, h], [0, h]], dtype=np.float64)
    xy = camera.undistort_points(corners)
    far = camera.camera_to_world(np.concatenate([xy, np.ones((4, 1))], axis=1) * depth)
    c = camera.center
    return np.array([[c, f] for f in far] + [[far[i], far[(i + 1) % 4]] for i in range(4)])


def _bones(ax, points: np.ndarray, layout: Layout, colour, dims: int, **style) -> None:
    for a, b in layout.bones:
        seg = points[[a, b], :dims]
        if np.all(np.isfinite(seg)):
            ax.plot(*seg.T, color=colour, **style)


def render_scene(path: str | Path, rig: Rig, layout: Layout, fused: np.ndarray, ids: np.ndarray,
                 ground_truth: np.ndarray | None = None, view_camera: int = 0,
                 view_points2d: np.ndarray | None = None, view_scores: np.ndarray | None = None,
                 title: str = "") -> Path:
    """Write a PNG: left, 3D skeletons (fused coloured by id, truth dashed grey) with camera frusta;
    right, camera `view_camera`'s 2D detections with the fused skeletons reprojected.

    fused: (P, J, 3) m; ids: (P,); ground_truth: (G, J, 3); view_points2d: (Q, J, 2) px, view_scores (Q, J).
    Written atomically (temp file + rename).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(13, 6), dpi=100)
    ax3 = fig.add_subplot(1, 2, 1, projection="3d")
    for cam in rig:
        for seg in frustum_lines(cam):
            ax3.plot(*seg.T, color="k", lw=0.8)
        ax3.text(*cam.center, cam.name, fontsize=8)
    if ground_truth is not None:
        for person in ground_truth:
            _bones(ax3, person, layout, (0.45, 0.45, 0.45), 3, ls="--", lw=1.2, zorder=5)
    for person, i in zip(fused, ids):
        _bones(ax3, person, layout, id_colour(i), 3, lw=2.0)
        ok = np.all(np.isfinite(person), axis=1)
        ax3.scatter(*person[ok].T, color=id_colour(i), s=8)
        if ok.any():
            ax3.text(*(person[ok].max(axis=0) * [1, 1, 1.05]), f"id {int(i)}", color=id_colour(i), fontsize=9)
    span = np.concatenate([rig.centers, np.zeros((1, 3))])
    lo, hi = span.min(axis=0) - 0.3, span.max(axis=0) + 0.3
    lo[2] = 0.0  # the floor
    ax3.set(xlim=(lo[0], hi[0]), ylim=(lo[1], hi[1]), zlim=(lo[2], hi[2]),
            xlabel="x (m)", ylabel="y (m)", zlabel="z (m)", title="3D skeletons (grey dashed: ground truth)")
    ax3.set_box_aspect(tuple(hi - lo))  # metres look the same along every axis

    cam = rig[view_camera]
    ax2 = fig.add_subplot(1, 2, 2)
    w, h = cam.size
    ax2.add_patch(plt.Rectangle((0, 0), w, h, fill=False, color="k"))
    if view_points2d is not None:
        for q, s in zip(view_points2d, view_scores if view_scores is not None else np.ones(view_points2d.shape[:2])):
            ok = s > 0
            ax2.scatter(q[ok, 0], q[ok, 1], s=12, color="k", zorder=3, label=None)
    for person, i in zip(fused, ids):
        _bones(ax2, cam.project(person), layout, id_colour(i), 2, lw=2.0)
    ax2.set(xlim=(0, w), ylim=(h, 0), aspect="equal",
            title=f"{cam.name}: 2D detections (black) and fused skeletons reprojected")
    if title:
        fig.suptitle(title)
    fig.tight_layout()

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png")
    finally:
        plt.close(fig)
    return path
