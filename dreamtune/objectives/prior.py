"""Prior preservation (DreamBooth, Ruiz et al. 2023, eq. 2) as a wrapper of a denoising objective.

The batch holds subject images and class images (``is_prior``); the loss is
mean(subject) + prior_loss_weight * mean(class). It wraps; it is not an ``if`` in the loop.
"""

from __future__ import annotations

from typing import Mapping

from torch import Tensor, nn

from dreamtune.objectives.base import LossOutput, Objective
from dreamtune.objectives.denoising import DenoisingObjective


class PriorPreservation(Objective):
    def __init__(self, inner: DenoisingObjective, prior_loss_weight: float):
        self.inner = inner
        self.prior_loss_weight = prior_loss_weight

    def trainable_modules(self) -> dict[str, nn.Module]:
        return self.inner.trainable_modules()

    def __call__(self, batch: Mapping[str, Tensor], step: int) -> LossOutput:
        per_sample, forward = self.inner.per_sample_loss(batch, step)
        is_prior = batch["is_prior"].to(per_sample.device)
        instance_loss = per_sample[~is_prior].mean()
        prior_loss = per_sample[is_prior].mean()
        loss = instance_loss + self.prior_loss_weight * prior_loss
        return LossOutput(
            {"model": loss},
            {"loss": loss.item(), "instance_loss": instance_loss.item(), "prior_loss": prior_loss.item()},
            passes={"denoising": forward},
        )
