"""The objective interface of the one training loop (see DESIGN.md, "The one idea").

An objective computes named losses from a batch; each name is one optimizer. Its losses'
gradients must reach only that optimizer's parameters (an adversarial objective detaches
accordingly), so the loop can sum them and call backward once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Protocol

from torch import Tensor, nn


@dataclass
class LossOutput:
    losses: dict[str, Tensor]  # one scalar per optimizer name
    metrics: dict[str, float] = field(default_factory=dict)
    passes: dict[str, object] = field(default_factory=dict)  # forward passes it ran, for wrappers that judge them


class Objective(Protocol):
    def trainable_modules(self) -> dict[str, nn.Module]:
        """Optimizer name -> module whose ``requires_grad`` parameters that optimizer steps."""

    def __call__(self, batch: Mapping[str, Tensor], step: int) -> LossOutput:
        """Losses for one micro-batch of training step ``step``."""
