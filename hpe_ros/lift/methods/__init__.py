"""Training methods: each turns a batch into named losses ("loss" is what is minimised).

- supervised: 3D targets per joint: the synthetic rig's ground truth (default weights) or, with data from
  `hpe_ros.lift.recordings`, a real rig's own triangulations (EpipolarPose, Kocabas et al. CVPR 2019).
- cycle: 2D only: lift, rotate randomly, project, lift again; 2D and 3D consistency, a discriminator on the
  projected 2D poses, scale on its own (Chen et al. CVPR 2019; Yu et al. ICCV 2021).
- ites: 2D only: a rotation-invariant teacher over a learned pose dictionary regularises the lifter being
  trained (the equivariant student; Xu et al. AAAI 2021).

Each method's options are a dataclass (`Method.Options`) filled from `TrainConfig.options`.
"""
from __future__ import annotations

from hpe_ros.lift.methods.base import Method
from hpe_ros.lift.methods.cycle import CycleMethod
from hpe_ros.lift.methods.ites import ItesMethod
from hpe_ros.lift.methods.supervised import SupervisedMethod

METHODS: dict[str, type[Method]] = {"supervised": SupervisedMethod, "epipolar": SupervisedMethod,
                                    "cycle": CycleMethod, "ites": ItesMethod}


def make_method(config, layout, device) -> Method:
    """The training method `config.method` with its options from `config.options` (ValueError if unknown)."""
    if config.method not in METHODS:
        raise ValueError(f"unknown training method {config.method!r}; choose one of {sorted(METHODS)}")
    return METHODS[config.method](config, layout, device)
