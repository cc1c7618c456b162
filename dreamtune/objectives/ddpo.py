"""DDPO (Black et al. 2023, "Training Diffusion Models with Reinforcement Learning"), the
importance-sampled PPO variant (DDPO_IS): the denoising chain is an MDP whose actions are sampler
steps with a log-probability (DDIM with η > 0; flow models: Flow-GRPO's SDE step). A batch holds
stored transitions (x_t, x_{t-1}, t, old log-probability,
advantage) from the rollout source (training/rollouts.py); the loss is PPO's clipped surrogate
    L = mean(max(-A·r, -A·clip(r, 1-ε, 1+ε))),  r = p_θ(x_{t-1}|x_t) / p_old(x_{t-1}|x_t).
Works on whatever the method trains (full UNet, LoRA).

``kl_weight`` > 0 adds β·KL(p_θ ‖ p_start) per trained step — the policy's Gaussian step against
the same step of the run's starting weights (exact for two Gaussians of equal variance), as
reward fine-tuning's usual leash (Fan et al. 2023, DPOK) that keeps the model near what it could
do before. The start is a copy of the trainable parameters taken when the objective is built
(LoRA: the adapter's few MB; full weights: one more copy of the UNet)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import torch
from torch import nn

from dreamtune.diffusion.ddim import gaussian_kl, gaussian_log_prob
from dreamtune.models.components import Components
from dreamtune.objectives.base import LossOutput, Objective
from dreamtune.objectives.guided import guided_prediction
from dreamtune.objectives.starting_weights import StartingWeights


@dataclass(frozen=True)
class DDPOSettings:
    sample_steps: int
    guidance_scale: float
    eta: float
    clip_range: float
    adv_clip: float
    kl_weight: float
    resolution: int


class DDPOObjective(Objective):
    def __init__(self, components: Components, trainable: dict[str, nn.Module], settings: DDPOSettings):
        self.components, self.trainable, self.settings = components, trainable, settings
        self.sampler = components.sampler(settings.sample_steps, settings.resolution)
        self.start = StartingWeights(components.denoiser) if settings.kl_weight else None

    def trainable_modules(self) -> dict[str, nn.Module]:
        return {"model": nn.ModuleDict(self.trainable)}

    def __call__(self, batch: Mapping, step: int) -> LossOutput:
        s = self.settings
        device = self.components.device
        latents, following = batch["latents"].to(device), batch["next_latents"].to(device)
        timesteps = batch["timesteps"].to(device)
        prediction = guided_prediction(self.components, latents, timesteps, batch["conditioning"], s.guidance_scale)
        mean, std, _ = self.sampler.mean(prediction, timesteps, latents, s.eta)
        log_prob = gaussian_log_prob(following, mean, std)
        old = batch["log_probs"].to(device)
        advantages = batch["advantages"].to(device).clamp(-s.adv_clip, s.adv_clip)
        ratio = torch.exp(log_prob - old)
        unclipped = -advantages * ratio
        clipped = -advantages * ratio.clamp(1 - s.clip_range, 1 + s.clip_range)
        loss = torch.maximum(unclipped, clipped).mean()
        extra = {}
        if s.kl_weight:
            with torch.no_grad():
                start = guided_prediction(
                    self.components, latents, timesteps, batch["conditioning"], s.guidance_scale, self.start
                )
                start_mean, _, _ = self.sampler.mean(start, timesteps, latents, s.eta)
            kl = gaussian_kl(mean, start_mean, std).mean()
            loss = loss + s.kl_weight * kl
            extra = {"kl_to_start": float(kl.detach())}
        metrics = {
            "loss": float(loss.detach()),
            **extra,
            "approx_kl": float(0.5 * ((log_prob.detach() - old) ** 2).mean()),
            "clipfrac": float(((ratio.detach() - 1).abs() > s.clip_range).float().mean()),
            **batch.get("round_metrics", {}),
        }
        return LossOutput({"model": loss}, metrics)
