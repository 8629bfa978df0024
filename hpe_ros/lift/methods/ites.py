"""ITES: an invariant teacher and an equivariant student, trained from 2D only (Xu et al. AAAI 2021).

Teacher (`DictionaryTeacher`): from `net_input` an MLP predicts K coefficients a of a learned pose
dictionary D (K, J, 3) and a camera rotation (6D representation, Zhou et al. CVPR 2019). The canonical pose
is S = sum_k a_k D_k (shape units, see normalize.py), the camera-frame shape X = R S. D_0 starts as a
standing person from the simulator's body proportions (`template_pose`), the rotation as upright,
facing. K is small (default 10 for 17 joints: 51 numbers), so the teacher can only answer poses in a
low-rank family: that is what regularises the depth it finds. It learns from 2D alone:

- reprojection: X placed at its fitted root reprojects onto the input (common.reprojection_loss);
- invariance by cycle consistency: X rotated by a random R_r (common.random_rotations) and seen again
  (common.rotate_and_view) is a new input; the teacher's canonical pose of it must be the first one (in
  the new view's units: S s / s') and its camera-frame shape the rotated one. Gradients flow through the
  whole cycle, so a wrong depth (whose rotated views look implausible) is penalised;
- bone symmetry of the canonical pose (common.symmetry_loss).

Student (`model`, the lifter being trained: usually the GCN student, "gcn"; "mlp" works too): reprojection
+ distillation towards the teacher's camera-frame shape (teacher detached) + bone symmetry + scale on its
own (common.scale_losses: bone constancy over a person's frames and a body-size prior), and optionally its
own equivariance (the cycle above with the student, `student_cycle_weight`).

Schedule: the first `teacher_steps` steps train the teacher only (the loss handed to the loop is a zero
with no gradient into the lifter); after that the student trains and the teacher keeps training with its
own optimiser (Adam, `teacher_lr`, cosine decay over the run), updated in `optimisers()` before each lifter
step.

Fine-tuning (config.init set, or option teacher_init="pca"): the teacher's dictionary starts as the
principal directions of the starting lifter's own shapes on the first batches, brought to a body frame
(hips along x, spine along y), and during the teacher phase the teacher is also pulled towards the
lifter's answers (`anchor_weight`), so it starts as a low-rank, rotation-invariant copy of a good model
instead of from nothing. The student keeps a frozen copy of its starting weights and is pulled towards it
with `keep_weight` (default 0: off).

When fine-tuning the teacher also stays anchored for the whole run (`anchor_always`), and the student
distils depth only (`distill_axes` "z"), optionally only where teacher and student agree (`agree_tau`) or
where the teacher is itself rotation-invariant (`confidence_tau`).

Options: `ItesOptions` (from TrainConfig.options), with their defaults and the fine-tuning choices.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from hpe_ros.lift.methods.base import Method, check_choice
from hpe_ros.lift.methods.common import (
    np_rng_generator,
    random_rotations,
    reprojection_loss,
    rotate_and_view,
    scale_losses,
    symmetry_loss,
)
from hpe_ros.lift.normalize import hip_indices


def rotation_6d(x: torch.Tensor) -> torch.Tensor:
    """(B, 6) -> (B, 3, 3) rotation matrices by Gram-Schmidt on two 3-vectors (columns b1, b2, b1 x b2)."""
    a1, a2 = x[:, :3], x[:, 3:]
    b1 = a1 / torch.linalg.norm(a1, dim=-1, keepdim=True).clamp_min(1e-6)
    a2 = a2 - (b1 * a2).sum(-1, keepdim=True) * b1
    b2 = a2 / torch.linalg.norm(a2, dim=-1, keepdim=True).clamp_min(1e-6)
    return torch.stack([b1, b2, torch.cross(b1, b2, dim=-1)], -1)


def template_pose(layout) -> torch.Tensor:
    """A standing person of the default height (arms slightly out), root-relative in the
    body frame (`body_frame`), scaled to unit RMS joint distance: (J, 3). Only COCO-17 has one (None else)."""
    import numpy as np

    from hpe_ros.anthropometry import DEFAULT_HEIGHT, segment_lengths
    from hpe_ros.sim.motion import forward_kinematics

    if layout.name != "coco17":
        return None
    body = {k: np.array([v]) for k, v in segment_lengths(DEFAULT_HEIGHT).items()}
    body["height"] = np.array([DEFAULT_HEIGHT])
    one, two = np.zeros(1), np.zeros((1, 2))
    ang = dict(trunk=one, hip=two, knee=two, sh_flex=two, sh_abd=np.full((1, 2), 0.2),
               elbow=np.full((1, 2), 0.3), roll=two, sway=one)
    P = torch.as_tensor(forward_kinematics(body, one, one, one, ang), dtype=torch.float32)
    lh, rh = hip_indices(layout)
    P = body_frame(P - 0.5 * (P[:, lh] + P[:, rh])[:, None], layout)[0]
    return P / P.pow(2).sum(-1).mean().sqrt()


class DictionaryTeacher(nn.Module):
    """net_input (B, J + 1, 3) -> (camera-frame shape X (B, J, 3), canonical S (B, J, 3), coefficients (B, K),
    R (B, 3, 3)) with S = sum_k a_k D_k and X = R S, both root-relative (mid-hip at the origin)."""

    def __init__(self, num_joints: int, lh: int, rh: int, bases: int = 10, width: int = 256, blocks: int = 2,
                 template: torch.Tensor | None = None):
        super().__init__()
        self.J, self.lh, self.rh = num_joints, lh, rh
        D = 0.1 * torch.randn(bases, num_joints, 3)
        if template is not None:
            D[0] = template
        self.dictionary = nn.Parameter(D)
        self.inp = nn.Sequential(nn.Linear(3 * num_joints + 2, width), nn.LayerNorm(width), nn.ReLU())
        self.blocks = nn.ModuleList([nn.Sequential(nn.Linear(width, width), nn.LayerNorm(width), nn.ReLU(),
                                                   nn.Linear(width, width), nn.LayerNorm(width), nn.ReLU())
                                     for _ in range(blocks)])
        self.coef = nn.Linear(width, bases)
        self.rot = nn.Linear(width, 6)
        with torch.no_grad():
            self.coef.weight.mul_(0.1)
            self.coef.bias.zero_()
            self.coef.bias[0] = 1.0
            self.rot.weight.mul_(0.1)
            # Body x (right to left hip) -> camera +x, body up -> camera -y: an upright person facing the camera.
            self.rot.bias.copy_(torch.tensor([1.0, 0.0, 0.0, 0.0, -1.0, 0.0]))

    def canonical(self, a: torch.Tensor) -> torch.Tensor:
        S = torch.einsum("bk,kjd->bjd", a, self.dictionary)
        return S - 0.5 * (S[:, self.lh] + S[:, self.rh])[:, None]

    def forward(self, x):
        J = self.J
        flat = torch.cat([x[:, :J].reshape(x.shape[0], 3 * J), x[:, J, :2]], 1)
        h = self.inp(flat)
        for block in self.blocks:
            h = h + block(h)
        a = self.coef(h)
        R = rotation_6d(self.rot(h))
        S = self.canonical(a)
        return torch.einsum("bij,bkj->bki", R, S), S, a, R


def body_frame(shape: torch.Tensor, layout) -> torch.Tensor:
    """(B, J, 3) root-relative shapes -> the same shapes in a body frame: x from right to left hip, y along
    the spine (mid-hip to mid-shoulder, made orthogonal to x), z = x cross y."""
    lh, rh = hip_indices(layout)
    ls, rs = layout.index("left_shoulder"), layout.index("right_shoulder")
    x = shape[:, lh] - shape[:, rh]
    x = x / torch.linalg.norm(x, dim=-1, keepdim=True).clamp_min(1e-6)
    y = 0.5 * (shape[:, ls] + shape[:, rs]) - 0.5 * (shape[:, lh] + shape[:, rh])
    y = y - (x * y).sum(-1, keepdim=True) * x
    y = y / torch.linalg.norm(y, dim=-1, keepdim=True).clamp_min(1e-6)
    z = torch.cross(x, y, dim=-1)
    B = torch.stack([x, y, z], 1)                                     # rows: body axes in camera coordinates
    return torch.einsum("bij,bkj->bki", B, shape)


def joint_distance(a: torch.Tensor, b: torch.Tensor, w: torch.Tensor | None = None) -> torch.Tensor:
    d = torch.linalg.norm(a - b, dim=-1)
    if w is None:
        return d.mean()
    return (w * d).sum() / w.sum().clamp_min(1.0)


@dataclass
class ItesOptions:
    """Weights and schedule of ITES (see the module docstring). None: chosen from whether the run fine-tunes."""

    bases: int = 10
    teacher_width: int = 256
    teacher_lr: float = 1e-3
    teacher_steps: int | None = None          # None: 30 % of the run from random init, 20 % when fine-tuning
    teacher_init: str = "auto"                # "pca", "random" or "auto" ("pca" when fine-tuning)
    pca_batches: int = 4
    teacher_reproj_weight: float = 5.0
    invariance_weight: float = 1.0
    equivariance_weight: float = 1.0
    teacher_symmetry_weight: float = 0.1
    anchor_weight: float | None = None        # None: 1 with the PCA start, else 0
    anchor_always: bool | None = None         # teacher anchored for the whole run; None: when fine-tuning
    reproj_weight: float = 1.0
    distill_weight: float = 1.0
    distill_axes: str | None = None           # "xyz" or "z" (depth only); None: "z" when fine-tuning
    agree_tau: float = 0.0                    # shape units; 0: no agreement gating
    confidence_tau: float = 0.0               # 0: no gating by the teacher's own invariance
    symmetry_weight: float = 0.1
    constancy_weight: float = 1.0
    prior_weight: float = 1.0
    student_cycle_weight: float = 0.0
    keep_weight: float = 0.0
    keep_scale_weight: float | None = None    # None: half keep_weight

    def __post_init__(self):
        check_choice("ites", "teacher_init", self.teacher_init, ("auto", "pca", "random"))
        if self.distill_axes is not None:
            check_choice("ites", "distill_axes", self.distill_axes, ("xyz", "z"))
        if self.pca_batches < 1:
            raise ValueError(f"ites option pca_batches must be >= 1, got {self.pca_batches}")


class ItesMethod(Method):
    needs_targets = False
    Options = ItesOptions

    def __init__(self, config, layout, device):
        super().__init__(config, layout, device)
        o = self.options
        self.lh, self.rh = hip_indices(layout)
        finetune = bool(config.init)
        self.teacher_steps = o.teacher_steps if o.teacher_steps is not None else \
            int(round((0.2 if finetune else 0.3) * config.steps))
        self.pca_init = o.teacher_init == "pca" or (o.teacher_init == "auto" and finetune)
        self.anchor_weight = o.anchor_weight if o.anchor_weight is not None else (1.0 if self.pca_init else 0.0)
        # Fine-tuning: the teacher stays anchored to the frozen start model for the whole run (not only its
        # own phase), the student distils depth only, where teacher and student agree, and is kept near its
        # start (shape and scale head).
        self.finetune = finetune
        self.anchor_always = finetune if o.anchor_always is None else o.anchor_always
        self.keep_weight = o.keep_weight
        self.keep_scale_weight = 0.5 * o.keep_weight if o.keep_scale_weight is None else o.keep_scale_weight
        self.distill_axes = o.distill_axes or ("z" if finetune else "xyz")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(config.seed) + 7741)
            self.teacher = DictionaryTeacher(layout.num_joints, self.lh, self.rh, o.bases, o.teacher_width,
                                             template=template_pose(layout)).to(device)
        self.teacher_opt = torch.optim.Adam(self.teacher.parameters(), lr=o.teacher_lr)
        self.generator = np_rng_generator(config.seed + 1013)
        self.pca_pool: list[torch.Tensor] = []
        self.initialised = not self.pca_init
        self.last_teacher: dict[str, torch.Tensor] = {}

    # --- teacher ------------------------------------------------------------------------------------

    def teacher_losses(self, batch, model=None) -> dict[str, torch.Tensor]:
        net, spread = batch["net_input"], batch["spread"]
        X, S, _, _ = self.teacher(net)
        reproj = reprojection_loss(X, net, spread)
        R = random_rotations(len(net), self.generator, device=net.device)
        net2, s2, target, _ = rotate_and_view(X, net, spread, R, self.lh, self.rh)
        X2, S2, _, _ = self.teacher(net2)
        ratio = (spread / s2)[:, None, None]
        invariance = joint_distance(S2, S * ratio)
        equivariance = joint_distance(X2, target)
        reproj2 = reprojection_loss(X2, net2, s2)
        sym = symmetry_loss(S, self.layout)
        o = self.options
        total = (o.teacher_reproj_weight * (reproj + 0.5 * reproj2) + o.invariance_weight * invariance
                 + o.equivariance_weight * equivariance + o.teacher_symmetry_weight * sym)
        out = {"t_reproj": reproj, "t_invariance": invariance, "t_equivariance": equivariance, "t_symmetry": sym}
        if model is not None and self.anchor_weight > 0:
            with torch.no_grad():
                if self._start is not None:
                    Q, _ = self._start(net)
                else:
                    was = model.training
                    model.eval()
                    Q, _ = model(net)
                    model.train(was)
            anchor = joint_distance(X, Q)
            total = total + self.anchor_weight * anchor
            out["t_anchor"] = anchor
        out["t_total"] = total
        return out

    @torch.no_grad()
    def _init_from_lifter(self, model, batch) -> bool:
        """Collect the lifter's shapes in a body frame; after `pca_batches` batches set the dictionary to
        their top principal directions (uncentred: the mean pose is the first). True once done."""
        was = model.training
        model.eval()
        Q, _ = model(batch["net_input"])
        model.train(was)
        Q = Q - 0.5 * (Q[:, self.lh] + Q[:, self.rh])[:, None]
        self.pca_pool.append(body_frame(Q, self.layout).reshape(len(Q), -1))
        if len(self.pca_pool) < self.options.pca_batches:
            return False
        data = torch.cat(self.pca_pool)
        data = data[torch.isfinite(data).all(1)]
        _, sv, Vt = torch.linalg.svd(data, full_matrices=False)
        K = self.teacher.dictionary.shape[0]
        # Bases scaled like the data along them, so coefficients of a typical pose are O(1).
        scale = (sv[:K] / math.sqrt(len(data)))[:, None]
        D = (scale * Vt[:K]).reshape(K, self.layout.num_joints, 3)
        sign = torch.sign((data @ Vt[0]).mean())
        D[0] *= sign if sign != 0 else 1.0
        self.teacher.dictionary.copy_(D)
        self.pca_pool = []
        return True

    def _teacher_update(self, model, batch, step):
        if not self.initialised:
            self.initialised = self._init_from_lifter(model, batch)
        frac = step / max(self.config.steps, 1)
        lr, lr_final = self.options.teacher_lr, self.options.teacher_lr * 0.01
        for g in self.teacher_opt.param_groups:
            g["lr"] = lr_final + 0.5 * (lr - lr_final) * (1 + math.cos(math.pi * frac))
        if self.finetune or self.keep_weight > 0:
            self.frozen_start(model)
        self.teacher.train()
        anchored = step < self.teacher_steps or self.anchor_always
        losses = self.teacher_losses(batch, model if anchored else None)
        self.teacher_opt.zero_grad(set_to_none=True)
        losses["t_total"].backward()
        torch.nn.utils.clip_grad_norm_(self.teacher.parameters(), 5.0)
        self.teacher_opt.step()
        self.last_teacher = {k: v.detach() for k, v in losses.items()}

    def optimisers(self) -> list:
        return [self._teacher_update]

    # --- student ------------------------------------------------------------------------------------

    def losses(self, model, batch, step):
        logged = {f"loss_{k}": v for k, v in self.last_teacher.items()}
        if step < self.teacher_steps:
            zero = torch.zeros((), device=batch["net_input"].device, requires_grad=True)
            return {"loss": zero, **logged}
        net, spread = batch["net_input"], batch["spread"]
        Q, log_scale = model(net)
        with torch.no_grad():
            self.teacher.eval()
            X, _, _, _ = self.teacher(net)
        reproj = reprojection_loss(Q, net, spread)
        distill = self._distill(Q, X, net, spread)
        sym = symmetry_loss(Q, self.layout)
        constancy, prior = scale_losses(Q, log_scale, batch["person"], self.layout)
        o = self.options
        total = (o.reproj_weight * reproj + o.distill_weight * distill + o.symmetry_weight * sym
                 + o.constancy_weight * constancy + o.prior_weight * prior)
        out = {"loss_reproj": reproj, "loss_distill": distill, "loss_symmetry": sym,
               "loss_constancy": constancy, "loss_prior": prior}
        if o.student_cycle_weight > 0:
            R = random_rotations(len(net), self.generator, device=net.device)
            net2, s2, target, _ = rotate_and_view(Q, net, spread, R, self.lh, self.rh)
            Q2, _ = model(net2)
            cycle = joint_distance(Q2, target)
            total = total + o.student_cycle_weight * cycle
            out["loss_cycle"] = cycle
        if self.keep_weight > 0 or self.keep_scale_weight > 0:
            with torch.no_grad():
                Q0, ls0 = self.frozen_start(model)(net)
            keep = joint_distance(Q, Q0)
            keep_scale = (log_scale - ls0).abs().mean()
            total = total + self.keep_weight * keep + self.keep_scale_weight * keep_scale
            out["loss_keep"] = keep
            out["loss_keep_scale"] = keep_scale
        return {"loss": total, **{k: v.detach() for k, v in out.items()}, **logged}

    def _distill(self, Q, X, net, spread):
        """Distance of the student's shape Q to the teacher's X (detached), per joint: all axes or depth only
        ("distill_axes"), weighted by agreement exp(-(|Q - X| / agree_tau)^2) and by the teacher's own
        rotation invariance on this sample exp(-(e / confidence_tau)^2); mean over all joints."""
        diff = Q - X
        d = diff[..., 2].abs() if self.distill_axes == "z" else torch.linalg.norm(diff, dim=-1)
        w = torch.ones_like(d)
        agree_tau, confidence_tau = self.options.agree_tau, self.options.confidence_tau
        if agree_tau > 0:
            w = w * torch.exp(-(torch.linalg.norm(diff.detach(), dim=-1) / agree_tau) ** 2)
        if confidence_tau > 0:
            with torch.no_grad():
                _, S, _, _ = self.teacher(net)
                R = random_rotations(len(net), self.generator, device=net.device)
                net2, s2, _, _ = rotate_and_view(X, net, spread, R, self.lh, self.rh)
                _, S2, _, _ = self.teacher(net2)
                e = torch.linalg.norm(S2 * (s2 / spread)[:, None, None] - S, dim=-1).mean(1)
            w = w * torch.exp(-(e / confidence_tau) ** 2)[:, None]
        return (w * d).mean()

    # --- checkpointing ------------------------------------------------------------------------------

    def state_dict(self) -> dict:
        return {"teacher": self.teacher.state_dict(), "teacher_opt": self.teacher_opt.state_dict(),
                "generator": self.generator.get_state(), "initialised": self.initialised,
                "pca_pool": [p.cpu() for p in self.pca_pool],
                "start_model": self.start_state()}

    def load_state_dict(self, state: dict) -> None:
        self.teacher.load_state_dict(state["teacher"])
        self.teacher_opt.load_state_dict(state["teacher_opt"])
        self.generator.set_state(state["generator"])
        self.initialised = bool(state["initialised"])
        self.pca_pool = [p.to(self.device) for p in state.get("pca_pool", [])]
        self.restore_start(state.get("start_model"))
