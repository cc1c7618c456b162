"""The objective interface of the one training loop (see DESIGN.md, "The one idea").

An objective computes named losses from a batch; each name is one optimizer. Its losses'
gradients must reach only that optimizer's parameters (an adversarial objective detaches
accordingly), so the loop can sum them and call backward once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Mapping, Protocol

from torch import Tensor, nn

if TYPE_CHECKING:
    from dreamtune.objectives.denoising import DenoisingPass


@dataclass
class LossOutput:
    losses: dict[str, Tensor]  # one scalar per optimizer name
    metrics: dict[str, float] = field(default_factory=dict)
    passes: dict[str, "DenoisingPass"] = field(default_factory=dict)  # forward passes it ran, for wrappers that judge


class Objective(Protocol):
    def trainable_modules(self) -> dict[str, nn.Module]:
        """Optimizer name -> module whose ``requires_grad`` parameters that optimizer steps."""

    def __call__(self, batch: Mapping[str, Tensor], step: int) -> LossOutput:
        """Losses for one micro-batch of training step ``step``."""

    def learning_rates(self) -> dict[str, float]:
        """Optimizer name -> its own learning rate (a discriminator's); names not given use train.lr."""
        return {}

    def checkpoint_extras(self) -> dict[str, Stateful]:
        """Name -> state of the objective's own that checkpoints keep and a resume restores (a
        composite names its parts' state by the part's name). Default: none."""
        return {}


class Stateful(Protocol):
    """State an objective keeps besides weights and optimizers (tensors only)."""

    def state_dict(self) -> dict[str, Tensor]: ...

    def load_state_dict(self, values: dict[str, Tensor]) -> None: ...
