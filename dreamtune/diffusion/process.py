"""Noise processes: the one object that owns a model's parameterization (the roles of
k-diffusion's ``Denoiser`` and guided-diffusion's ``GaussianDiffusion`` + ``ScheduleSampler``).

An objective never asks which kind of model it trains; it asks the process to

  * ``sample_timesteps``  draw training timesteps (the values the denoiser is called with),
  * ``add_noise``         make x_t from x_0 and noise,
  * ``target``            say what the network must predict,
  * ``predicted_clean``   turn a prediction back into x̂_0,
  * ``loss_weights``      weight each sample's loss (Min-SNR, SD3's σ-schemes),
  * ``sampler(steps)``    give a sampler whose ``mean`` / ``step`` take one step with its
                          log-probability (DDPO) and stay differentiable (DRaFT).

``DDPMProcess``: ε- or v-prediction on a discrete DDPM schedule (SD 1.x / 2.x / SDXL).
``FlowMatchingProcess``: rectified flow, x_t = (1-σ)x_0 + σε, velocity target ε - x_0
(SD3 / FLUX; Esser et al. 2024; Liu et al. 2023).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from dreamtune.diffusion import noise as ddpm
from dreamtune.diffusion.ddim import ddim_mean, gaussian_log_prob
from dreamtune.errors import UserError


def _per_sample(values: Tensor, like: Tensor) -> Tensor:
    return values.to(like.device).float().view(-1, *([1] * (like.ndim - 1)))


class DDPMProcess:
    """ε- or v-prediction on the model's DDPM schedule; timesteps are integers in [0, T)."""

    def __init__(self, scheduler):
        self.scheduler = scheduler
        self.prediction = scheduler.config.prediction_type
        if self.prediction not in ("epsilon", "v_prediction"):
            raise ValueError(f"unsupported prediction type {self.prediction}")

    def sample_timesteps(self, batch: int, generator: torch.Generator) -> Tensor:
        return ddpm.sample_timesteps(batch, self.scheduler.config.num_train_timesteps, generator)

    def add_noise(self, latents: Tensor, noise: Tensor, timesteps: Tensor) -> Tensor:
        return ddpm.add_noise(self.scheduler, latents, noise, timesteps)

    def target(self, latents: Tensor, noise: Tensor, timesteps: Tensor) -> Tensor:
        return ddpm.target(self.prediction, self.scheduler, latents, noise, timesteps)

    def predicted_clean(self, noisy: Tensor, prediction: Tensor, timesteps: Tensor) -> Tensor:
        return ddpm.predicted_clean(self.prediction, self.scheduler, noisy, prediction, timesteps)

    def loss_weights(self, timesteps: Tensor, weighting: str, gamma: float | None) -> Tensor | None:
        if weighting in ("sigma_sqrt", "cosmap"):
            raise UserError(
                f"train.loss_weighting={weighting} is for flow-matching models (SD3, FLUX); for this model "
                "use train.min_snr_gamma (e.g. 5) or remove the setting."
            )
        if gamma:
            return ddpm.min_snr_weights(self.scheduler, timesteps, gamma, self.prediction)
        return None

    def sampler(self, steps: int, start_at_noise: bool = False, **schedule) -> "DDIMSampler":
        return DDIMSampler(self, steps, start_at_noise)


class DDIMSampler:
    """DDIM (η ≥ 0) on the process's schedule; the last step lands on ᾱ_0 (as SD's own DDIM
    config), not 1: a step of zero variance has no log-probability. ``start_at_noise``: "trailing" timesteps
    (999, 749, 499, 249 for 4 steps; Lin et al. 2024, "Common Diffusion Noise Schedules and Sample Steps are
    Flawed") so the first step starts from the schedule's top, as a 1- to 4-step model must; SD's own "leading"
    spacing starts 4 steps at 751 and 1 step at 1."""

    def __init__(self, process: DDPMProcess, steps: int, start_at_noise: bool = False):
        from diffusers import DDIMScheduler

        self.process = process
        spacing = {"timestep_spacing": "trailing"} if start_at_noise else {}
        self.scheduler = DDIMScheduler.from_config(process.scheduler.config, set_alpha_to_one=False, **spacing)
        self.scheduler.set_timesteps(steps)
        self.timesteps = self.scheduler.timesteps

    def mean(self, prediction: Tensor, timesteps: Tensor, sample: Tensor, eta: float) -> tuple[Tensor, Tensor, Tensor]:
        """The Gaussian of one step: (mean, std, x̂_0)."""
        return ddim_mean(self.scheduler, prediction, timesteps, sample, eta, self.process.prediction)

    def step(
        self,
        prediction: Tensor,
        timesteps: Tensor,
        sample: Tensor,
        eta: float,
        prev_sample: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, Tensor, Tensor]:
        return _gaussian_step(self.mean(prediction, timesteps, sample, eta), prev_sample, generator)


