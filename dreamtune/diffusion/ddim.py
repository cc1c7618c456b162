"""A DDIM step that also returns the log-probability of the step it took (Song et al. 2021,
eq. 12, with η > 0 the step is a Gaussian), as DDPO needs (Black et al. 2023, sec. 4.3).
Timesteps are per sample, so a minibatch may mix steps from different trajectories."""

from __future__ import annotations

import math

import torch
from torch import Tensor


def _gather(values: Tensor, index: Tensor, like: Tensor) -> Tensor:
    return values.to(like.device)[index.to(like.device)].float().view(-1, *([1] * (like.ndim - 1)))


def ddim_mean(
    scheduler, prediction: Tensor, timesteps: Tensor, sample: Tensor, eta: float, prediction_type: str = "epsilon"
) -> tuple[Tensor, Tensor, Tensor]:
    """The Gaussian of one DDIM step x_t -> x_{t-1}: (mean, std, predicted x_0).

    ``scheduler`` has had ``set_timesteps`` called (x̂0 is not clipped: Stable Diffusion sets
    clip_sample false)."""
    stride = scheduler.config.num_train_timesteps // scheduler.num_inference_steps
    previous = timesteps - stride
    alphas = scheduler.alphas_cumprod
    alpha_t = _gather(alphas, timesteps, sample)
    final = torch.as_tensor(float(scheduler.final_alpha_cumprod))
    alpha_prev = torch.where(
        previous.view(-1, *([1] * (sample.ndim - 1))).to(sample.device) >= 0,
        _gather(alphas, previous.clamp(min=0), sample),
        final.to(sample.device),
    )
    x, out = sample.float(), prediction.float()
    if prediction_type == "epsilon":
        eps = out
        x0 = (x - (1 - alpha_t).sqrt() * eps) / alpha_t.sqrt()
    elif prediction_type == "v_prediction":
        x0 = alpha_t.sqrt() * x - (1 - alpha_t).sqrt() * out
        eps = alpha_t.sqrt() * out + (1 - alpha_t).sqrt() * x
    else:
        raise ValueError(f"unsupported prediction type {prediction_type}")
    variance = (1 - alpha_prev) / (1 - alpha_t) * (1 - alpha_t / alpha_prev)
    std = eta * variance.clamp(min=1e-20).sqrt()
    mean = alpha_prev.sqrt() * x0 + (1 - alpha_prev - std**2).clamp(min=0).sqrt() * eps
    return mean, std, x0


def ddim_step(
    scheduler,
    prediction: Tensor,
    timesteps: Tensor,
    sample: Tensor,
    eta: float,
    prediction_type: str = "epsilon",
    prev_sample: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """One DDIM step x_t -> x_{t-1}. Returns (prev_sample, log_prob (B,), predicted x_0).
    ``prev_sample`` given: score that sample instead of drawing one (the PPO ratio recomputes
    the log-probability of stored steps)."""
    mean, std, x0 = ddim_mean(scheduler, prediction, timesteps, sample, eta, prediction_type)
    if prev_sample is None:
        noise = torch.randn(mean.shape, generator=generator, dtype=torch.float32).to(mean.device)
        prev_sample = mean + std * noise
    prev_sample = prev_sample.float()
    return prev_sample, gaussian_log_prob(prev_sample.detach(), mean, std), x0


def gaussian_log_prob(value: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    """log N(value; mean, std²) per dimension, averaged per sample (B,)."""
    log_prob = -((value.float() - mean) ** 2) / (2 * std**2) - torch.log(std) - math.log(math.sqrt(2 * math.pi))
    return log_prob.mean(dim=tuple(range(1, mean.ndim)))


def gaussian_kl(mean: Tensor, reference_mean: Tensor, std: Tensor) -> Tensor:
    """KL(N(mean, std²) ‖ N(reference_mean, std²)) per dimension, averaged per sample (B,)."""
    kl = (mean - reference_mean) ** 2 / (2 * std**2)
    return kl.mean(dim=tuple(range(1, mean.ndim)))
