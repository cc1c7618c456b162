"""Flow-matching transformers: Stable Diffusion 3 / 3.5 (MMDiT; CLIP-L + CLIP-G + optional T5),
FLUX.1 (dev and schnell: CLIP-L pooled + T5, 2x2 latent packing, dev's embedded guidance
instead of classifier-free guidance) and FLUX.2 klein (Qwen3 text encoder, batch-normalised
patchified latents). All train with the rectified-flow noise process.

Prompts are encoded by the pipelines' own ``encode_prompt`` (a pipeline built around the same
modules), so training sees exactly the conditioning the user's sampling pipeline makes.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from dreamtune.config import ModelConfig
from dreamtune.errors import UserError
from dreamtune.models.components import Components
from dreamtune.models.families.base import ModelFamily


def packed_token_schedule(components: Components, steps: int, resolution: int) -> dict:
    """FluxPipeline's (and ZImagePipeline's) grid: σ = linspace(1, 1/N, N), shifted by μ(tokens of 2x2 latent patches)."""
    import math

    import numpy as np

    tokens = (resolution // components.vae_scale_factor // 2) ** 2
    return {"sigmas": np.linspace(1.0, 1 / steps, steps), "mu": math.log(components.noise.shift_for(tokens))}


def _index_has(index: dict, name: str) -> bool:
    entry = index.get(name)
    return bool(entry) and entry[0] is not None


class FlowFamily(ModelFamily):
    denoiser_name = "transformer"
    textual_inversion = False
    text_encoder_lora = False
    transformer_class = ""
    vae_class = "AutoencoderKL"
    encoder_classes: tuple[str, ...] = ()  # transformers classes, one per text_encoder_names entry
    tokenizer_classes: tuple[str, ...] = ()
    offload_blocks = r"(transformer_blocks|single_transformer_blocks)\.\d+"

    def noise_process(self, scheduler, timestep_sampling: str = "default"):
        from dreamtune.diffusion.process import FlowMatchingProcess

        sampling = "logit_normal" if timestep_sampling == "default" else timestep_sampling
        return FlowMatchingProcess.from_scheduler_config(scheduler.config, sampling)

    def load(self, location: str, index: dict, config: ModelConfig, dtypes, denoiser_later: bool = False) -> Components:
        import diffusers
        import transformers
        from diffusers import FlowMatchEulerDiscreteScheduler

        from dreamtune.models.loading import empty_model, load_part, load_scheduler, load_tokenizer

        if Path(location).is_file():
            raise UserError(
                f"{location} is a single file; {self.name} models train from a diffusers folder or hub id "
                "(their single files hold no text encoders)."
            )
        later = denoiser_later and not config.from_scratch
        if later:
            denoiser = empty_model(getattr(diffusers, self.transformer_class), location, "transformer", config.revision)
        else:
            denoiser = self.load_denoiser(location, config, dtypes)
        vae = load_part(getattr(diffusers, self.vae_class), location, "vae", config, dtypes.vae)
        encoders, tokenizers = [], []
        for name, encoder_cls, tokenizer_cls in zip(
            self.text_encoder_names, self.encoder_classes, self.tokenizer_classes
        ):
            if not _index_has(index, name):  # SD3 without its T5 (text_encoder_3: null)
                continue
            tokenizer_name = name.replace("text_encoder", "tokenizer")
            encoder_cls = (
                index[name][1] if hasattr(transformers, str(index[name][1])) else encoder_cls
            )  # the class the folder names
            tokenizers.append(load_tokenizer(getattr(transformers, tokenizer_cls), location, tokenizer_name, config))
            encoders.append(
                load_part(
                    getattr(transformers, encoder_cls),
                    location,
                    name,
                    config,
                    dtypes.text_encoders,
                    config.quantize_text_encoders,
                )
            )
        scheduler = load_scheduler(FlowMatchEulerDiscreteScheduler, location, config)
        return Components(
            self,
            denoiser,
            vae,
            encoders,
            tokenizers,
            scheduler,
            source=location,
            extra={"model_index": index, "variant": config.variant, "denoiser_pending": later},
        )

    def load_denoiser(self, location: str, config: ModelConfig, dtypes):
        import diffusers

        from dreamtune.models.loading import load_part

        transformer_cls = getattr(diffusers, self.transformer_class)
        if config.from_scratch:
            return transformer_cls.from_config(transformer_cls.load_config(location, subfolder="transformer"))
        return load_part(transformer_cls, location, "transformer", config, dtypes.denoiser, config.quantize)

    def _pipeline_parts(self, components: Components) -> dict:
        parts = {}
        for index, name in enumerate(self.text_encoder_names):
            present = index < len(components.text_encoders)
            parts[name] = components.text_encoders[index] if present else None
            parts[name.replace("text_encoder", "tokenizer")] = components.tokenizers[index] if present else None
        return parts

    def pipeline(self, components: Components, scheduler=None):
        pipeline = self.pipeline_class()(
            transformer=components.denoiser,
            vae=components.vae,
            scheduler=scheduler or components.noise_scheduler,
            **self._pipeline_parts(components),
        )
        pipeline.set_progress_bar_config(disable=True)
        return pipeline

    def default_resolution(self, components: Components) -> int:
        return 128 * components.vae_scale_factor  # 1024 px, as the pipelines' default_sample_size

    def _text_length(self, components: Components) -> int:
        """T5's sequence length: the pipelines' default, or less where the tokenizer allows less."""
        return min(self.max_sequence_length, components.tokenizers[-1].model_max_length)


class StableDiffusion3(FlowFamily):
    name = "sd3"
    pipeline_classes = ("StableDiffusion3Pipeline",)
    hub_tags = ("sd3", "sd3-diffusers")
    transformer_class = "SD3Transformer2DModel"
    text_encoder_names = ("text_encoder", "text_encoder_2", "text_encoder_3")
    encoder_classes = ("CLIPTextModelWithProjection", "CLIPTextModelWithProjection", "T5EncoderModel")
    tokenizer_classes = ("CLIPTokenizer", "CLIPTokenizer", "T5Tokenizer")
    max_sequence_length = 256
    default_guidance = 7.0

    def encode_prompts(self, components: Components, prompts: list[str], device) -> dict[str, Tensor]:
        pipeline = self.pipeline(components)
        length = self._text_length(components) if len(components.text_encoders) == 3 else self.max_sequence_length
        embeds, _, pooled, _ = pipeline.encode_prompt(
            prompts, None, None, device=device, do_classifier_free_guidance=False, max_sequence_length=length
        )
        return {"encoder_hidden_states": embeds, "pooled_projections": pooled}

    def predict(
        self,
        components: Components,
        noisy: Tensor,
        timesteps: Tensor,
        conditioning: dict,
        denoiser=None,
        guidance: float | None = None,
    ) -> Tensor:
        denoiser = denoiser or components.denoiser
        return denoiser(hidden_states=noisy, timestep=timesteps, return_dict=False, **conditioning)[0]

    def default_resolution(self, components: Components) -> int:
        return components.denoiser.config.sample_size * components.vae_scale_factor


class Flux(FlowFamily):
    """FLUX.1: the transformer sees 2x2 patches of the latents as tokens and the timestep as σ;
    dev is guidance-distilled (its guidance is an input, no classifier-free guidance)."""

    name = "flux"
    pipeline_classes = ("FluxPipeline",)
    hub_tags = ("flux", "flux-diffusers")
    transformer_class = "FluxTransformer2DModel"
    text_encoder_names = ("text_encoder", "text_encoder_2")
    encoder_classes = ("CLIPTextModel", "T5EncoderModel")
    tokenizer_classes = ("CLIPTokenizer", "T5Tokenizer")
    max_sequence_length = 512
    default_guidance = 3.5

    def uses_classifier_free_guidance(self, components: Components) -> bool:
        return False

    def encode_prompts(self, components: Components, prompts: list[str], device) -> dict[str, Tensor]:
        pipeline = self.pipeline(components)
        embeds, pooled, _ = pipeline.encode_prompt(
            prompts, None, device=device, max_sequence_length=self._text_length(components)
        )
        return {"encoder_hidden_states": embeds, "pooled_projections": pooled}

    def predict(
        self,
        components: Components,
        noisy: Tensor,
        timesteps: Tensor,
        conditioning: dict,
        denoiser=None,
        guidance: float | None = None,
    ) -> Tensor:
        from diffusers import FluxPipeline

        denoiser = denoiser or components.denoiser
        batch, channels, height, width = noisy.shape
        packed = FluxPipeline._pack_latents(noisy, batch, channels, height, width)
        image_ids = FluxPipeline._prepare_latent_image_ids(batch, height // 2, width // 2, noisy.device, noisy.dtype)
        text = conditioning["encoder_hidden_states"]
        text_ids = torch.zeros(text.shape[1], 3, device=noisy.device, dtype=noisy.dtype)
        embedded = None
        if components.denoiser.config.guidance_embeds:
            embedded = torch.full((batch,), float(guidance if guidance is not None else 3.5), device=noisy.device)
        out = denoiser(
            hidden_states=packed,
            timestep=timesteps.float() / 1000,
            guidance=embedded,
            txt_ids=text_ids,
            img_ids=image_ids,
            return_dict=False,
            **conditioning,
        )[0]
        scale = components.vae_scale_factor
        return FluxPipeline._unpack_latents(out, height * scale, width * scale, scale)

    def sampling_schedule(self, components: Components, steps: int, resolution: int) -> dict:
        return packed_token_schedule(components, steps, resolution)


class Flux2Klein(FlowFamily):
    """FLUX.2 klein: a Qwen3 text encoder (hidden states of three layers, stacked), the FLUX.2
    VAE whose latents are 2x2-patchified and batch-normalised before the transformer sees them as
    tokens with 4-D position ids; base models sample with CFG, distilled ones without."""

    name = "flux2-klein"
    pipeline_classes = ("Flux2KleinPipeline",)
    hub_tags = ("flux2", "flux2-klein")
    transformer_class = "Flux2Transformer2DModel"
    vae_class = "AutoencoderKLFlux2"
    text_encoder_names = ("text_encoder",)
    encoder_classes = ("Qwen3ForCausalLM",)
    tokenizer_classes = ("Qwen2Tokenizer",)
    max_sequence_length = 512
    default_guidance = 4.0

    def uses_classifier_free_guidance(self, components: Components) -> bool:
        return not components.extra.get("model_index", {}).get("is_distilled", False)

    def pipeline(self, components: Components, scheduler=None):
        pipeline = self.pipeline_class()(
            transformer=components.denoiser,
            vae=components.vae,
            scheduler=scheduler or components.noise_scheduler,
            text_encoder=components.text_encoders[0],
            tokenizer=components.tokenizers[0],
            is_distilled=not self.uses_classifier_free_guidance(components),
        )
        pipeline.set_progress_bar_config(disable=True)
        return pipeline

    def _batch_norm(self, components: Components, like: Tensor) -> tuple[Tensor, Tensor]:
        vae = components.vae
        mean = vae.bn.running_mean.view(1, -1, 1, 1).to(like.device, torch.float32)
        std = torch.sqrt(vae.bn.running_var.view(1, -1, 1, 1) + vae.config.batch_norm_eps).to(
            like.device, torch.float32
        )
        return mean, std

    def encode_latents(self, components: Components, pixels: Tensor) -> Tensor:
        """Patchified (B,4C,H/2f,W/2f), normalised by the VAE's batch-norm statistics (the pipeline's _encode_vae_image)."""
        vae = components.vae
        latents = self.pipeline_class()._patchify_latents(
            vae.encode(pixels.to(vae.device, vae.dtype)).latent_dist.mode().float()
        )
        mean, std = self._batch_norm(components, latents)
        return (latents - mean) / std

    def decode(self, components: Components, latents: Tensor) -> Tensor:
        mean, std = self._batch_norm(components, latents)
        latents = self.pipeline_class()._unpatchify_latents(latents.float() * std + mean)
        return components.vae.decode(latents.to(components.vae.dtype)).sample

    def latent_shape(self, components: Components, resolution: int) -> tuple[int, int, int]:
        size = resolution // components.vae_scale_factor // 2
        return 4 * components.vae.config.latent_channels, size, size

    def encode_prompts(self, components: Components, prompts: list[str], device) -> dict[str, Tensor]:
        pipeline = self.pipeline(components)
        embeds, _ = pipeline.encode_prompt(prompts, device=device, max_sequence_length=self._text_length(components))
        return {"encoder_hidden_states": embeds}

    def predict(
        self,
        components: Components,
        noisy: Tensor,
        timesteps: Tensor,
        conditioning: dict,
        denoiser=None,
        guidance: float | None = None,
    ) -> Tensor:
        cls = self.pipeline_class()
        denoiser = denoiser or components.denoiser
        batch, channels, height, width = noisy.shape
        text = conditioning["encoder_hidden_states"]
        embedded = None
        if components.denoiser.config.guidance_embeds:
            embedded = torch.full((batch,), float(guidance if guidance is not None else 4.0), device=noisy.device)
        out = denoiser(
            hidden_states=cls._pack_latents(noisy),
            timestep=timesteps.float() / 1000,
            guidance=embedded,
            encoder_hidden_states=text,
            txt_ids=cls._prepare_text_ids(text).to(noisy.device),
            img_ids=cls._prepare_latent_ids(noisy).to(noisy.device),
            return_dict=False,
        )[0]
        return out[:, : height * width].permute(0, 2, 1).reshape(batch, channels, height, width)

    def sampling_schedule(self, components: Components, steps: int, resolution: int) -> dict:
        """Flux2KleinPipeline's grid: σ = linspace(1, 1/N, N) and its empirical μ(image tokens, steps)."""
        import numpy as np
        from diffusers.pipelines.flux2.pipeline_flux2_klein import compute_empirical_mu

        tokens = (resolution // components.vae_scale_factor // 2) ** 2
        return {"sigmas": np.linspace(1.0, 1 / steps, steps), "mu": compute_empirical_mu(tokens, steps)}

    def default_resolution(self, components: Components) -> int:
        return 128 * components.vae_scale_factor