def _gaussian_step(gaussian, prev_sample, generator):
    mean, std, x0 = gaussian
    if prev_sample is None:
        noise = torch.randn(mean.shape, generator=generator, dtype=torch.float32).to(mean.device)
        prev_sample = mean + std * noise
    prev_sample = prev_sample.float()
    return prev_sample, gaussian_log_prob(prev_sample.detach(), mean, std), x0


@dataclass(frozen=True)
class FlowSchedule:
    """How σ is drawn in training and spaced in sampling. ``shift`` maps σ -> sσ / (1 + (s-1)σ)
    (SD3 sec. 5.3.2; FLUX computes it from the image size: ``dynamic``)."""

    sampling: str = "logit_normal"  # uniform | logit_normal | mode
    logit_mean: float = 0.0
    logit_std: float = 1.0
    mode_scale: float = 1.29
    shift: float = 1.0
    dynamic: bool = False  # FLUX: shift = exp(μ(image tokens))
    base_shift: float = 0.5
    max_shift: float = 1.15
    base_seq_len: int = 256
    max_seq_len: int = 4096
    num_train_timesteps: int = 1000


class FlowMatchingProcess:
    """Rectified flow. The denoiser is called with σ·1000 (diffusers' convention; a family
    rescales it where its network wants σ), and predicts the velocity ε - x_0."""

    prediction = "flow"

    def __init__(self, schedule: FlowSchedule, scheduler_config=None):
        self.schedule = schedule
        self.scheduler_config = scheduler_config  # sampling follows the model's own flow-matching Euler schedule

    @classmethod
    def from_scheduler_config(cls, config, sampling: str = "logit_normal") -> "FlowMatchingProcess":
        get = lambda key, default: (
            config.get(key, default) if isinstance(config, dict) else getattr(config, key, default)
        )
        return cls(
            scheduler_config=config,
            schedule=FlowSchedule(
                sampling=sampling,
                shift=float(get("shift", 1.0)),
                dynamic=bool(get("use_dynamic_shifting", False)),
                base_shift=float(get("base_shift", 0.5) or 0.5),
                max_shift=float(get("max_shift", 1.15) or 1.15),
                base_seq_len=int(get("base_image_seq_len", 256) or 256),
                max_seq_len=int(get("max_image_seq_len", 4096) or 4096),
                num_train_timesteps=int(get("num_train_timesteps", 1000)),
            ),
        )

    def shift_for(self, image_tokens: int | None) -> float:
        s = self.schedule
        if not s.dynamic:
            return s.shift
        if (
            image_tokens is None
        ):  # training draws σ unshifted where the shift depends on the size (diffusers' FLUX scripts)
            return 1.0
        slope = (s.max_shift - s.base_shift) / (s.max_seq_len - s.base_seq_len)
        return math.exp(s.base_shift + slope * (image_tokens - s.base_seq_len))

    @staticmethod
    def shifted(sigmas: Tensor, shift: float) -> Tensor:
        return shift * sigmas / (1 + (shift - 1) * sigmas)

    def sigmas_of(self, timesteps: Tensor) -> Tensor:
        return timesteps.float() / self.schedule.num_train_timesteps

    def sample_timesteps(self, batch: int, generator: torch.Generator, image_tokens: int | None = None) -> Tensor:
        """σ·1000 as float: u from the chosen density (SD3 sec. 3.1), shifted."""
        s = self.schedule
        if s.sampling == "logit_normal":
            u = torch.sigmoid(s.logit_mean + s.logit_std * torch.randn((batch,), generator=generator))
        elif s.sampling == "mode":
            u = torch.rand((batch,), generator=generator)
            u = 1 - u - s.mode_scale * (torch.cos(math.pi * u / 2) ** 2 - 1 + u)
        else:
            u = torch.rand((batch,), generator=generator)
        sigmas = self.shifted(u.clamp(1e-4, 1.0), self.shift_for(image_tokens))
        return sigmas * s.num_train_timesteps

    def add_noise(self, latents: Tensor, noise: Tensor, timesteps: Tensor) -> Tensor:
        sigma = _per_sample(self.sigmas_of(timesteps), latents)
        return ((1 - sigma) * latents.float() + sigma * noise.float()).to(latents.dtype)

    def target(self, latents: Tensor, noise: Tensor, timesteps: Tensor) -> Tensor:
        return (noise.float() - latents.float()).to(latents.dtype)

    def predicted_clean(self, noisy: Tensor, prediction: Tensor, timesteps: Tensor) -> Tensor:
        return noisy - _per_sample(self.sigmas_of(timesteps), noisy) * prediction

    def loss_weights(self, timesteps: Tensor, weighting: str, gamma: float | None) -> Tensor | None:
        """SD3's weightings (sec. 3.1): 'sigma_sqrt' σ^-2, 'cosmap' 2/(π(1-2σ+2σ²))."""
        if gamma:
            raise UserError(
                "train.min_snr_gamma is for DDPM models (SD 1.x / 2.x / SDXL); for flow-matching models "
                "use train.loss_weighting=sigma_sqrt or cosmap, or remove the setting."
            )
        sigma = self.sigmas_of(timesteps).clamp(1e-4, 1.0)
        if weighting == "sigma_sqrt":
            return sigma**-2.0
        if weighting == "cosmap":
            return 2 / (math.pi * (1 - 2 * sigma + 2 * sigma**2))
        return None

    def sampler(self, steps: int, sigmas=None, mu: float | None = None, start_at_noise: bool = False) -> "FlowSampler":
        """``start_at_noise`` is always so here: the σ grid begins at 1."""
        return FlowSampler(self, steps, sigmas, mu)


