"""Geometric self-supervision from 2D alone (Chen et al. CVPR 2019; scale on its own after Yu et al. ICCV 2021).

Per batch of normalised 2D poses p (see hpe_ros/lift/normalize.py):

1. lift: p -> shape Q, log m. `rep`: Q placed at its fitted root reprojects onto p (confidence-weighted).
2. rotate Q about its root by a random R (any azimuth, small elevation; a torch.Generator seeded from
   `config.seed`), project, renormalise -> a new view p' with spread s'; lift again -> Q2.
   `cons3d`: Q2 equals the rotated first answer R Q s / s' (mean joint distance, shape units);
   `cycle2d`: Q2 rotated back (R^T, times s' / s) reprojects onto the ORIGINAL p;
   `scale_cycle`: log m2 = log m + log(s' / s) (the root keeps its depth under the rotation).
3. `adv`: a small MLP discriminator over normalised 2D poses (J x 2) tells real inputs (fully seen samples
   only: zeros of unseen joints would give fakes away) from the rotated views p'; the lifter is asked to make
   p' look real. The discriminator has its own Adam, stepped by `optimisers()` before each lifter step on
   this batch's real poses and the previous step's (detached) fakes, so the lifter runs once per step.
4. scale on its own: `bone` (metric bone lengths constant over the frames of one person in the batch),
   `prior` (summed limb length log-normal around a default-height person's), `sym` (left = right bones).

The rotated view keeps the input's confidences ("view_conf" option "input"; "ones" = every joint seen with
confidence 1, `common.rotate_and_view`'s default), so it looks like the detections the lifter is trained on and
BatchNorm statistics of the two passes agree. Options (`CycleOptions`, from TrainConfig.options): weights
w_rep, w_3d, w_2d, w_adv, w_bone, w_prior, w_sym, w_scale_cycle; max_elevation_deg; d_lr, d_width;
gan ("ls" least squares or "bce"); detach_view (true: no gradient from the second pass into the first lift
through the rotated input; the targets R Q s / s' still carry it); warmup (steps before the cycle terms
ramp in linearly). Fine-tuning a supervised lifter (train.py then keeps BatchNorm statistics and dropout as
trained): w_anchor (mean joint distance to a frozen copy of the starting model's answers), w_back3d (the
first lift pulled to the rotated-back second lift, detached), w_orient (torso up / across directions of the
starting model's answers), w_scale_anchor (|log of the metric size m rms(Q) minus the starting model's|), axis
(0: the azimuth turns about the camera's y; 1: about the person's own torso up, hip -> shoulder of the current
lift, detached; 2: of the starting model's lift). Fine-tuning (benchmarks/bench_lifter.py FINE_TUNE) uses
axis=1 + w_scale_anchor=1: turning about the camera's y is wrong for a camera that looks down (a person's up is
tilted in its frame), and the cycle then pulls every lift upright in the camera frame (a lean towards / away
from the camera) while the shape improves; 2D carries no metric scale, so the scale drifts without an anchor.
Measured on the default lifter, a 3.8 m rig: P-MPJPE 80 -> 53 mm, MPJPE 122 -> 97 mm (camera y: 67, 153).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from hpe_ros.lift.methods.base import Method, check_choice
from hpe_ros.lift.methods.common import (
    np_rng_generator,
    random_rotations,
    reprojection_loss,
    rotate_and_view,
    scale_losses,
    symmetry_loss,
    unpack,
)
from hpe_ros.lift.normalize import MIN_SCORE, hip_indices


@dataclass
class CycleOptions:
    """Loss weights and settings of the cycle method (see the module docstring)."""

    w_rep: float = 1.0
    w_3d: float = 0.5
    w_2d: float = 0.5
    w_adv: float = 0.02
    w_bone: float = 0.5
    w_prior: float = 1.0
    w_sym: float = 0.1
    w_scale_cycle: float = 0.1
    w_anchor: float = 0.0
    w_back3d: float = 0.0
    w_orient: float = 0.0
    w_scale_anchor: float = 0.0
    max_elevation_deg: float = 20.0
    d_lr: float = 2e-4
    d_width: int = 256
    gan: str = "ls"               # "ls" least squares or "bce"
    detach_view: bool = False
    warmup: int = 0               # steps before the cycle terms ramp in linearly
    view_conf: str = "input"      # "input" or "ones" (see common.rotate_and_view)
    axis: int = 0                 # 0 camera y, 1 the current lift's torso up, 2 the starting model's

    def __post_init__(self):
        check_choice("cycle", "gan", self.gan, ("ls", "bce"))
        check_choice("cycle", "view_conf", self.view_conf, ("input", "ones"))
        check_choice("cycle", "axis", self.axis, (0, 1, 2))


class PoseDiscriminator(nn.Module):
    """(B, J, 2) normalised 2D poses -> (B,) logits "real". Plain MLP over the flattened coordinates."""

    def __init__(self, num_joints: int, width: int = 256):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2 * num_joints, width), nn.LeakyReLU(0.2),
                                 nn.Linear(width, width), nn.LeakyReLU(0.2),
                                 nn.Linear(width, width), nn.LeakyReLU(0.2), nn.Linear(width, 1))

    def forward(self, p):
        return self.net(p.reshape(p.shape[0], -1))[:, 0]


def axis_rotations(axis, angle):
    """Rodrigues: (B, 3) unit axes, (B,) angles -> (B, 3, 3) rotations."""
    x, y, z = axis.unbind(-1)
    o = torch.zeros_like(x)
    K = torch.stack([torch.stack([o, -z, y], -1), torch.stack([z, o, -x], -1), torch.stack([-y, x, o], -1)], 1)
    eye = torch.eye(3, dtype=axis.dtype, device=axis.device).expand_as(K)
    s, c = torch.sin(angle)[:, None, None], torch.cos(angle)[:, None, None]
    return eye + s * K + (1 - c) * (K @ K)


def torso_frame(shape, idx):
    """Unit up (mid-hip -> mid-shoulder) and across (right -> left, hips + shoulders) vectors (B, 3) each."""
    ls, rs, lh, rh = idx
    up = 0.5 * (shape[:, ls] + shape[:, rs] - shape[:, lh] - shape[:, rh])
    across = shape[:, lh] - shape[:, rh] + shape[:, ls] - shape[:, rs]
    return F.normalize(up, dim=-1, eps=1e-6), F.normalize(across, dim=-1, eps=1e-6)


def log_metric_size(shape, log_scale):
    """(B,) log of the metric size m rms(Q) of shapes (B, J, 3) with log m (B, 1)."""
    return log_scale[:, 0] + 0.5 * torch.log((shape ** 2).sum((1, 2)).clamp_min(1e-8))


def view_rotations(n, generator, max_elevation, axis=None, device=None):
    """`common.random_rotations` (same draws from `generator`); with axis (n, 3) the azimuth turns about
    that axis (a person's up) rather than the camera's y, then the elevation about the camera's x."""
    if axis is None:
        return random_rotations(n, generator, max_elevation, device=device)
    u = torch.rand(n, 2, generator=generator).to(device)
    az = (2 * u[:, 0] - 1) * math.pi
    el = (2 * u[:, 1] - 1) * max_elevation
    ex = torch.zeros_like(axis)
    ex[:, 0] = 1.0
    return axis_rotations(ex, el) @ axis_rotations(axis, az)


class CycleMethod(Method):
    needs_targets = False
    Options = CycleOptions

    def __init__(self, config, layout, device):
        super().__init__(config, layout, device)
        self.lh, self.rh = hip_indices(layout)
        self.torso = (layout.index("left_shoulder"), layout.index("right_shoulder"), self.lh, self.rh)
        self.generator = np_rng_generator(config.seed)              # rotations
        with torch.random.fork_rng(devices=[]):                       # keep the global stream as other methods see it
            torch.manual_seed(int(config.seed) + 7919)
            self.disc = PoseDiscriminator(layout.num_joints, self.options.d_width)
        self.disc.to(device)
        self.disc_opt = torch.optim.Adam(self.disc.parameters(), lr=self.options.d_lr,
                                         betas=(0.5, 0.999))
        self._fake: torch.Tensor | None = None                        # the last step's rotated views (detached)
        self._d_loss: torch.Tensor | None = None                      # the discriminator's last loss

    # --- discriminator ---------------------------------------------------------------------------------

    def _gan(self, logits, real: bool):
        if self.options.gan == "bce":
            return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, 1.0 if real else 0.0))
        return ((logits - (1.0 if real else 0.0)) ** 2).mean()

    def _real(self, net_input):
        p, w, _ = unpack(net_input)
        full = (w >= MIN_SCORE).all(1)
        return p[full]

    def _disc_step(self, model, batch, step):
        if self._fake is None or self.options.w_adv <= 0:
            return
        real = self._real(batch["net_input"])
        if len(real) < 2:
            return
        self.disc.train()
        for q in self.disc.parameters():
            q.requires_grad_(True)
        loss = 0.5 * (self._gan(self.disc(real), True) + self._gan(self.disc(self._fake), False))
        self.disc_opt.zero_grad(set_to_none=True)
        loss.backward()
        self.disc_opt.step()
        self._d_loss = loss.detach()

    def optimisers(self) -> list:
        return [self._disc_step]

    # --- lifter losses ---------------------------------------------------------------------------------

    def _start_terms(self, model, net, Q, log_m):
        """Terms that keep a fine-tuned lifter near its start: (anchor, orient, scale_anchor, start shapes Qa)
        (zeros and None when no option asks for the start model)."""
        o = self.options
        zero = Q.new_zeros(())
        if not (o.w_anchor > 0 or o.w_orient > 0 or o.w_scale_anchor > 0 or o.axis == 2):
            return zero, zero, zero, None
        with torch.no_grad():
            Qa, lma = self.frozen_start(model)(net)
        anchor = torch.linalg.norm(Q - Qa, dim=-1).mean()
        u, a = torso_frame(Q, self.torso)
        ua, aa = torso_frame(Qa, self.torso)
        orient = (2.0 - (u * ua).sum(-1) - (a * aa).sum(-1)).mean()
        scale_anchor = (log_metric_size(Q, log_m) - log_metric_size(Qa, lma)).abs().mean()
        return anchor, orient, scale_anchor, Qa

    def losses(self, model, batch, step):
        o = self.options
        net, s, person = batch["net_input"], batch["spread"], batch["person"]
        B = net.shape[0]
        Q, log_m = model(net)
        anchor, orient, scale_anchor, Qa = self._start_terms(model, net, Q, log_m)
        rep = reprojection_loss(Q, net, s)

        axis = None
        if o.axis:                       # azimuth about the person's torso up instead of camera y
            axis = torso_frame((Q if o.axis == 1 else Qa).detach(), self.torso)[0]
        R = view_rotations(B, self.generator, math.radians(o.max_elevation_deg), axis, net.device)
        net2, s2, target2, p_all = rotate_and_view(Q, net, s, R, self.lh, self.rh, o.view_conf)
        if o.detach_view:
            net2 = net2.detach()
        Q2, log_m2 = model(net2)
        cons3d = torch.linalg.norm(Q2 - target2, dim=-1).mean()
        back = torch.einsum("bji,bkj->bki", R, Q2) * (s2 / s)[:, None, None]      # R^T Q2 s' / s
        cycle2d = reprojection_loss(back, net, s)
        back3d = torch.linalg.norm(Q - back.detach(), dim=-1).mean()    # the second lift as a teacher
        scale_cycle = (log_m2[:, 0] - (log_m[:, 0] + torch.log(s2 / s)).detach()).abs().mean()

        if o.w_adv > 0:
            for q in self.disc.parameters():
                q.requires_grad_(False)
            self.disc.eval()
            adv = self._gan(self.disc(p_all), True)
            self._fake = p_all.detach()
        else:
            adv = Q.new_zeros(())

        bone, prior = scale_losses(Q, log_m, person, self.layout)
        sym = symmetry_loss(Q, self.layout)

        ramp = min(1.0, (step + 1) / o.warmup) if o.warmup > 0 else 1.0
        total = (o.w_rep * rep + ramp * (o.w_3d * cons3d + o.w_2d * cycle2d + o.w_adv * adv
                                         + o.w_scale_cycle * scale_cycle)
                 + o.w_anchor * anchor + o.w_orient * orient + o.w_scale_anchor * scale_anchor
                 + ramp * o.w_back3d * back3d + o.w_bone * bone + o.w_prior * prior + o.w_sym * sym)
        out = {"loss": total, "loss_rep": rep, "loss_3d": cons3d, "loss_2d": cycle2d, "loss_adv": adv,
               "loss_scale_cycle": scale_cycle, "loss_anchor": anchor, "loss_orient": orient,
               "loss_scale_anchor": scale_anchor, "loss_back3d": back3d, "loss_bone": bone, "loss_prior": prior,
               "loss_sym": sym}
        if self._d_loss is not None:
            out["loss_disc"] = self._d_loss
        return {k: (v if k == "loss" else v.detach()) for k, v in out.items()}

    # --- checkpointing ---------------------------------------------------------------------------------

    def state_dict(self) -> dict:
        return {"disc": self.disc.state_dict(), "disc_opt": self.disc_opt.state_dict(),
                "generator": self.generator.get_state(),
                "fake": None if self._fake is None else self._fake.cpu(),
                "anchor": self.start_state()}

    def load_state_dict(self, state: dict) -> None:
        if not state:
            return
        self.disc.load_state_dict(state["disc"])
        self.disc_opt.load_state_dict(state["disc_opt"])
        self.generator.set_state(state["generator"].cpu() if hasattr(state["generator"], "cpu")
                                 else state["generator"])
        self.restore_start(state.get("anchor"))
        fake = state.get("fake")
        self._fake = None if fake is None else fake.to(self.device)
