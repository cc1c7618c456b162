"""Objectives composed by weighted sum: each part gets its own sub-batch (``batch[name]``), their
losses are added per optimizer name, their metrics prefixed. How a reward objective keeps a
personalized subject: + w x the denoising (and prior) loss on the subject's photos."""

from __future__ import annotations

from typing import Mapping

from torch import nn

from dreamtune.objectives.base import LossOutput, Objective


class WeightedSum(Objective):
    def __init__(self, parts: dict[str, tuple[float, object]]):
        self.parts = parts

    def trainable_modules(self) -> dict[str, nn.Module]:
        modules: dict[str, nn.Module] = {}
        for _, objective in self.parts.values():
            modules.update(objective.trainable_modules())
        return modules

    def learning_rates(self) -> dict[str, float]:
        rates: dict[str, float] = {}
        for _, objective in self.parts.values():
            rates.update(objective.learning_rates())
        return rates

    def checkpoint_extras(self) -> dict:
        """Each part's state, named by the part ("reward", or "reward.NAME" for a part's own names)."""
        return {
            ".".join(filter(None, (name, key))): state
            for name, (_, objective) in self.parts.items()
            for key, state in objective.checkpoint_extras().items()
        }

    def __call__(self, batch: Mapping, step: int) -> LossOutput:
        losses, metrics = {}, {}
        for name, (weight, objective) in self.parts.items():
            output = objective(batch[name], step)
            for key, loss in output.losses.items():
                losses[key] = losses.get(key, 0) + weight * loss
            metrics.update(
                {(k if k.startswith(("reward", "round")) else f"{name}/{k}"): v for k, v in output.metrics.items()}
            )
        metrics["loss"] = float(sum(l.detach() for l in losses.values()))
        return LossOutput(losses, metrics)


class JointSource:
    """One sub-batch per named source, same micro-step."""

    def __init__(self, sources: dict[str, object]):
        self.sources = sources

    def batch(self, step: int) -> dict:
        return {name: source.batch(step) for name, source in self.sources.items()}
