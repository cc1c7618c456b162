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
from dreamtune.diffusion import noise as diffusion
from dreamtune.models.discriminator import FeatureDiscriminator
from dreamtune.objectives.augment import diff_augment
from dreamtune.objectives.base import LossOutput
from dreamtune.objectives.denoising import DenoisingObjective
from dreamtune.objectives.guided import decode


@dataclass(frozen=True)
class AdversarialSettings:
    weight: float = 0.1
    warmup_steps: int = 0
    lr: float = 1e-4
    r1_gamma: float = 1.0
    instance_noise: float = 0.1
    augment: tuple[str, ...] = ("translation", "color", "cutout")
    seed: int = 0


class AdversarialObjective:
    def __init__(self, base, denoising: DenoisingObjective, discriminator: FeatureDiscriminator, settings: AdversarialSettings):
        self.base, self.denoising, self.discriminator, self.settings = base, denoising, discriminator, settings

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
        forward = self.denoising.last_pass
        components = self.denoising.components
        timesteps = forward["timesteps"].to(forward["noisy"].device)
        clean = diffusion.predicted_clean(components.prediction_type, components.noise_scheduler, forward["noisy"].float(),
                                          forward["prediction"].float(), timesteps)
        fake = decode(components, clean)
        with torch.no_grad():
            real = decode(components, forward["latents"].float())
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


def build_adversarial(config, components, denoising: DenoisingObjective, base) -> AdversarialObjective:
    from dreamtune.evaluation.features import DEFAULT_CLIP, load_clip
    from dreamtune.models.loading import model_path

    a = config.adversarial
    own = model_path(config.model.pretrained) / "clip"
    source = a.features or (str(own) if (own / "config.json").is_file() else DEFAULT_CLIP)
    features = load_clip(source, name=source).to(next(components.unet.parameters()).device)
    discriminator = FeatureDiscriminator(features, tuple(a.layers) or None, a.hidden).to(next(components.unet.parameters()).device)
    unknown = set(a.augment) - {"translation", "color", "cutout"}
    if unknown:
        from dreamtune.errors import UserError
        raise UserError(f"adversarial.augment has unknown policies {sorted(unknown)}; choose from translation, color, cutout.")
    settings = AdversarialSettings(a.weight, a.warmup_steps, a.lr, a.r1_gamma, a.instance_noise, tuple(a.augment), config.train.seed)
    return AdversarialObjective(base, denoising, discriminator, settings)
