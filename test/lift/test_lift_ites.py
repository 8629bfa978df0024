"""ITES (invariant teacher, equivariant student): 2D-only training of the lifter on small synthetic data.

Numbers measured when the tests were written (1 CPU thread) are in each test's docstring; the asserted
margins are below them.
"""
import pytest

torch = pytest.importorskip("torch")

from hpe_ros.lift.methods import METHODS, make_method  # noqa: E402
from hpe_ros.lift.methods.common import np_rng_generator, random_rotations, rotate_and_view  # noqa: E402
from hpe_ros.lift.methods.ites import ItesMethod, rotation_6d  # noqa: E402
from hpe_ros.lift.models import build_lifter  # noqa: E402
from hpe_ros.lift.synthetic import HELD_OUT_ACTIVITIES, TRAIN_ACTIVITIES, CameraSampling, SyntheticSpec, make_samples  # noqa: E402
from hpe_ros.lift.train import TrainConfig, evaluate, prepare_data, train  # noqa: E402
from hpe_ros.skeleton import get_layout  # noqa: E402

torch.set_num_threads(1)
LAYOUT = get_layout("coco17")


def _ites_config(**kw):
    base = dict(method="ites", arch="gcn", width=48, blocks=2, dropout=0.0, steps=600, batch=128, lr=1e-3,
                seed=0, device="cpu", eval_every=10 ** 6, checkpoint_every=10 ** 6,
                options={"teacher_steps": 250})
    base.update(kw)
    return TrainConfig(**base)


@pytest.fixture(scope="module")
def trained_from_scratch(tmp_path_factory):
    train_set = make_samples(SyntheticSpec(n_random=1500, n_sequences=8, seconds=6, fps=10), seed=1)
    val = make_samples(SyntheticSpec(n_random=300, n_sequences=4, seconds=4, fps=10), seed=2)
    data = prepare_data(train_set, with_targets=False)
    cfg = _ites_config()
    torch.manual_seed(cfg.seed)
    before = evaluate(build_lifter(cfg.lifter_config()).eval(), val)
    out = tmp_path_factory.mktemp("ites_scratch")
    result = train(cfg, data, val=None, out_dir=out, progress=False)
    after = evaluate(result.model, val)
    return dict(cfg=cfg, result=result, before=before, after=after, val=val, out=out)


def test_registered_and_rotation_6d():
    assert METHODS["ites"] is ItesMethod
    R = rotation_6d(torch.randn(8, 6))
    assert torch.allclose(R @ R.transpose(1, 2), torch.eye(3).expand(8, 3, 3), atol=1e-5)
    assert torch.allclose(torch.linalg.det(R), torch.ones(8), atol=1e-5)
    method = make_method(_ites_config(), LAYOUT, torch.device("cpu"))
    assert not method.needs_targets


def test_options_resolve_automatic_choices_and_reject_typos():
    cpu = torch.device("cpu")
    scratch = make_method(_ites_config(options={}), LAYOUT, cpu)
    scratch_choices = (scratch.teacher_steps, scratch.pca_init, scratch.anchor_weight, scratch.distill_axes)
    assert scratch_choices == (180, False, 0.0, "xyz")
    tuned = make_method(_ites_config(init="x.pt", options={"keep_weight": 1}), LAYOUT, cpu)
    assert (tuned.teacher_steps, tuned.pca_init, tuned.anchor_weight, tuned.distill_axes) == (120, True, 1.0, "z")
    assert tuned.anchor_always and tuned.keep_scale_weight == 0.5
    with pytest.raises(ValueError, match=r"unknown ites option\(s\) \['teacher_step'\]; valid: .*teacher_steps"):
        make_method(_ites_config(options={"teacher_step": 10}), LAYOUT, cpu)
    with pytest.raises(ValueError, match="ites option distill_axes must be one of xyz, z"):
        make_method(_ites_config(options={"distill_axes": "y"}), LAYOUT, cpu)
    with pytest.raises(ValueError, match="ites option teacher_steps must be an integer"):
        make_method(_ites_config(options={"teacher_steps": 2.5}), LAYOUT, cpu)


def test_from_scratch_loss_falls_and_pmpjpe_improves(trained_from_scratch):
    """(a) Random init, 2D only, GCN student. Baseline: the untrained residual model, whose answer is already
    the flat pose (x, y = the input, depth ~ 0): P-MPJPE of a flat pose, not of noise. Measured (1 CPU
    thread): 213.8 -> 169.8 mm (1.26x) in this 600-step run; asserted >= 1.15x."""
    hist = [h for h in trained_from_scratch["result"].history if "loss_distill" in h]
    assert hist[-1]["loss"] < 0.85 * hist[0]["loss"]
    teacher = [h for h in trained_from_scratch["result"].history if "loss_t_total" in h]
    assert teacher[-1]["loss_t_total"] < 0.8 * teacher[0]["loss_t_total"]
    before, after = trained_from_scratch["before"]["pmpjpe_mm"], trained_from_scratch["after"]["pmpjpe_mm"]
    print(f"ites from scratch: P-MPJPE {before:.1f} -> {after:.1f} mm")
    assert after < before / 1.15


