"""Forward-process pieces shared by objectives: timesteps, noising, targets, loss weights.

All functions take the model's DDPM training scheduler (``alphas_cumprod``) and explicit
``torch.Generator``s, so a batch's noise is a pure function of its seed.
"""

from __future__ import annotations

import torch


def sample_timesteps(batch: int, num_train_timesteps: int, generator: torch.Generator) -> torch.Tensor:
    """Uniform integer timesteps in [0, T): (B,) int64 on CPU."""
    return torch.randint(0, num_train_timesteps, (batch,), generator=generator)


def sample_noise(latents: torch.Tensor, generator: torch.Generator, offset: float = 0.0) -> torch.Tensor:
    """Gaussian noise like ``latents``; ``offset`` adds a per-channel constant (noise offset,
    Guttenberg 2023) so the model learns to change an image's overall brightness."""
    noise = torch.randn(latents.shape, generator=generator, dtype=torch.float32)
    if offset:
        noise = noise + offset * torch.randn((*latents.shape[:2], 1, 1), generator=generator)
    return noise.to(latents.device, latents.dtype)


def _alpha_bar(scheduler, timesteps: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    alphas = scheduler.alphas_cumprod.to(like.device)[timesteps.to(like.device)].float()
    return alphas.view(-1, *([1] * (like.ndim - 1)))


def add_noise(scheduler, latents: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
    """x_t = sqrt(ᾱ_t) x_0 + sqrt(1-ᾱ_t) ε (DDPM, Ho et al. 2020, eq. 4)."""
    alpha_bar = _alpha_bar(scheduler, timesteps, latents)
    return (alpha_bar.sqrt() * latents.float() + (1 - alpha_bar).sqrt() * noise.float()).to(latents.dtype)


def target(
    prediction_type: str, scheduler, latents: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor
) -> torch.Tensor:
    """What the network must predict: ε, or v = sqrt(ᾱ)ε − sqrt(1−ᾱ)x_0 (Salimans & Ho 2022)."""
    if prediction_type == "epsilon":
        return noise
    if prediction_type == "v_prediction":
        alpha_bar = _alpha_bar(scheduler, timesteps, latents)
        return (alpha_bar.sqrt() * noise.float() - (1 - alpha_bar).sqrt() * latents.float()).to(latents.dtype)
    raise ValueError(f"unsupported prediction type {prediction_type}")


def predicted_clean(
    prediction_type: str, scheduler, noisy: torch.Tensor, prediction: torch.Tensor, timesteps: torch.Tensor
) -> torch.Tensor:
    """x̂_0 from the network output at timestep t (used by adversarial and reward objectives)."""
    alpha_bar = _alpha_bar(scheduler, timesteps, noisy)
    if prediction_type == "epsilon":
        return (noisy - (1 - alpha_bar).sqrt() * prediction) / alpha_bar.sqrt()
    return alpha_bar.sqrt() * noisy - (1 - alpha_bar).sqrt() * prediction


def snr(scheduler, timesteps: torch.Tensor) -> torch.Tensor:
    alpha_bar = scheduler.alphas_cumprod[timesteps.cpu()].float()
    return alpha_bar / (1 - alpha_bar)


def min_snr_weights(scheduler, timesteps: torch.Tensor, gamma: float, prediction_type: str) -> torch.Tensor:
    """Per-sample loss weights of Min-SNR-γ (Hang et al. 2023, eq. 8): min(SNR, γ)/SNR for ε,
    min(SNR, γ)/(SNR+1) for v-prediction."""
    ratio = snr(scheduler, timesteps)
    clipped = torch.minimum(ratio, torch.full_like(ratio, gamma))
    return clipped / (ratio + 1) if prediction_type == "v_prediction" else clipped / ratio