class FlowSampler:
    """Euler steps on the model's σ grid (σ_0 = 1 > ... > σ_N = 0). With η > 0 the step is
    Flow-GRPO's SDE form (Liu et al. 2025, eq. 9): the same marginals as the ODE, each step a
    Gaussian with a log-probability, so DDPO applies to flow models. ``sigmas`` / ``mu``: what
    the model's pipeline passes to its scheduler (FLUX: a linear grid and a size-dependent shift)."""

    def __init__(self, process: FlowMatchingProcess, steps: int, sigmas=None, mu: float | None = None):
        self.process = process
        if process.scheduler_config is not None:  # the exact σ grid the model's pipeline samples on
            from diffusers import FlowMatchEulerDiscreteScheduler

            scheduler = FlowMatchEulerDiscreteScheduler.from_config(process.scheduler_config)
            dynamic = (
                {"mu": mu if mu is not None else math.log(process.shift_for(None))} if process.schedule.dynamic else {}
            )
            scheduler.set_timesteps(None if sigmas is not None else steps, sigmas=sigmas, **dynamic)
            self.sigmas = scheduler.sigmas.float().cpu()
        else:
            shift = math.exp(mu) if mu is not None else process.schedule.shift
            self.sigmas = process.shifted(torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64), shift).float()
        self.timesteps = self.sigmas[:-1] * process.schedule.num_train_timesteps

    def _sigmas(self, timesteps: Tensor, like: Tensor) -> tuple[Tensor, Tensor]:
        index = (self.timesteps.to(timesteps.device)[None, :] - timesteps.float()[:, None]).abs().argmin(dim=1).cpu()
        return _per_sample(self.sigmas[index], like), _per_sample(self.sigmas[index + 1], like)

    def mean(self, prediction: Tensor, timesteps: Tensor, sample: Tensor, eta: float) -> tuple[Tensor, Tensor, Tensor]:
        x, v = sample.float(), prediction.float()
        sigma, following = self._sigmas(timesteps, x)
        dt = following - sigma  # negative
        x0 = x - sigma * v
        if not eta:
            return x + dt * v, torch.zeros_like(sigma), x0
        # σ = 1 makes σ/(1-σ) infinite; Flow-GRPO uses the next grid point there
        bounded = torch.where(sigma >= 1, self.sigmas[1].to(x.device), sigma)
        std_t = eta * (bounded / (1 - bounded)).sqrt()
        mean = x * (1 + std_t**2 / (2 * sigma) * dt) + v * (1 + std_t**2 * (1 - sigma) / (2 * sigma)) * dt
        return mean, std_t * (-dt).sqrt(), x0

    def step(
        self,
        prediction: Tensor,
        timesteps: Tensor,
        sample: Tensor,
        eta: float,
        prev_sample: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, Tensor, Tensor]:
        mean, std, x0 = self.mean(prediction, timesteps, sample, eta)
        if not eta:
            return (
                mean if prev_sample is None else prev_sample.float(),
                torch.zeros(mean.shape[0], device=mean.device),
                x0,
            )
        return _gaussian_step((mean, std, x0), prev_sample, generator)
