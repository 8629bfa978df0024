"""Training and evaluation data the package makes itself: 3D poses seen by random virtual cameras.

Poses come from two sources, mixed:
- the simulator's procedural motion (`sim.motion.MotionScript`, a chosen subset of activity types, so
  other types can be held out for evaluation), sampled as sequences (person, frame) for losses that need
  one person over time;
- `sample_joint_limit_poses`: independent joint angles drawn uniformly within human joint limits and put
  through the simulator's forward kinematics: poses no script makes (crouches, arms overhead, leaning).

Each pose is seen by its own random camera (distance, height, aim, focal length, image size), projected
with perspective, perturbed like a detector (pixel noise, lower confidence for noisier joints, missed
joints, joints outside the image dropped) and stored as `LiftSamples` with the camera-frame ground truth.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from hpe_ros.anthropometry import PROPORTIONS
from hpe_ros.camera import look_at
from hpe_ros.checks import check_shape
from hpe_ros.sim.motion import MotionScript, forward_kinematics
from hpe_ros.skeleton import COCO17

TRAIN_ACTIVITIES = ("walk", "turn", "reach", "stand")
HELD_OUT_ACTIVITIES = ("squat", "wave")


@dataclass
class LiftSamples:
    """N single-view samples. keypoints2d (N, J, 2) px (NaN = missed), scores (N, J), K (N, 3, 3),
    joints3d (N, J, 3) m in the camera frame, person (N,) sequence id, frame (N,) index within it."""

    keypoints2d: np.ndarray
    scores: np.ndarray
    K: np.ndarray
    joints3d: np.ndarray
    person: np.ndarray
    frame: np.ndarray
    layout: str = "coco17"

    def __len__(self) -> int:
        return len(self.scores)

    def take(self, idx) -> LiftSamples:
        return LiftSamples(self.keypoints2d[idx], self.scores[idx], self.K[idx], self.joints3d[idx],
                           self.person[idx], self.frame[idx], self.layout)

    def save_npz(self, path) -> None:
        """The `hpe-ros eval-lifter` format (plus K per frame, person, frame), written atomically."""
        from hpe_ros.io.atomic import atomic_path

        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                np.savez_compressed(f, keypoints2d=self.keypoints2d, scores=self.scores, K=self.K,
                                    joints3d=self.joints3d, person=self.person, frame=self.frame,
                                    layout=np.array(self.layout))


@dataclass
class CameraSampling:
    """Ranges of the random virtual cameras (metres, pixels)."""

    distance: tuple[float, float] = (2.0, 8.0)        # horizontal distance to the person
    height: tuple[float, float] = (0.4, 3.2)          # camera height above the floor
    aim_offset: float = 0.35                          # aim point jitter around the hips, as a fraction of distance
    sizes: tuple = ((640, 480), (1280, 720), (1920, 1080))
    focal_over_width: tuple[float, float] = (0.55, 1.5)
    noise_px: tuple[float, float] = (0.0, 3.0)        # per-sample pixel noise std at 640 px width (scaled)
    miss_rate: tuple[float, float] = (0.0, 0.08)
    min_visible: int = 8


def sample_joint_limit_poses(n: int, rng: np.random.Generator) -> np.ndarray:
    """(n, 17, 3) COCO-17 world poses, joint angles uniform within limits, random height and facing."""
    height = np.clip(rng.normal(1.72, 0.09, n), 1.5, 2.0)
    body = {k: v * height for k, v in PROPORTIONS.items()}
    body["height"] = height

    def u(lo, hi, shape=(n, 2)):
        return rng.uniform(lo, hi, shape)

    hip = u(-0.45, 1.9)
    # Knees bend further the more the hip flexes (a deep squat), never backwards.
    knee = rng.uniform(0.0, 1.0, (n, 2)) * np.clip(0.4 + 1.2 * np.maximum(hip, 0), 0, 2.4)
    ang = dict(trunk=u(-0.25, 1.1, n), hip=hip, knee=knee, sh_flex=u(-0.7, 3.0), sh_abd=u(0.0, 2.0),
               elbow=u(0.0, 2.4), roll=u(-0.5, 1.8), sway=u(-0.08, 0.08, n))
    return forward_kinematics(body, np.zeros(n), np.zeros(n), rng.uniform(-np.pi, np.pi, n), ang)


def sample_motion_sequences(n_people: int, seconds: float, fps: float, seed: int,
                            activities=TRAIN_ACTIVITIES) -> np.ndarray:
    """(n_people, F, 17, 3) world poses from the procedural motion (people spread over several scripts)."""
    per_script = 4
    out = []
    for k in range(0, n_people, per_script):
        script = MotionScript(n_people=min(per_script, n_people - k), seed=seed + 7919 * k,
                              area=(4.0, 4.0), activities=list(activities))
        out.append(np.stack([script.pose(t) for t in np.arange(0.0, seconds, 1.0 / fps)], axis=1))
    return np.concatenate(out, axis=0)


def random_cameras(anchor: np.ndarray, rng: np.random.Generator, cams: CameraSampling):
    """One random camera per anchor point (N, 3) world -> R (N, 3, 3), t (N, 3), K (N, 3, 3), size (N, 2)."""
    N = len(anchor)
    az = rng.uniform(-np.pi, np.pi, N)
    dist = rng.uniform(*cams.distance, N)
    eye = np.stack([anchor[:, 0] + dist * np.cos(az), anchor[:, 1] + dist * np.sin(az),
                    rng.uniform(*cams.height, N)], -1)
    target = anchor + rng.normal(0.0, cams.aim_offset / 2, (N, 3)) * dist[:, None]
    R, t = look_at(eye, target)
    size = np.asarray(cams.sizes, dtype=np.float64)[rng.integers(0, len(cams.sizes), N)]
    f = rng.uniform(*cams.focal_over_width, N) * size[:, 0]
    K = np.zeros((N, 3, 3))
    K[:, 0, 0] = K[:, 1, 1] = f
    K[:, :2, 2] = size / 2 + rng.normal(0, 0.01, (N, 2)) * size
    K[:, 2, 2] = 1.0
    return R, t, K, size


def observe_single_view(world: np.ndarray, rng: np.random.Generator, cams: CameraSampling | None = None,
                        camera_per: np.ndarray | None = None) -> tuple[np.ndarray, ...]:
    """World poses (N, J, 3) -> (keypoints2d, scores, K, joints3d camera frame, kept (N,) bool).

    cams: default CameraSampling(). camera_per: (N,) index of the camera each sample uses (samples of
    one sequence share a camera); default one camera each. Samples with fewer than `cams.min_visible`
    joints in the image are dropped (kept False).
    """
    cams = CameraSampling() if cams is None else cams
    N, J, _ = world.shape
    camera_per = np.arange(N) if camera_per is None else np.asarray(camera_per)
    n_cam = int(camera_per.max()) + 1 if N else 0
    first = np.full(n_cam, -1)
    first[camera_per[::-1]] = np.arange(N)[::-1]                 # first sample of each camera's group
    anchor = 0.5 * (world[first, 11] + world[first, 12])
    R, t, K, size = random_cameras(anchor, rng, cams)
    R, t, K, size = R[camera_per], t[camera_per], K[camera_per], size[camera_per]
    cam = np.einsum("nij,nkj->nki", R, world) + t[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        px = np.einsum("nij,nkj->nki", K, cam)
        px = px[..., :2] / px[..., 2:3]
    # Detector-like noise: per-sample level, per-joint difficulty; confidence falls with difficulty.
    scale = size[:, 0] / 640.0
    level = rng.uniform(*cams.noise_px, N) * scale
    difficulty = rng.random((N, J))
    sigma = level[:, None] * np.sqrt(0.2 + 1.6 * difficulty)
    px = px + rng.standard_normal((N, J, 2)) * sigma[..., None]
    scores = 1.0 - 0.4 * difficulty
    inside = (cam[..., 2] > 0.2) & np.all((px >= 0) & (px < size[:, None]), axis=-1)
    missed = rng.random((N, J)) < rng.uniform(*cams.miss_rate, N)[:, None]
    seen = inside & ~missed
    px[~seen] = np.nan
    scores = np.where(seen, scores, 0.0)
    kept = (seen.sum(1) >= cams.min_visible) & (cam[..., 2] > 0.2).all(1)
    return px, scores, K, cam, kept


@dataclass
class SyntheticSpec:
    """How much of what: `n_random` joint-limit poses + `n_sequences` motion sequences of `seconds` at `fps`."""

    n_random: int = 20000
    n_sequences: int = 24
    seconds: float = 30.0
    fps: float = 10.0
    activities: tuple = TRAIN_ACTIVITIES
    cameras: CameraSampling = field(default_factory=CameraSampling)


def make_samples(spec: SyntheticSpec, seed: int = 0) -> LiftSamples:
    """Synthesise a data set (deterministic from seed). Sequences keep one camera per person."""
    rng = np.random.default_rng(seed)
    parts = []
    if spec.n_sequences:
        seq = sample_motion_sequences(spec.n_sequences, spec.seconds, spec.fps, seed, spec.activities)
        P, F = seq.shape[:2]
        person = np.repeat(np.arange(P), F)
        frame = np.tile(np.arange(F), P)
        parts.append((seq.reshape(P * F, 17, 3), person, frame, person))
    if spec.n_random:
        world = sample_joint_limit_poses(spec.n_random, rng)
        ids = np.arange(spec.n_random) + (spec.n_sequences or 0)
        parts.append((world, ids, np.zeros(spec.n_random, dtype=np.int64), ids))
    world = np.concatenate([p[0] for p in parts])
    person = np.concatenate([p[1] for p in parts])
    frame = np.concatenate([p[2] for p in parts])
    camera_per = np.concatenate([p[3] for p in parts])
    px, sc, K, cam, kept = observe_single_view(world, rng, spec.cameras, camera_per=camera_per)
    return LiftSamples(px[kept], sc[kept], K[kept], cam[kept], person[kept], frame[kept], COCO17.name)


def load_npz(path) -> LiftSamples:
    """Read the `eval-lifter` npz: keypoints2d (F, J, 2) px, optional scores (F, J), K (3, 3) or (F, 3, 3),
    joints3d (F, J, 3) m camera frame, layout. Raises ValueError naming what is wrong."""
    from hpe_ros.skeleton import get_layout

    with np.load(path, allow_pickle=False) as z:
        missing = [k for k in ("keypoints2d", "K", "joints3d") if k not in z.files]
        if missing:
            raise ValueError(f"{path}: missing array(s) {missing}; has {sorted(z.files)}")
        kp = np.asarray(z["keypoints2d"], dtype=np.float64)
        j3 = np.asarray(z["joints3d"], dtype=np.float64)
        K = np.asarray(z["K"], dtype=np.float64)
        layout = str(z["layout"]) if "layout" in z.files else "coco17"
        scores = np.asarray(z["scores"], dtype=np.float64) if "scores" in z.files else \
            np.isfinite(kp).all(-1).astype(np.float64)
        person = np.asarray(z["person"]) if "person" in z.files else np.zeros(len(kp), dtype=np.int64)
        frame = np.asarray(z["frame"]) if "frame" in z.files else np.arange(len(kp))
    J = get_layout(layout).num_joints
    dims = check_shape(f"{path}: {layout} keypoints2d", kp, ("F", J, 2))
    check_shape(f"{path}: joints3d", j3, ("F", J, 3), dims)
    check_shape(f"{path}: scores", scores, ("F", J), dims)
    if K.shape == (3, 3):
        K = np.broadcast_to(K, (len(kp), 3, 3)).copy()
    check_shape(f"{path}: K (one for all frames or one per frame)", K, ("F", 3, 3), dims)
    return LiftSamples(kp, scores, K, j3, person, frame, layout)
