"""3D-target training: synthetic ground truth, or EpipolarPose pseudo-labels from the rig's triangulations.

Loss: confidence-weighted mean joint distance between predicted and target shapes (scale-free units, see
normalize.py) + an L1 on log scale (the metric scale head), + a small bone-symmetry term that costs nothing
when targets are exact and steadies noisy pseudo-labels.
"""
from __future__ import annotations

import torch

from hpe_ros.lift.methods.base import Method


class SupervisedMethod(Method):
    needs_targets = True

    def losses(self, model, batch, step):
        shape, log_scale = model(batch["net_input"])
        w = batch["target_weight"]                                     # (B, J)
        err = torch.linalg.norm(shape - batch["shape"], dim=-1)        # (B, J)
        pose = (w * err).sum() / w.sum().clamp_min(1.0)
        has = (w.sum(1) > 0).float()
        scale = (has * (log_scale[:, 0] - batch["log_scale"]).abs()).sum() / has.sum().clamp_min(1.0)
        total = pose + self.option("scale_weight", 0.5) * scale
        return {"loss": total, "loss_pose": pose.detach(), "loss_scale": scale.detach()}
