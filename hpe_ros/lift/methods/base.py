"""What every training method provides to `hpe_ros.lift.train.train`."""
from __future__ import annotations

import torch


class Method:
    """Base: no extra modules, no state. Subclasses set `needs_targets` and implement `losses`."""

    needs_targets = False

    def __init__(self, config, layout, device):
        self.config, self.layout, self.device = config, layout, device
        self.options = dict(config.options or {})

    def option(self, name: str, default):
        return type(default)(self.options.get(name, default))

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
