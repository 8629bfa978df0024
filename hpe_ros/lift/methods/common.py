"""Geometry shared by the 2D-only methods (cycle, ites): reprojection, random rotations, scale priors.

Conventions (see hpe_ros/lift/normalize.py): a batch's `net_input` (B, J + 1, 3) holds p = (x - c) / s and
confidences; the lifter answers shape Q (B, J, 3) (root-relative, metres / m) and log m. In "shape units"
the root sits at (c, 1) / s, so projecting root + Q gives image rays without knowing the metric scale.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from hpe_ros.anthropometry import DEFAULT_HEIGHT, PROPORTIONS
from hpe_ros.lift.normalize import torch_normalise, torch_project
from hpe_ros.skeleton import Layout


def unpack(net_input: torch.Tensor):
    """net_input (B, J + 1, 3) -> p (B, J, 2) normalised 2D, weights (B, J) confidences, centre c (B, 2).

    The spread s is a separate batch entry ("spread", (B,)): p is scale-free, but the perspective (root
    depth 1 / s in shape units) needs it.
    """
    J = net_input.shape[1] - 1
    return net_input[:, :J, :2], net_input[:, :J, 2], net_input[:, J, :2]


def fit_root(shape, p, w, centre, spread) -> torch.Tensor:
    """Root position (B, 3) in shape units for shape Q: depth 1 / s, x and y so that the seen joints reproject
    onto their rays (weighted least squares for fixed depth, as `normalize.place`). Differentiable."""
    Z = 1.0 / spread
    rays = centre[:, None] + spread[:, None, None] * p
    t_xy = rays * (Z[:, None, None] + shape[..., 2:3]) - shape[..., :2]
    T_xy = (w[..., None] * t_xy).sum(1) / w.sum(1).clamp_min(1e-6)[:, None]
    return torch.cat([T_xy, Z[:, None]], -1)


def reproject(shape, p, w, centre, spread) -> torch.Tensor:
    """Shape Q (B, J, 3) placed at its fitted root -> its 2D in the input's p-space: (project - c) / s."""
    rays = torch_project(shape + fit_root(shape, p, w, centre, spread)[:, None])
    return (rays - centre[:, None]) / spread[:, None, None]


def reprojection_loss(shape, net_input, spread) -> torch.Tensor:
    """Confidence-weighted mean 2D distance (p-space) between the reprojected shape and the input."""
    p, w, c = unpack(net_input)
    d = torch.linalg.norm(reproject(shape, p, w, c, spread) - p, dim=-1)
    return (w * d).sum() / w.sum().clamp_min(1.0)


def random_rotations(n: int, generator: torch.Generator | None = None, max_elevation: float = math.radians(20),
                     device=None) -> torch.Tensor:
    """(n, 3, 3) camera-frame rotations: any azimuth about the camera's y axis (roughly vertical for a person
    in view), then up to `max_elevation` about x. Samples from `generator` (reproducible)."""
    u = torch.rand(n, 2, generator=generator).to(device)
    az = (2 * u[:, 0] - 1) * math.pi
    el = (2 * u[:, 1] - 1) * max_elevation
    ca, sa, ce, se = torch.cos(az), torch.sin(az), torch.cos(el), torch.sin(el)
    o, z = torch.ones_like(az), torch.zeros_like(az)
    Ry = torch.stack([torch.stack([ca, z, sa], -1), torch.stack([z, o, z], -1), torch.stack([-sa, z, ca], -1)], 1)
    Rx = torch.stack([torch.stack([o, z, z], -1), torch.stack([z, ce, -se], -1), torch.stack([z, se, ce], -1)], 1)
    return Rx @ Ry


def rotate_and_view(shape, net_input, spread, R, lh: int, rh: int, conf: str = "ones"):
    """Rotate the shape about its fitted root by R (B, 3, 3), project every joint, renormalise as a new input.

    conf "ones": the new view has every joint seen with confidence 1; "input": it carries the input's
    confidences (unseen joints stay unseen: p = 0, weight 0), like the detections a lifter is trained on.
    Returns (net_input' (B, J + 1, 3), spread' (B,), target shape' (B, J, 3), p_all' (B, J, 2)): the lifter
    should answer R Q s / s' for the new view (same metric pose, new 2D spread); p_all' is every joint's
    normalised 2D (seen or not), e.g. for a discriminator."""
    p, w, c = unpack(net_input)
    root = fit_root(shape, p, w, c, spread)
    rotated = torch.einsum("bij,bkj->bki", R, shape)
    rays = torch_project(rotated + root[:, None])
    weights = w if conf == "input" else torch.ones_like(w)
    net, c2, s2 = torch_normalise(rays, weights, lh, rh)
    p_all = (rays - c2[:, None]) / s2[:, None, None]
    if conf == "input":
        seen = (weights > 0).to(net.dtype)[..., None]
        net = torch.cat([net[:, :-1] * torch.cat([seen.expand(-1, -1, 2), torch.ones_like(seen)], -1),
                         net[:, -1:]], 1)
    return net, s2, rotated * (spread / s2)[:, None, None], p_all


