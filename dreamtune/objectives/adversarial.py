"""Adversarial fine-tuning for personalization, composable with any method and with prior
preservation: it wraps the denoising (or prior-preservation) objective and adds a GAN game on the
model's clean-image estimate x̂0.

  x̂0   from the UNet's ε/v prediction at the sampled timestep t, decoded by the (frozen) VAE
  real  the same batch's images (subject photos; class images under prior preservation), decoded
        from their latents too, so neither side can be told apart by VAE artefacts
  both  re-noised with one shared pixel noise level σ ~ U(0, instance_noise) (Diffusion-GAN's
        instance noise) and DiffAugment-ed (only ~5 real images), judged with t as a condition
  D     hinge loss + R1 penalty (γ/2 · E‖∇D(real)‖²) — its own optimizer and learning rate
  G     weight · (-mean D(x̂0)), the weight ramped in over warmup_steps, added to the denoising loss

The two losses reach only their own parameters: D's loss sees x̂0 detached; G's term is built
while the heads have requires_grad off, so the loop's single backward stays correct.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from dreamtune.data.augment import sample_generator
from dreamtune.models.components import Components
from dreamtune.models.discriminator import FeatureDiscriminator
from dreamtune.objectives.augment import diff_augment
from dreamtune.objectives.base import LossOutput
from dreamtune.objectives.guided import decode

AUGMENT_POLICIES = ("translation", "color", "cutout")


@dataclass(frozen=True)
class AdversarialSettings:
    """Built by keyword from the ``adversarial`` config section (plus train.seed): no defaults of its own."""
    weight: float
    warmup_steps: int
    lr: float
    r1_gamma: float
    instance_noise: float
    augment: tuple[str, ...]
    seed: int


class AdversarialObjective:
    """``base``: the denoising (or prior-preservation) objective whose output carries the pass
    (``passes["denoising"]``) this objective judges."""

    def __init__(self, base, components: Components, discriminator: FeatureDiscriminator, settings: AdversarialSettings):
        self.base, self.components, self.discriminator, self.settings = base, components, discriminator, settings

    def trainable_modules(self) -> dict[str, nn.Module]:
        return {**self.base.trainable_modules(), "discriminator": self.discriminator.trainable()}

    def learning_rates(self) -> dict[str, float]:
        return {"discriminator": self.settings.lr}

    def _judged(self, images, generator, sigma):
        noisy = images + sigma * torch.randn(images.shape, generator=generator).to(images.device)
        return diff_augment(noisy, generator, self.settings.augment) if self.settings.augment else noisy

    def __call__(self, batch: Mapping, step: int) -> LossOutput:
        s = self.settings
        output = self.base(batch, step)
        forward = output.passes["denoising"]
        components = self.components
        timesteps = forward.timesteps.to(forward.noisy.device)
        fake = decode(components, forward.predicted_clean(components))
        with torch.no_grad():
            real = decode(components, forward.latents.float())
        generator = sample_generator(s.seed, step, 0, stream=21)
        sigma = float(torch.rand((), generator=generator)) * s.instance_noise
        fake_in, real_in = self._judged(fake, generator, sigma), self._judged(real, generator, sigma)

        real_in = real_in.detach().requires_grad_(True)
        # R1 differentiates a gradient: the math attention kernel has the double backward fused ones lack
        with sdpa_kernel(SDPBackend.MATH):
            real_logits = self.discriminator(real_in, timesteps)
        fake_logits = self.discriminator(fake_in.detach(), timesteps)
        d_loss = F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean()
        (gradient,) = torch.autograd.grad(real_logits.sum(), real_in, create_graph=True)
        r1 = s.r1_gamma / 2 * gradient.pow(2).flatten(1).sum(1).mean()

        heads = self.discriminator.trainable()
        heads.requires_grad_(False)
        try:
            g_loss = -self.discriminator(fake_in, timesteps).mean()
        finally:
            heads.requires_grad_(True)
        ramp = min(1.0, (step + 1) / s.warmup_steps) if s.warmup_steps else 1.0
        losses = dict(output.losses)
        losses["model"] = losses["model"] + s.weight * ramp * g_loss
        losses["discriminator"] = d_loss + r1
        accuracy = ((real_logits > 0).float().mean() + (fake_logits < 0).float().mean()) / 2
        metrics = {**output.metrics, "adv/d_loss": float(d_loss.detach()), "adv/g_loss": float(g_loss.detach()),
                   "adv/r1": float(r1.detach()), "adv/d_accuracy": float(accuracy), "adv/weight": s.weight * ramp,
                   "adv/sigma": sigma}
        return LossOutput(losses, metrics)
