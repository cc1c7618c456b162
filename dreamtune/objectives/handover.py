"""The personalizing loss hands over to a late reward (``rl.handover``): one run that is the
sequential path — a personalization run, then a reward run started from its weights — in one
command. Before the reward's start step the subject's loss trains as configured (with the
adversarial game if on); from it on only the subject's plain loss stays, weighted by
``rl.regularize_weight`` (0: it stops and its photos are no longer drawn), as in a separate reward
run, which has no discriminator. The model's optimizer restarts there too
(``training.callbacks.RestartOptimizer``). Plays both roles in a composed run, like LateStart."""

from __future__ import annotations

from typing import Mapping

from torch import nn

from dreamtune.objectives.base import LossOutput, Objective


class Handover(Objective):
    def __init__(self, objective, source, after, weight: float, start: int):
        """``objective``: the personalizing loss until micro-step ``start``; ``after``: the loss that
        stays from then on (the objective without its adversarial game), times ``weight``."""
        self.objective, self.source, self.after, self.weight, self.start = objective, source, after, weight, start

    def trainable_modules(self) -> dict[str, nn.Module]:
        # a discriminator keeps its optimizer (and checkpoint) after the start
        return self.objective.trainable_modules()

    def learning_rates(self) -> dict[str, float]:
        return self.objective.learning_rates()

    def checkpoint_extras(self) -> dict:
        return self.objective.checkpoint_extras()

    def batch(self, step: int) -> Mapping | None:
        if step >= self.start and not self.weight:
            return None
        return self.source.batch(step)

    def __call__(self, batch: Mapping | None, step: int) -> LossOutput:
        if step < self.start:
            return self.objective(batch, step)
        if batch is None:
            return LossOutput({}, {})
        output = self.after(batch, step)
        return LossOutput({name: self.weight * loss for name, loss in output.losses.items()}, output.metrics)
