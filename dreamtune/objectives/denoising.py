"""The denoising objective used by DreamBooth, LoRA, textual inversion and training from
scratch (they differ only in which parameters train), for every model family: the noise
process says what x_t, the target and the loss weights are (ε, v or flow velocity)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dreamtune.data.augment import sample_generator
from dreamtune.data.cache import TensorCache, key_of, model_identity
from dreamtune.diffusion import noise as diffusion
from dreamtune.models.components import Components
from dreamtune.objectives.base import LossOutput, Objective


@dataclass(frozen=True)
class NoiseSettings:
    seed: int
    noise_offset: float
    min_snr_gamma: float | None
    loss_weighting: str  # flow models: none | sigma_sqrt | cosmap (SD3 sec. 3.1)
    guidance_embedding: float  # guidance-distilled models (FLUX.1-dev) are trained with this guidance input
    process_index: int = 0  # data parallelism: this process's share of the global batch ...
    num_processes: int = 1
    groups: int = 1  # ... whose batches hold this many equal groups (2 with prior preservation's class images)

    def rows(self, batch: int) -> list[int]:
        """This process's rows of the global batch's noise and timesteps: with N processes of B rows each,
        group g of process r holds global rows g·N·b + r·b + [0, b). One process: all rows, in order."""
        per_group = batch // self.groups
        n, r = self.num_processes, self.process_index
        return [g * n * per_group + r * per_group + j for g in range(self.groups) for j in range(per_group)]


@dataclass
class DenoisingPass:
    """One forward pass of the denoiser on a noised batch (what wrappers such as the
    adversarial objective judge)."""

    latents: Tensor
    noise: Tensor
    timesteps: Tensor
    noisy: Tensor
    prediction: Tensor
    conditioning: dict | None = None  # the denoiser's keyword arguments (text), for conditioned discriminators

    def predicted_clean(self, components: Components) -> Tensor:
        return components.noise.predicted_clean(
            self.noisy.float(), self.prediction.float(), self.timesteps.to(self.noisy.device)
        )


def weighted_mean(error: Tensor, pixel_weights: Tensor | None) -> Tensor:
    """(B,) mean of a (B,C,h,w) latent error per sample; with (B,1,H,W) pixel weights (subject masks), each
    latent cell counts by its pixels' mean weight and the mean is over the weight (a small subject's loss is
    as large as a big one's)."""
    dims = tuple(range(1, error.ndim))
    if pixel_weights is None:
        return error.mean(dim=dims)
    weights = F.adaptive_avg_pool2d(pixel_weights.to(error.device, torch.float32), error.shape[-2:])
    weights = weights.reshape(error.shape[0], *[1] * (error.ndim - 3), *error.shape[-2:]).expand_as(error)
    return (error * weights).sum(dim=dims) / weights.sum(dim=dims).clamp_min(1e-8)


class DenoisingObjective(Objective):
    """Per-sample MSE between the denoiser's output and the noise process's target, weighted
    as the process says (Min-SNR for DDPM, SD3's σ-weightings for flow)."""

    def __init__(
        self,
        components: Components,
        trainable: dict[str, nn.Module],
        settings: NoiseSettings,
        prompt_rewrite=None,
        text_cache: TensorCache | None = None,
    ):
        self.components = components
        self.trainable = trainable
        self.settings = settings
        self.prompt_rewrite = prompt_rewrite or (lambda prompt: prompt)
        self.text_frozen = not any(p.requires_grad for e in components.text_encoders for p in e.parameters())
        self._text_memo: dict[str, dict[str, Tensor]] = {}
        self.text_cache = text_cache
        dtype = str(next(components.text_encoders[0].parameters()).dtype)
        self._text_identity = [
            model_identity(components.source, name) for name in components.family.text_encoder_names
        ] + [dtype]

    def trainable_modules(self) -> dict[str, nn.Module]:
        return {"model": nn.ModuleDict(self.trainable)}

    @property
    def device(self) -> torch.device:
        return self.components.device

    def encode_text(self, prompts: list[str]) -> dict[str, Tensor]:
        prompts = [self.prompt_rewrite(p) for p in prompts]
        if not self.text_frozen:
            return self.components.encode(prompts, self.device)
        missing = [p for p in dict.fromkeys(prompts) if p not in self._text_memo]
        for prompt in missing:
            self._text_memo[prompt] = self._encode_frozen(prompt)
        return {k: torch.stack([self._text_memo[p][k] for p in prompts]) for k in self._text_memo[prompts[0]]}

    def _encode_frozen(self, prompt: str) -> dict[str, Tensor]:
        """One prompt's embeddings from a frozen text encoder, through the on-disk cache."""

        def compute():
            with torch.no_grad():
                return {k: v[0].float() for k, v in self.components.encode([prompt], self.device).items()}

        if self.text_cache is None:
            return compute()
        cached = self.text_cache.get_or_compute(key_of(prompt, self._text_identity), compute)
        return {k: v.to(self.device) for k, v in cached.items()}

    def latents_of(self, batch: Mapping[str, Tensor]) -> Tensor:
        if "latents" in batch:
            return batch["latents"].to(self.device)
        with torch.no_grad():
            return self.components.family.encode_latents(self.components, batch["pixels"])

    def forward_pass(self, batch: Mapping[str, Tensor], step: int) -> DenoisingPass:
        """Noise the batch and run the denoiser."""
        c = self.components
        latents = self.latents_of(batch).float()
        # the global batch's draw, of which this process takes its rows: N processes give the same noise as one
        # process with N times the batch (and one process draws exactly as it always has)
        generator = sample_generator(self.settings.seed, step, 0, stream=1)
        rows = self.settings.rows(latents.shape[0])
        total = latents.shape[0] * self.settings.num_processes
        timesteps = c.noise.sample_timesteps(total, generator)[rows]
        noise = diffusion.sample_noise(
            latents.new_empty((total, *latents.shape[1:])), generator, self.settings.noise_offset
        )[rows]
        noisy = c.noise.add_noise(latents, noise, timesteps)
        conditioning = c.family.conditioning(c, self.encode_text(list(batch["prompts"])), batch["sizes"])
        prediction = c.family.predict(
            c, noisy, timesteps.to(self.device), conditioning, guidance=self.settings.guidance_embedding
        )
        return DenoisingPass(latents, noise, timesteps, noisy, prediction, conditioning)

    def per_sample_loss(self, batch: Mapping[str, Tensor], step: int) -> tuple[Tensor, DenoisingPass]:
        """(B,) loss per sample (float32) and the pass it came from."""
        out = self.forward_pass(batch, step)
        noise = self.components.noise
        wanted = noise.target(out.latents, out.noise, out.timesteps)
        error = F.mse_loss(out.prediction.float(), wanted.float(), reduction="none")
        loss = weighted_mean(error, batch.get("loss_weights"))
        weights = noise.loss_weights(out.timesteps, self.settings.loss_weighting, self.settings.min_snr_gamma)
        if weights is not None:
            loss = loss * weights.to(loss.device)
        return loss, out

    def __call__(self, batch: Mapping[str, Tensor], step: int) -> LossOutput:
        per_sample, forward = self.per_sample_loss(batch, step)
        loss = per_sample.mean()
        return LossOutput({"model": loss}, {"loss": loss.item()}, passes={"denoising": forward})