def bone_lengths(points: torch.Tensor, layout: Layout) -> torch.Tensor:
    """(B, J, 3) -> (B, nbones)."""
    b = torch.as_tensor(layout.bone_array(), device=points.device)
    return torch.linalg.norm(points[:, b[:, 0]] - points[:, b[:, 1]], dim=-1)


def symmetry_loss(shape: torch.Tensor, layout: Layout) -> torch.Tensor:
    """Left and right limb bones of one pose have equal lengths (relative difference)."""
    bones = layout.bones
    names = layout.joint_names
    pairs = []
    for i, (a, b) in enumerate(bones):
        na, nb = names[a], names[b]
        if na.startswith("left_") and nb.startswith("left_"):
            other = (layout.index("right_" + na[5:]), layout.index("right_" + nb[5:]))
            j = next((k for k, bb in enumerate(bones) if tuple(bb) in (other, other[::-1])), None)
            if j is not None:
                pairs.append((i, j))
    if not pairs:
        return shape.new_zeros(())
    L = bone_lengths(shape, layout)
    i, j = torch.as_tensor(pairs, device=shape.device).T
    return ((L[:, i] - L[:, j]).abs() / (L[:, i] + L[:, j]).clamp_min(1e-6)).mean()


def limb_length_prior(layout: Layout) -> tuple[torch.Tensor, float]:
    """(mask of limb bones (nbones,), summed limb length (m) of a person of the default height)."""
    names = layout.joint_names
    length = {("shoulder", "elbow"): PROPORTIONS["upper_arm"], ("elbow", "wrist"): PROPORTIONS["forearm"],
              ("hip", "knee"): PROPORTIONS["thigh"], ("knee", "ankle"): PROPORTIONS["shank"]}
    mask, total = [], 0.0
    for a, b in layout.bones:
        key = (names[a].split("_")[-1], names[b].split("_")[-1])
        hit = length.get(key) or length.get(key[::-1])
        mask.append(hit is not None)
        total += (hit or 0.0) * DEFAULT_HEIGHT
    return torch.as_tensor(mask), total


def scale_losses(shape, log_scale, person, layout: Layout, prior_sigma: float = 0.08):
    """Scale on its own (Yu et al.): (bone constancy, scale prior).

    bone constancy: metric bone lengths m |Q_a - Q_b| of frames of one person (same `person` id in the
    batch) equal their per-person mean (relative squared deviation). scale prior: the summed metric limb
    length is log-normal around a default-height person's with `prior_sigma`; deviations inside one sigma are free.
    """
    metric = bone_lengths(shape, layout) * torch.exp(log_scale)              # (B, nbones)
    _, inv = torch.unique(person, return_inverse=True)
    G = int(inv.max()) + 1
    count = torch.zeros(G, device=shape.device).index_add_(0, inv, torch.ones_like(inv, dtype=metric.dtype))
    mean = torch.zeros(G, metric.shape[1], device=shape.device).index_add_(0, inv, metric) / count[:, None]
    multi = (count[inv] > 1).to(metric.dtype)
    rel = ((metric - mean[inv]) / mean[inv].clamp_min(1e-3)) ** 2
    constancy = (multi[:, None] * rel).sum() / (multi.sum() * metric.shape[1]).clamp_min(1.0)
    mask, total = limb_length_prior(layout)
    limbs = metric[:, mask.to(shape.device)].sum(1)
    dev = torch.log(limbs.clamp_min(1e-3) / total).abs()
    prior = torch.relu(dev - prior_sigma).pow(2).mean()
    return constancy, prior


def np_rng_generator(seed: int) -> torch.Generator:
    g = torch.Generator()
    g.manual_seed(int(np.uint32(seed)))
    return g
