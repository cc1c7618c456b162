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

Two discriminators (``adversarial.discriminator``):
  clip      a frozen CLIP image tower on decoded pixels (models/discriminator.FeatureDiscriminator)
  denoiser  LADD's: a frozen copy of the denoiser on re-noised *latents* — x̂0 and the real latents
            noised to one level t̂ ~ U(0, renoise_max · T), the batch's text as its condition, heads
            on its down and mid blocks, conditioned on t̂ and on the timestep t that x̂0 came from (so
            it can learn how sharp x̂0 should be at t) (models/discriminator.DenoiserFeatureDiscriminator);
            no decode, no augmentation (the re-noising is the augmentation)

The two losses reach only their own parameters: D's loss sees x̂0 detached; G's term is built
while the heads have requires_grad off, so the loop's single backward stays correct. With
``generator_every: k`` the generator's term is applied on every k-th step only, while the
discriminator learns on every step (k discriminator steps per generator step).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Mapping

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from dreamtune.data.augment import sample_generator
from dreamtune.models.components import Components
from dreamtune.objectives.augment import diff_augment
from dreamtune.objectives.base import LossOutput, Objective
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
    renoise_max: float
    generator_every: int
    min_timestep: int


class AdversarialObjective(Objective):
    """``base``: the denoising (or prior-preservation) objective whose output carries the pass
    (``passes["denoising"]``) this objective judges."""

    def __init__(self, base, components: Components, discriminator, settings: AdversarialSettings):
        self.base, self.components, self.discriminator, self.settings = base, components, discriminator, settings

    def trainable_modules(self) -> dict[str, nn.Module]:
        return {**self.base.trainable_modules(), "discriminator": self.discriminator.trainable()}

    def learning_rates(self) -> dict[str, float]:
        return {"discriminator": self.settings.lr}

    def checkpoint_extras(self) -> dict:
        return self.base.checkpoint_extras()  # the judged objective's own state (a distillation's pool)

    def _judged(self, images, generator, sigma):
        noisy = images + sigma * torch.randn(images.shape, generator=generator).to(images.device)
        return diff_augment(noisy, generator, self.settings.augment) if self.settings.augment else noisy

    def _pixel_game(self, forward, generator, timesteps):
        """(real logits, fake logits for D, fake logits for G, R1, extra metrics) on decoded pixels."""
        s, components = self.settings, self.components
        fake = decode(components, forward.predicted_clean(components))
        with torch.no_grad():
            real = decode(components, forward.latents.float())
        sigma = float(torch.rand((), generator=generator)) * s.instance_noise
        fake_in, real_in = self._judged(fake, generator, sigma), self._judged(real, generator, sigma)
        real_in = real_in.detach().requires_grad_(True)
        # R1 differentiates a gradient: the math attention kernel has the double backward fused ones lack
        with sdpa_kernel(SDPBackend.MATH):
            real_logits = self.discriminator(real_in, timesteps)
        fake_logits = self.discriminator(fake_in.detach(), timesteps)
        r1 = self._r1(real_logits, real_in)
        with self._heads_frozen():
            g_logits = self.discriminator(fake_in, timesteps)
        return real_logits, fake_logits, g_logits, r1, {"adv/sigma": sigma}

    def _latent_game(self, forward, generator):
        """The same on re-noised latents through the frozen denoiser's features (LADD)."""
        s, components, d = self.settings, self.components, self.discriminator
        fake = forward.predicted_clean(components)
        real = forward.latents.float()
        device = fake.device
        top = max(1, int(s.renoise_max * components.noise_scheduler.config.num_train_timesteps))
        levels = torch.randint(0, top, (fake.shape[0],), generator=generator).to(device)
        noise = lambda: torch.randn(fake.shape, generator=generator).to(device)
        fake_noisy = components.noise.add_noise(fake, noise(), levels)
        real_noisy = components.noise.add_noise(real, noise(), levels)
        conditioning = _detached(forward.conditioning)
        source = forward.timesteps.to(device)
        if s.r1_gamma:
            real_noisy = real_noisy.requires_grad_(True)
            with sdpa_kernel(SDPBackend.MATH):
                real_logits = d.judge(d.features(real_noisy, levels, conditioning), levels, source)
        else:
            with torch.no_grad():
                real_features = d.features(real_noisy, levels, conditioning)
            real_logits = d.judge(real_features, levels, source)
        fake_features = d.features(fake_noisy, levels, conditioning)
        fake_logits = d.judge([f.detach() for f in fake_features], levels, source)
        r1 = self._r1(real_logits, real_noisy) if s.r1_gamma else real_logits.new_zeros(())
        with self._heads_frozen():
            g_logits = d.judge(fake_features, levels, source)
        return real_logits, fake_logits, g_logits, r1, {"adv/renoise_level": float(levels.float().mean())}

    def _r1(self, real_logits, real_in):
        (gradient,) = torch.autograd.grad(real_logits.sum(), real_in, create_graph=True)
        return self.settings.r1_gamma / 2 * gradient.pow(2).flatten(1).sum(1).mean()

    @contextmanager
    def _heads_frozen(self):
        heads = self.discriminator.trainable()
        heads.requires_grad_(False)
        try:
            yield
        finally:
            heads.requires_grad_(True)

    def __call__(self, batch: Mapping, step: int) -> LossOutput:
        s = self.settings
        output = self.base(batch, step)
        forward = output.passes["denoising"]
        generator = sample_generator(s.seed, step, 0, stream=21)
        if getattr(self.discriminator, "space", "pixels") == "latents":
            real_logits, fake_logits, g_logits, r1, extra = self._latent_game(forward, generator)
        else:
            real_logits, fake_logits, g_logits, r1, extra = self._pixel_game(
                forward, generator, forward.timesteps.to(forward.noisy.device)
            )
        judged = (
            (forward.timesteps >= s.min_timestep).float().to(real_logits.device)
        )  # x̂0 from small t is the real image itself
        count = judged.sum().clamp(min=1)
        masked = lambda values: (values * judged).sum() / count
        d_loss = masked(F.relu(1 - real_logits)) + masked(F.relu(1 + fake_logits))
        g_loss = -masked(g_logits)
        ramp = min(1.0, (step + 1) / s.warmup_steps) if s.warmup_steps else 1.0
        weight = s.weight * ramp if step % s.generator_every == 0 else 0.0
        losses = dict(output.losses)
        losses["model"] = losses["model"] + weight * g_loss
        losses["discriminator"] = d_loss + r1
        metrics = {
            **output.metrics,
            "adv/d_loss": float(d_loss.detach()),
            "adv/g_loss": float(g_loss.detach()),
            "adv/r1": float(r1.detach()),
            "adv/weight": weight,
            **extra,
        }
        if judged.any():  # no accuracy on a step where nothing was judged (every t below min_timestep)
            metrics["adv/d_accuracy"] = float(masked((real_logits > 0).float()) + masked((fake_logits < 0).float())) / 2
        return LossOutput(losses, metrics)


def _detached(value):
    """A conditioning dict (possibly nested, as SDXL's added_cond_kwargs) with every tensor detached."""
    if isinstance(value, dict):
        return {key: _detached(item) for key, item in value.items()}
    return value.detach() if isinstance(value, torch.Tensor) else value
