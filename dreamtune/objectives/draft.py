"""Differentiable reward fine-tuning: DRaFT-K (Clark et al. 2024, "Directly Fine-Tuning
Diffusion Models on Differentiable Rewards"; AlignProp, Prabhudesai et al. 2023, is the same
idea). Sample deterministically (DDIM η = 0, or Euler for flow models); the first T-K steps run without gradients, the last K steps,
the VAE decoder and the reward run with them (each denoiser call gradient-checkpointed, so memory
grows with K only through the latents); the loss is -mean(reward), plus with ``kl_weight`` DPOK's leash to
the starting weights on the trained steps."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from dreamtune.models.components import Components
from dreamtune.objectives.base import LossOutput, Objective
from dreamtune.objectives.guided import condition, decode, guided_prediction, initial_latents
from dreamtune.objectives.starting_weights import StartingWeights, needs_reference, set_floors


@dataclass(frozen=True)
class DraftSettings:
    sample_steps: int
    guidance_scale: float
    truncation_steps: int
    resolution: int
    kl_weight: float  # + weight x mean squared difference of the trained steps' predictions from the start's
    floor_samples: int  # a reward with floors: images per prompt from the starting weights, before step 1
    prompts: tuple[str, ...]  # the run's reward prompts (what those images show)


class DraftObjective(Objective):
    def __init__(self, components: Components, trainable: dict[str, nn.Module], rewards, settings: DraftSettings):
        if not rewards.differentiable:
            raise ValueError(f"DRaFT needs differentiable rewards; {rewards.name} is not")
        self.components, self.trainable, self.rewards, self.settings = components, trainable, rewards, settings
        self.sampler = components.sampler(settings.sample_steps, settings.resolution)
        anchored = needs_reference(rewards) or settings.kl_weight > 0
        self.start = StartingWeights(components.denoiser) if anchored else None
        set_floors(rewards, settings.prompts, settings.floor_samples, self._sample)

    def trainable_modules(self) -> dict[str, nn.Module]:
        return {"model": nn.ModuleDict(self.trainable)}

    def _step(self, latents, t, conditioning, denoiser=None):
        steps = t.reshape(1).repeat(latents.shape[0]).to(latents.device)
        prediction = guided_prediction(
            self.components, latents, steps, conditioning, self.settings.guidance_scale, denoiser
        )
        return self.sampler.step(prediction, steps, latents, 0.0)[0]

    def _trained_step(self, latents, t, conditioning, anchor=None):
        """A step the gradient flows through, and with ``anchor`` (the starting weights' prediction at the same
        state) DPOK's KL bound: the squared difference of the two predictions (the KL of two Gaussian steps of
        one variance, up to the step's constant)."""
        steps = t.reshape(1).repeat(latents.shape[0]).to(latents.device)
        prediction = guided_prediction(self.components, latents, steps, conditioning, self.settings.guidance_scale)
        drift = torch.zeros((), device=latents.device)
        if anchor is not None:
            drift = (prediction - anchor).float().pow(2).mean()
        return self.sampler.step(prediction, steps, latents, 0.0)[0], drift

    @torch.no_grad()
    def _anchor(self, latents, t, conditioning):
        """The starting weights' prediction at ``latents`` (outside the checkpoint: made once, not again in backward)."""
        steps = t.reshape(1).repeat(latents.shape[0]).to(latents.device)
        return guided_prediction(
            self.components, latents, steps, conditioning, self.settings.guidance_scale, self.start
        )

    @torch.no_grad()
    def _sample(self, prompts: list[str], seeds: list[int]):
        """Images of ``prompts`` from ``seeds`` through the weights as they are now (the floors' images)."""
        c = self.components
        conditioning = condition(c, prompts, self.settings.resolution, c.device)
        latents = initial_latents(c, seeds, self.settings.resolution, c.device)
        for t in self.sampler.timesteps:
            latents = self._step(latents, t, conditioning)
        return decode(c, latents)

    def __call__(self, batch: Mapping, step: int) -> LossOutput:
        s, c = self.settings, self.components
        device = c.device
        prompts = list(batch["prompts"])
        conditioning = condition(c, prompts, s.resolution, device)
        latents = initial_latents(c, list(batch["seeds"]), s.resolution, device)
        timesteps = self.sampler.timesteps
        meta = {"seeds": list(batch["seeds"])}
        if self.start is not None:  # the same prompts and seeds through the starting weights
            with torch.no_grad():
                reference = latents
                for t in timesteps:
                    reference = self._step(reference, t, conditioning, self.start)
                meta["reference"] = decode(c, reference)
        cut = len(timesteps) - min(s.truncation_steps, len(timesteps))
        with torch.no_grad():
            for t in timesteps[:cut]:
                latents = self._step(latents, t, conditioning)
        drift = torch.zeros((), device=device)
        for t in timesteps[cut:]:
            anchor = self._anchor(latents, t, conditioning) if s.kl_weight > 0 else None
            latents, step_drift = checkpoint(self._trained_step, latents, t, conditioning, anchor, use_reentrant=False)
            drift = drift + step_drift
        images = decode(c, latents)
        reward, logged = self.rewards.evaluate(images, prompts, meta)
        loss = -reward.mean() + s.kl_weight * drift
        if s.kl_weight > 0:
            logged["kl"] = float(drift.detach())
        return LossOutput({"model": loss}, {"loss": loss.item(), **logged})
