"""What every training method provides to `hpe_ros.lift.train.train`, and how it reads its options."""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch

from hpe_ros.checks import config_from_mapping


@dataclass
class NoOptions:
    """A method without options."""


class Method:
    """Base: no extra modules, no state. Subclasses set `needs_targets`, `Options` and implement `losses`.

    `Options` is a dataclass; `TrainConfig.options` (a mapping, e.g. from `--option KEY=VALUE`) fills it, and an
    unknown key or a value of the wrong kind fails with one line naming the method and its valid options.
    """

    needs_targets = False
    Options: type = NoOptions

    def __init__(self, config, layout, device):
        self.config, self.layout, self.device = config, layout, device
        self.options = config_from_mapping(self.Options, config.options or {}, owner=config.method)
        self._start = None            # frozen copy of the lifter a fine-tuning run started from
        self._pending_start = None    # its weights from a resumed checkpoint, until the copy is made

    def frozen_start(self, model):
        """The lifter as it was when first asked for (the fine-tuning start), frozen. A resumed run gets the
        saved weights back: methods put `start_state()` into their state and hand it to `restore_start`."""
        if self._start is None:
            self._start = copy.deepcopy(model).eval().requires_grad_(False)
            if self._pending_start is not None:
                self._start.load_state_dict(self._pending_start)
        return self._start

    def start_state(self):
        return None if self._start is None else self._start.state_dict()

    def restore_start(self, state) -> None:
        self._pending_start = state

    def parameters(self, model) -> list:
        """Extra parameters optimised together with the lifter (none by default)."""
        return []

    def optimisers(self) -> list:
        """Callables (model, batch, step) run before each lifter step: separate updates (a discriminator)."""
        return []

    def losses(self, model, batch: dict, step: int) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


def check_choice(owner: str, name: str, value, choices) -> None:
    """One line for an option outside its choices."""
    if value not in choices:
        raise ValueError(f"{owner} option {name} must be one of {', '.join(map(str, choices))}, got {value!r}")