def _canonical_agreement(teacher, net, spread, seed=5):
    """Mean distance between the canonical pose of a view and of a rotated view (in the first view's
    units), relative to the mean distance between canonical poses of different samples."""
    with torch.no_grad():
        teacher.eval()
        X, S, _, _ = teacher(net)
        R = random_rotations(len(net), np_rng_generator(seed))
        net2, s2, _, _ = rotate_and_view(X, net, spread, R, LAYOUT.index("left_hip"), LAYOUT.index("right_hip"))
        _, S2, _, _ = teacher(net2)
        same = torch.linalg.norm(S2 * (s2 / spread)[:, None, None] - S, dim=-1).mean()
        other = torch.linalg.norm(S.roll(1, 0) - S, dim=-1).mean()
    return float(same / other)


def test_teacher_becomes_rotation_invariant(trained_from_scratch):
    """(c) The teacher's canonical pose of a view and of the same pose seen rotated agree (relative to how
    different poses of different samples are) better after training than at init."""
    cfg = trained_from_scratch["cfg"]
    data = prepare_data(trained_from_scratch["val"], with_targets=False)
    fresh = ItesMethod(cfg, LAYOUT, torch.device("cpu"))
    at_init = _canonical_agreement(fresh.teacher, data.net_input, data.spread)
    state = torch.load(trained_from_scratch["out"] / "checkpoint.pt", weights_only=False)
    trained = ItesMethod(cfg, LAYOUT, torch.device("cpu"))
    trained.load_state_dict(state["method"])
    after = _canonical_agreement(trained.teacher, data.net_input, data.spread)
    print(f"teacher canonical disagreement / pose spread: {at_init:.3f} -> {after:.3f}")
    assert after < at_init / 4


def test_same_seed_same_weights(tmp_path):
    """(d) Two runs with one seed give identical lifter and teacher weights."""
    samples = make_samples(SyntheticSpec(n_random=300, n_sequences=0), seed=3)
    data = prepare_data(samples, with_targets=False)
    runs = []
    for i in range(2):
        cfg = _ites_config(arch="mlp", width=64, steps=16, batch=64, options={"teacher_steps": 8})
        res = train(cfg, data, progress=False, out_dir=tmp_path / f"run{i}")
        teacher = torch.load(tmp_path / f"run{i}" / "checkpoint.pt", weights_only=False)["method"]["teacher"]
        runs.append((res.model.state_dict(), teacher))
    for a, b in zip(runs[0], runs[1]):
        for k in a:
            assert torch.equal(a[k], b[k]), k


def test_finetune_on_new_rig_improves(tmp_path):
    """(b) A short supervised run (default cameras) fine-tuned with ITES on 2D from a higher, closer rig with
    held-out activities improves P-MPJPE on a held-out set from that rig, and the teacher is what does it:
    the same run without distillation (distill_weight 0: reprojection, symmetry, bone constancy and the pull
    to the start only) gains less. Measured (1 CPU thread): P-MPJPE 144.2 -> 139.9 mm (no distillation
    141.4), MPJPE 242.4 -> 235.3 mm (no distillation 237.9). Before this formulation (no pull to the start,
    teacher free after its own phase) the same run got worse (144.2 -> 149.8)."""
    sup = make_samples(SyntheticSpec(n_random=1500, n_sequences=4, seconds=5, fps=10), seed=21)
    train(TrainConfig(method="supervised", arch="mlp", width=128, steps=300, batch=128, device="cpu",
                      eval_every=10 ** 6, checkpoint_every=10 ** 6), prepare_data(sup), out_dir=tmp_path / "sup",
          progress=False)
    cams = CameraSampling(height=(3.0, 4.5), distance=(2.5, 5.0))
    acts = TRAIN_ACTIVITIES + HELD_OUT_ACTIVITIES
    new = make_samples(SyntheticSpec(n_random=1500, n_sequences=8, seconds=5, fps=10, activities=acts,
                                     cameras=cams), seed=22)
    val = make_samples(SyntheticSpec(n_random=300, n_sequences=4, seconds=5, fps=10, activities=acts,
                                     cameras=cams), seed=23)
    data = prepare_data(new, with_targets=False)
    runs = {}
    for name, extra in (("ites", {}), ("no_distill", {"distill_weight": 0.0})):
        cfg = TrainConfig(method="ites", init=str(tmp_path / "sup" / "lifter.pt"), lr=1e-3, lr_final=1e-4,
                          steps=300, batch=128, device="cpu", eval_every=10 ** 6, checkpoint_every=10 ** 6,
                          options={"keep_weight": 1.0, **extra})
        hist = [h for h in train(cfg, data, val=val, progress=False).history if "val_pmpjpe_mm" in h]
        runs[name] = (hist[0], hist[-1])
    before, after = runs["ites"]
    control = runs["no_distill"][1]
    print(f"ites fine-tune on new rig: P-MPJPE {before['val_pmpjpe_mm']:.1f} -> {after['val_pmpjpe_mm']:.1f} mm "
          f"(no distillation {control['val_pmpjpe_mm']:.1f}), MPJPE {before['val_mpjpe_mm']:.1f} -> "
          f"{after['val_mpjpe_mm']:.1f} mm (no distillation {control['val_mpjpe_mm']:.1f})")
    assert after["val_pmpjpe_mm"] < 0.985 * before["val_pmpjpe_mm"]
    assert after["val_mpjpe_mm"] < 0.99 * before["val_mpjpe_mm"]
    assert after["val_pmpjpe_mm"] < control["val_pmpjpe_mm"] - 0.5
