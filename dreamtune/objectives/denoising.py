"""The denoising objective (DDPM ε- or v-prediction) used by DreamBooth, LoRA, textual
inversion and training from scratch; they differ only in which parameters train."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dreamtune.data.augment import sample_generator
from dreamtune.data.cache import TensorCache, key_of, model_identity
from dreamtune.diffusion import noise as diffusion
from dreamtune.models.conditioning import encode_prompts, unet_kwargs
from dreamtune.models.loading import Components
from dreamtune.objectives.base import LossOutput


@dataclass(frozen=True)
class NoiseSettings:
    seed: int = 0
    noise_offset: float = 0.0
    min_snr_gamma: float | None = None
    stream: int = 0                     # distinguishes processes under data parallelism


def encode_images(vae: nn.Module, pixels: Tensor) -> Tensor:
    """(B,3,H,W) in [-1,1] -> scaled latents (B,C,H/f,W/f); the posterior mean, deterministic."""
    latents = vae.encode(pixels.to(vae.device, vae.dtype)).latent_dist.mean
    shift = getattr(vae.config, "shift_factor", None) or 0.0
    return (latents - shift) * vae.config.scaling_factor


class DenoisingObjective:
    """Per-sample MSE between the UNet output and the DDPM target, optionally Min-SNR weighted."""

    def __init__(self, components: Components, trainable: dict[str, nn.Module], settings: NoiseSettings,
                 prompt_rewrite=None, text_cache: TensorCache | None = None):
        self.components = components
        self.trainable = trainable
        self.settings = settings
        self.prompt_rewrite = prompt_rewrite or (lambda prompt: prompt)
        self.text_frozen = not any(p.requires_grad for e in components.text_encoders for p in e.parameters())
        self._text_memo: dict[str, dict[str, Tensor]] = {}
        self.text_cache = text_cache
        dtype = str(next(components.text_encoders[0].parameters()).dtype)
        self._text_identity = [model_identity(components.source, f"text_encoder{s}") for s in ("", "_2")] + [dtype]

    def trainable_modules(self) -> dict[str, nn.Module]:
        return {"model": nn.ModuleDict(self.trainable)}

    @property
    def device(self) -> torch.device:
        return next(self.components.unet.parameters()).device

    def encode_text(self, prompts: list[str]) -> dict[str, Tensor]:
        prompts = [self.prompt_rewrite(p) for p in prompts]
        if not self.text_frozen:
            return encode_prompts(self.components, prompts, self.device)
        missing = [p for p in dict.fromkeys(prompts) if p not in self._text_memo]
        for prompt in missing:
            self._text_memo[prompt] = self._encode_frozen(prompt)
        return {k: torch.stack([self._text_memo[p][k] for p in prompts]) for k in self._text_memo[prompts[0]]}

    def _encode_frozen(self, prompt: str) -> dict[str, Tensor]:
        """One prompt's embeddings from a frozen text encoder, through the on-disk cache."""
        def compute():
            with torch.no_grad():
                return {k: v[0].float() for k, v in encode_prompts(self.components, [prompt], self.device).items()}
        if self.text_cache is None:
            return compute()
        cached = self.text_cache.get_or_compute(key_of(prompt, self._text_identity), compute)
        return {k: v.to(self.device) for k, v in cached.items()}

    def latents_of(self, batch: Mapping[str, Tensor]) -> Tensor:
        if "latents" in batch:
            return batch["latents"].to(self.device)
        with torch.no_grad():
            return encode_images(self.components.vae, batch["pixels"])

    def forward_pass(self, batch: Mapping[str, Tensor], step: int) -> dict[str, Tensor]:
        """Noise the batch and run the UNet: latents, noise, timesteps, noisy, prediction."""
        latents = self.latents_of(batch).float()
        generator = sample_generator(self.settings.seed, step, 0, stream=1 + self.settings.stream)
        scheduler = self.components.noise_scheduler
        timesteps = diffusion.sample_timesteps(latents.shape[0], scheduler.config.num_train_timesteps, generator)
        noise = diffusion.sample_noise(latents, generator, self.settings.noise_offset)
        noisy = diffusion.add_noise(scheduler, latents, noise, timesteps)
        conditioning = unet_kwargs(self.components, self.encode_text(list(batch["prompts"])), batch["sizes"])
        prediction = self.components.unet(noisy, timesteps.to(self.device), **conditioning).sample
        # kept for wrappers that need the same pass (the adversarial objective judges its x̂0)
        self.last_pass = {"latents": latents, "noise": noise, "timesteps": timesteps, "noisy": noisy, "prediction": prediction}
        return self.last_pass

    def per_sample_loss(self, batch: Mapping[str, Tensor], step: int) -> Tensor:
        """(B,) loss per sample, float32."""
        out = self.forward_pass(batch, step)
        scheduler = self.components.noise_scheduler
        wanted = diffusion.target(self.components.prediction_type, scheduler, out["latents"], out["noise"], out["timesteps"])
        loss = F.mse_loss(out["prediction"].float(), wanted.float(), reduction="none").mean(dim=(1, 2, 3))
        if self.settings.min_snr_gamma:
            weights = diffusion.min_snr_weights(scheduler, out["timesteps"], self.settings.min_snr_gamma, self.components.prediction_type)
            loss = loss * weights.to(loss.device)
        return loss

    def __call__(self, batch: Mapping[str, Tensor], step: int) -> LossOutput:
        loss = self.per_sample_loss(batch, step).mean()
        return LossOutput({"model": loss}, {"loss": loss.item()})
