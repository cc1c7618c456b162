"""A reward term that joins a run part-way (``rl.start_step``): one run that first personalizes
(denoising + prior, and the adversarial game if on) and then, from that step on, adds the reward.

At the start step the reward's anchors — the "starting weights" whose same-seed images say what a
picture is *meant* to look like (print_proof) and DDPO's KL leash — are taken again from the
weights the run has reached, so the reward protects the personalized look rather than the base
model's. The anchors and whether they were taken are checkpoint state (``state_dict``), so a run
resumed after the start step anchors to the same weights. Plays both roles in a composed run: the
reward's batch source (nothing is sampled before the start) and its objective (no loss before it).
"""

from __future__ import annotations

from typing import Mapping

import torch
from torch import nn

from dreamtune.objectives.base import LossOutput, Objective


class LateStart(Objective):
    def __init__(self, objective, source, start: int):
        """``start``: the first micro-step on which the reward counts."""
        self.objective, self.source, self.start = objective, source, start
        self.anchors = [a for a in (getattr(objective, "start", None), getattr(source, "start", None)) if a is not None]
        self.taken = False

    def trainable_modules(self) -> dict[str, nn.Module]:
        return self.objective.trainable_modules()

    def batch(self, step: int) -> Mapping | None:
        if step < self.start:
            return None
        if not self.taken:
            for anchor in self.anchors:
                anchor.retake()
            self.taken = True
        return self.source.batch(step)

    def __call__(self, batch: Mapping | None, step: int) -> LossOutput:
        if batch is None:
            return LossOutput({}, {})
        return self.objective(batch, step)

    def learning_rates(self) -> dict[str, float]:
        return self.objective.learning_rates()

    def checkpoint_extras(self) -> dict:
        """Its anchors and whether they were taken, under its own name ("" = the name its composite gives it)."""
        return {"": self, **self.objective.checkpoint_extras()}

    def state_dict(self) -> dict[str, torch.Tensor]:
        values = {"taken": torch.tensor(int(self.taken))}
        for index, anchor in enumerate(self.anchors):
            values.update({f"anchor{index}.{name}": value.cpu() for name, value in anchor.values.items()})
        return values

    def load_state_dict(self, values: dict[str, torch.Tensor]) -> None:
        wanted = set(self.state_dict())
        if set(values) != wanted:
            raise ValueError(f"expected {len(wanted)} tensors (the reward's anchors), found {len(values)}")
        self.taken = bool(values["taken"])
        for index, anchor in enumerate(self.anchors):
            for name, value in anchor.values.items():
                value.copy_(values[f"anchor{index}.{name}"])
