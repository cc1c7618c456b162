"""The model-family contract: everything that differs between SD 1.x/2.x, SDXL, SD3 and FLUX
lives behind these methods, so objectives, sampling and export never ask which model they run.

Add a family: subclass ``ModelFamily``, implement the methods below, list it in
``models/families/__init__.py:FAMILIES`` (detection reads ``model_index.json``'s ``_class_name``).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from dreamtune.config import ModelConfig
from dreamtune.errors import UserError
from dreamtune.models.components import Components


class ModelFamily:
    name = "base"
    pipeline_classes: tuple[str, ...] = ()  # model_index.json _class_name values of this family
    denoiser_name = "unet"  # the pipeline attribute / folder of the denoiser
    text_encoder_names: tuple[str, ...] = ("text_encoder",)
    textual_inversion = False  # can new token rows be trained
    kohya_export = False  # also write a kohya / LyCORIS file (SD UNets)
    text_encoder_lora = True  # text-encoder LoRA is offered
    default_guidance = 7.5  # validation sheets' guidance (CFG scale, or the embedded guidance)
    guided_by_true_cfg = False  # the pipeline takes the CFG scale as true_cfg_scale with a negative prompt (Qwen-Image)
    forward_in_bf16 = False  # a frozen bf16 denoiser runs without autocast (models/precision.py)
    hub_tags: tuple[str, ...] = ()  # Hugging Face model-card tags of models trained on this family
    denoiser_has_unet_blocks = False  # down / mid blocks LADD's denoiser-feature discriminator reads
    # kohya / LyCORIS files (kohya_export): the key prefix of each text encoder, whether UNet keys use the
    # original (LDM) layout's names, and per prediction type (ss_base_model_version, modelspec architecture)
    kohya_text_prefixes: tuple[str, ...] = ()
    kohya_unet_original_names = False
    kohya_versions: dict[str, tuple[str, str]] = {}
    modelspec_implementation = "diffusers"
    single_file_conditioner = False  # original-layout single files keep its text encoders under conditioner.embedders.N
    # the denoiser's submodules that gradient checkpointing recomputes (a regular expression over module names):
    # train.offload keeps their frozen weights in host memory (training/offload.py); a contract test checks it
    offload_blocks: str | None = None

    # ---- loading ---------------------------------------------------------------------------
    def load(self, location: str, index: dict, config: ModelConfig, dtypes, denoiser_later: bool = False) -> Components:
        """``denoiser_later``: a family that can may leave the denoiser on the meta device (no memory) and
        mark it ``extra["denoiser_pending"]`` for ``load_denoiser`` (encode-then-free loads it after the
        text encoders are gone); others load it now."""
        raise NotImplementedError

    def load_denoiser(self, location: str, config: ModelConfig, dtypes):
        raise NotImplementedError

    def noise_process(self, scheduler, timestep_sampling: str = "default"):
        """The noise process of this model's scheduler; ``timestep_sampling``: train.timestep_sampling."""
        raise NotImplementedError

    # ---- conditioning and prediction --------------------------------------------------------
    def encode_prompts(self, components: Components, prompts: list[str], device) -> dict[str, Tensor]:
        """Per-prompt tensors, batch first (each row is cached on its own)."""
        raise NotImplementedError

    def conditioning(self, components: Components, encoded: dict[str, Tensor], sizes: Tensor) -> dict:
        """The denoiser's keyword arguments for a batch; ``sizes`` (B,2) image (height, width)."""
        return dict(encoded)

    def predict(
        self,
        components: Components,
        noisy: Tensor,
        timesteps: Tensor,
        conditioning: dict,
        denoiser=None,
        guidance: float | None = None,
    ) -> Tensor:
        """The denoiser's output for ``noisy`` latents (B,C,h,w), in the same layout; ``timesteps``
        are the noise process's values; ``guidance`` is the embedded guidance of distilled models."""
        raise NotImplementedError

    def classifier_free_scale(self, guidance: float) -> float:
        """The scale s of uncond + s·(cond - uncond) that the pipeline's guidance value means."""
        return guidance

    def combine_guidance(self, cond: Tensor, uncond: Tensor, guidance: float) -> Tensor:
        """Classifier-free guidance of two predictions (B,C,h,w), as this family's pipeline combines them."""
        return uncond + self.classifier_free_scale(guidance) * (cond - uncond)

    def uses_classifier_free_guidance(self, components: Components) -> bool:
        """Sampled with CFG (guidance-distilled models embed the guidance instead)."""
        return True

    def encode_latents(self, components: Components, pixels: Tensor) -> Tensor:
        """(B,3,H,W) in [-1,1] -> the latents the denoiser works on; the posterior mean, deterministic."""
        vae = components.vae
        latents = vae.encode(pixels.to(vae.device, vae.dtype)).latent_dist.mean
        shift = getattr(vae.config, "shift_factor", None) or 0.0
        return (latents - shift) * vae.config.scaling_factor

    def decode(self, components: Components, latents: Tensor) -> Tensor:
        """Latents (B,C,h,w) -> pixels in [-1,1]; differentiable with respect to the latents."""
        vae = components.vae
        shift = getattr(vae.config, "shift_factor", None) or 0.0
        return vae.decode((latents / vae.config.scaling_factor + shift).to(vae.dtype)).sample

    # ---- shapes ---------------------------------------------------------------------------
    def vae_scale_factor(self, vae: nn.Module) -> int:
        return 2 ** (len(vae.config.block_out_channels) - 1)

    def latent_shape(self, components: Components, resolution: int) -> tuple[int, int, int]:
        """(C, h, w) of the latents of a ``resolution``-px square image."""
        size = resolution // components.vae_scale_factor
        return components.vae.config.latent_channels, size, size

    def default_resolution(self, components: Components) -> int:
        return components.denoiser.config.sample_size * components.vae_scale_factor

    def sampling_schedule(self, components: Components, steps: int, resolution: int) -> dict:
        """Keyword arguments of the noise process's sampler that make its steps the pipeline's own
        (flow models: the σ grid and the resolution-dependent shift)."""
        return {}

    # ---- pipelines and export -------------------------------------------------------------
    def pipeline(self, components: Components, scheduler=None):
        """A diffusers pipeline sharing the given modules (no copies, no loading)."""
        raise NotImplementedError

    def pipeline_class(self):
        import diffusers

        return getattr(diffusers, self.pipeline_classes[0])

    def save_lora(self, out_dir: Path, modules: dict[str, nn.Module]) -> None:
        """``pytorch_lora_weights.safetensors`` in diffusers' format, with adapter metadata (rank,
        alpha, DoRA, targets: without them diffusers assumes alpha = rank)."""
        from peft.utils import get_peft_model_state_dict

        layers = {}
        for name, module in modules.items():  # named as the pipeline names them: unet / transformer / text_encoder(_2)
            layers[f"{name}_lora_layers"] = get_peft_model_state_dict(module)
            layers[f"{name}_lora_adapter_metadata"] = module.peft_config["default"].to_dict()
        self.pipeline_class().save_lora_weights(out_dir, safe_serialization=True, **layers)

    def check_method(self, method, settings) -> None:
        """Refuse, in one sentence, what this family cannot train (``method``: a methods.Method;
        ``settings``: config.method)."""
        if method.learns_token and not self.textual_inversion:
            raise UserError(
                f"textual inversion is not offered for {self.name} models (their T5 / LLM text encoders make it "
                "a different method); use method.kind=lora, the way kohya and the diffusers scripts personalize them."
            )
        if method.adds_lora and settings.lora.text_encoder and not self.text_encoder_lora:
            raise UserError(
                f"method.lora.text_encoder is not offered for {self.name} models; set method.lora.text_encoder=false."
            )


def model_dtype(module: nn.Module) -> torch.dtype:
    return next(module.parameters()).dtype
