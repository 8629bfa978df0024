"""3D-target training: synthetic ground truth, or EpipolarPose pseudo-labels from the rig's triangulations.

Loss: confidence-weighted mean joint distance between predicted and target shapes (scale-free units, see
normalize.py) + `scale_weight` times an L1 on log scale (the metric scale head).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from hpe_ros.lift.methods.base import Method


@dataclass
class SupervisedOptions:
    scale_weight: float = 0.5     # weight of the log-scale L1 against the pose term


class SupervisedMethod(Method):
    needs_targets = True
    Options = SupervisedOptions

    def losses(self, model, batch, step):
        shape, log_scale = model(batch["net_input"])
        w = batch["target_weight"]                                     # (B, J)
        err = torch.linalg.norm(shape - batch["shape"], dim=-1)        # (B, J)
        pose = (w * err).sum() / w.sum().clamp_min(1.0)
        has = (w.sum(1) > 0).float()
        scale = (has * (log_scale[:, 0] - batch["log_scale"]).abs()).sum() / has.sum().clamp_min(1.0)
        total = pose + self.options.scale_weight * scale
        return {"loss": total, "loss_pose": pose.detach(), "loss_scale": scale.detach()}
