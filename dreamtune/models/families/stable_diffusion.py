"""Stable Diffusion 1.x / 2.x (ε or v-prediction: the scheduler says which) and SDXL: a
UNet on 4-channel latents, CLIP text encoders, a DDPM noise process.

SDXL concatenates the penultimate hidden states of its two CLIP text encoders, adds the second
encoder's pooled projection and the size/crop "time ids" (Podell et al. 2023, sec. 2.2).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from dreamtune.config import ModelConfig
from dreamtune.errors import UserError
from dreamtune.models.components import Components
from dreamtune.models.families.base import ModelFamily
from dreamtune.models.tokenizer import tokenize


class StableDiffusion(ModelFamily):
    name = "sd"
    pipeline_classes = ("StableDiffusionPipeline", "StableDiffusionImg2ImgPipeline")
    textual_inversion = True
    kohya_export = True
    forward_in_bf16 = True
    single_file_arguments = {"safety_checker": None}
    hub_tags = ("stable-diffusion",)
    denoiser_has_unet_blocks = True
    offload_blocks = (  # the mid block runs its first resnet outside checkpointing
        r"(down_blocks|up_blocks)\.\d+\.resnets\.\d+|mid_block\.resnets\.[1-9]\d*"
        r"|(down_blocks\.\d+|up_blocks\.\d+|mid_block)\.attentions\.\d+\.transformer_blocks\.\d+"
    )
    kohya_text_prefixes = ("lora_te_",)
    kohya_versions = {
        "epsilon": ("sd_v1", "stable-diffusion-v1"),
        "v_prediction": ("sd_v2", "stable-diffusion-v2-768-v"),
    }

    def noise_process(self, scheduler, timestep_sampling: str = "default"):
        from dreamtune.diffusion.process import DDPMProcess

        if timestep_sampling not in ("default", "uniform"):
            raise UserError(
                f"train.timestep_sampling={timestep_sampling} is for flow-matching models (SD3, FLUX); "
                f"{self.name} models sample timesteps uniformly: remove the setting."
            )
        return DDPMProcess(scheduler)

    def _encoder_classes(self):
        from transformers import CLIPTextModel

        return [CLIPTextModel]

    def load(self, location: str, index: dict, config: ModelConfig, dtypes, denoiser_later: bool = False) -> Components:
        from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
        from transformers import CLIPTokenizer

        from dreamtune.models.loading import load_part, load_scheduler

        if Path(location).is_file():
            if (config.quantize, config.quantize_text_encoders) != ("none", "none"):
                raise UserError(
                    f"model.quantize works on diffusers folders, and {location} is a single file; convert it once with "
                    "diffusers' from_single_file(...).save_pretrained(FOLDER) and train from FOLDER."
                )
            return self._load_single_file(Path(location), config, dtypes)
        if config.from_scratch:
            unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(location, subfolder="unet"))
        else:
            unet = load_part(UNet2DConditionModel, location, "unet", config, dtypes.denoiser, config.quantize)
        vae = load_part(AutoencoderKL, location, "vae", config, dtypes.vae)
        tokenizers, encoders = [], []
        for name, cls in zip(self.text_encoder_names, self._encoder_classes()):
            tokenizers.append(
                CLIPTokenizer.from_pretrained(
                    location, subfolder=name.replace("text_encoder", "tokenizer"), revision=config.revision
                )
            )
            encoders.append(load_part(cls, location, name, config, dtypes.text_encoders, config.quantize_text_encoders))
        scheduler = load_scheduler(DDPMScheduler, location, config)
        return Components(
            self,
            unet,
            vae,
            encoders,
            tokenizers,
            scheduler,
            source=location,
            extra={"model_index": index, "variant": config.variant},
        )

    def _load_single_file(self, path: Path, config: ModelConfig, dtypes) -> Components:
        from diffusers import DDPMScheduler, UNet2DConditionModel

        from dreamtune.models.loading import single_file_pipeline

        wanted = {dtypes.denoiser, dtypes.vae, dtypes.text_encoders}
        pipeline = single_file_pipeline(path, self, config, wanted.pop() if len(wanted) == 1 else torch.float32)
        unet = pipeline.unet.to(dtypes.denoiser)
        if config.from_scratch:
            unet = UNet2DConditionModel.from_config(unet.config)
        encoders = [getattr(pipeline, name).to(dtypes.text_encoders) for name in self.text_encoder_names]
        tokenizers = [getattr(pipeline, name.replace("text_encoder", "tokenizer")) for name in self.text_encoder_names]
        return Components(
            self,
            unet,
            pipeline.vae.to(dtypes.vae),
            encoders,
            tokenizers,
            DDPMScheduler.from_config(pipeline.scheduler.config),
            source=str(path),
            extra={
                "model_index": {"_class_name": type(pipeline).__name__},
                "single_file": True,
                "config": config.config,
            },
        )

    def encode_prompts(self, components: Components, prompts: list[str], device) -> dict[str, Tensor]:
        """{"encoder_hidden_states": (B,L,D)}."""
        ids = tokenize(components.tokenizers[0], prompts).to(device)
        return {"encoder_hidden_states": components.text_encoders[0](ids)[0]}

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
        return denoiser(noisy, timesteps.to(noisy.device), **conditioning).sample

    def pipeline(self, components: Components, scheduler=None):
        from diffusers import StableDiffusionPipeline

        pipeline = StableDiffusionPipeline(
            unet=components.denoiser,
            vae=components.vae,
            text_encoder=components.text_encoders[0],
            tokenizer=components.tokenizers[0],
            scheduler=scheduler or components.noise_scheduler,
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
        )
        pipeline.set_progress_bar_config(disable=True)
        return pipeline


class StableDiffusionXL(StableDiffusion):
    name = "sdxl"
    pipeline_classes = ("StableDiffusionXLPipeline", "StableDiffusionXLImg2ImgPipeline")
    text_encoder_names = ("text_encoder", "text_encoder_2")
    single_file_arguments = {}
    hub_tags = ("stable-diffusion-xl",)
    kohya_text_prefixes = ("lora_te1_", "lora_te2_")
    kohya_unet_original_names = True
    kohya_versions = {
        "epsilon": ("sdxl_base_v1-0", "stable-diffusion-xl-v1-base"),
        "v_prediction": ("sdxl_base_v1-0", "stable-diffusion-xl-v1-base"),
    }
    modelspec_implementation = "https://github.com/Stability-AI/generative-models"
    single_file_conditioner = True

    def _encoder_classes(self):
        from transformers import CLIPTextModel, CLIPTextModelWithProjection

        return [CLIPTextModel, CLIPTextModelWithProjection]

    def encode_prompts(self, components: Components, prompts: list[str], device) -> dict[str, Tensor]:
        """{"encoder_hidden_states": (B,L,D1+D2), "pooled": (B,P)}."""
        hidden, pooled = [], None
        for tokenizer, encoder in zip(components.tokenizers, components.text_encoders):
            output = encoder(tokenize(tokenizer, prompts).to(device), output_hidden_states=True)
            hidden.append(output.hidden_states[-2])
            pooled = output[0]  # the last encoder's pooled projection (text_embeds)
        return {"encoder_hidden_states": torch.cat(hidden, dim=-1), "pooled": pooled}

    def conditioning(self, components: Components, encoded: dict[str, Tensor], sizes: Tensor) -> dict:
        sizes = sizes.to(encoded["pooled"].device, encoded["pooled"].dtype)
        crops = torch.zeros_like(sizes)  # images are cropped in prepare; the kept region starts at 0,0
        time_ids = torch.cat([sizes, crops, sizes], dim=1)
        return {
            "encoder_hidden_states": encoded["encoder_hidden_states"],
            "added_cond_kwargs": {"text_embeds": encoded["pooled"], "time_ids": time_ids},
        }

    def pipeline(self, components: Components, scheduler=None):
        from diffusers import StableDiffusionXLPipeline

        pipeline = StableDiffusionXLPipeline(
            unet=components.denoiser,
            vae=components.vae,
            text_encoder=components.text_encoders[0],
            tokenizer=components.tokenizers[0],
            text_encoder_2=components.text_encoders[1],
            tokenizer_2=components.tokenizers[1],
            scheduler=scheduler or components.noise_scheduler,
        )
        pipeline.set_progress_bar_config(disable=True)
        return pipeline
