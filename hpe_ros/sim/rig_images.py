"""The simulated rig's camera images: every true joint drawn as a coded dot (`hpe_ros.sim.keypoint_images`).

What rig_sim_node publishes when it stands in for cameras (`output: images`): the images show the people
as they are (no detector errors); finding them again is the job of the 2D stage downstream (camera_pose_node
with the coded-dot network and `hpe_ros.sim.dot_detector`).

    >>> images = render_rig_images(rig, cameras, frame.truth, SimImageConfig(image_encoding="mono8"))
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ..camera import Rig
from .keypoint_images import render_keypoint_dots

OUTPUTS = ("pose_2d", "images", "both")
TRANSPORTS = ("raw", "compressed")
ENCODINGS = ("mono8", "bgr8")


@dataclass
class SimImageConfig:
    """What rig_sim_node publishes per camera; the names are its ROS parameters."""

    output: str = field(default="pose_2d", metadata={
        "help": "'pose_2d': simulated 2D detections on <cam>/pose_2d; 'images': coded-dot camera images on "
                "<cam>/image_raw (for camera_pose_node); 'both'"})
    image_transport: str = field(default="raw", metadata={
        "help": "'raw' (sensor_msgs/Image on <cam>/image_raw) or 'compressed' (JPEG CompressedImage on "
                "<cam>/image_raw/compressed)"})
    image_encoding: str = field(default="mono8", metadata={
        "help": "pixels of the images: 'mono8' (the dots are grey) or 'bgr8'; JPEG keeps the same channels"})
    jpeg_quality: int = field(default=90, metadata={"help": "JPEG quality (compressed transport)",
                                                    "range": (1, 100)})
    dot_radius_px: float = field(default=5.0, metadata={"help": "radius of the joints' dots",
                                                        "range": (1.0, 50.0)})

    def __post_init__(self):
        for name, allowed in (("output", OUTPUTS), ("image_transport", TRANSPORTS), ("image_encoding", ENCODINGS)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")

    @property
    def images(self) -> bool:
        return self.output in ("images", "both")

    @property
    def poses(self) -> bool:
        return self.output in ("pose_2d", "both")


def render_rig_images(rig: Rig, cameras: Sequence[int], joints: np.ndarray, config: SimImageConfig) -> list[np.ndarray]:
    """One image per camera index in `cameras`: (H, W) uint8 for mono8, (H, W, 3) BGR uint8 for bgr8.

    joints: (P, J, 3) world m (NaN = absent); joints behind a camera are not drawn, nearer ones hide farther.
    """
    images = []
    for c in cameras:
        cam = rig[int(c)]
        depth = cam.world_to_camera(joints)[..., 2]                                  # (P, J) m
        pixels = np.where((depth > 0.05)[..., None], cam.project(joints), np.nan)    # (P, J, 2) px
        bgr = render_keypoint_dots(pixels, depth, size=cam.size, radius=config.dot_radius_px)
        images.append(np.ascontiguousarray(bgr[..., 0]) if config.image_encoding == "mono8" else bgr)
    return images
