"""Sampling pieces shared by the reward objectives and the rollout source: prompt conditioning
with its unconditional twin, the guided prediction (classifier-free guidance, or the embedded
guidance of distilled models), seeded initial latents, and VAE decoding to [0,1] images.
Written out (not the diffusers pipeline) because DDPO needs every intermediate latent and DRaFT
needs gradients through the last steps."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from dreamtune.models.components import Components


@dataclass
class Conditioning:
    cond: dict  # denoiser kwargs for the prompts
    uncond: dict  # denoiser kwargs for the empty prompt, same batch size

    def select(self, index: Tensor) -> "Conditioning":
        pick = lambda kwargs: _map(kwargs, lambda t: t[index])
        return Conditioning(pick(self.cond), pick(self.uncond))


def _map(kwargs: dict, fn) -> dict:
    return {k: _map(v, fn) if isinstance(v, dict) else fn(v) for k, v in kwargs.items()}


def _cat(a: dict, b: dict) -> dict:
    return {k: _cat(v, b[k]) if isinstance(v, dict) else torch.cat([v, b[k]]) for k, v in a.items()}


@torch.no_grad()
def condition(components: Components, prompts: list[str], resolution: int, device) -> Conditioning:
    family = components.family
    sizes = torch.tensor([[resolution, resolution]] * len(prompts))
    cond = family.conditioning(components, components.encode(prompts, device), sizes)
    uncond = family.conditioning(components, components.encode([""] * len(prompts), device), sizes)
    return Conditioning(_map(cond, lambda t: t.detach()), _map(uncond, lambda t: t.detach()))


def guided_prediction(
    components: Components,
    latents: Tensor,
    timesteps: Tensor,
    conditioning: Conditioning,
    guidance_scale: float,
    denoiser=None,
) -> Tensor:
    """The denoiser's output with classifier-free guidance (Ho & Salimans 2022) in one batched
    call; guidance-distilled families get the scale as their guidance input and one call.
    ``denoiser``: a stand-in callable for components.denoiser (e.g. the same network with other weights)."""
    dtype = next(p for p in components.denoiser.parameters()).dtype
    family = components.family
    if not family.uses_classifier_free_guidance(components):
        return family.predict(
            components,
            latents.to(dtype),
            timesteps.to(latents.device),
            conditioning.cond,
            denoiser,
            guidance=guidance_scale,
        ).float()
    both = torch.cat([latents, latents]).to(dtype)
    steps = torch.cat([timesteps, timesteps]).to(latents.device)
    uncond, cond = (
        family.predict(components, both, steps, _cat(conditioning.uncond, conditioning.cond), denoiser).float().chunk(2)
    )
    return family.combine_guidance(cond, uncond, guidance_scale)


def initial_latents(components: Components, seeds: list[int], resolution: int, device) -> Tensor:
    shape = components.family.latent_shape(components, resolution)
    noise = [torch.randn(shape, generator=torch.Generator("cpu").manual_seed(s)) for s in seeds]
    return torch.stack(noise).to(device)


def decode(components: Components, latents: Tensor) -> Tensor:
    """Latents -> (B,3,H,W) images in [0,1]; differentiable with respect to the latents."""
    return ((components.family.decode(components, latents).float() + 1) / 2).clamp(0, 1)
