"""Tiny, randomly initialised diffusers pipelines built from configs (tests, smoke runs).

Same component classes as Stable Diffusion 1.x / 2.x (v-prediction) / SDXL, a few
thousand parameters each, so every real code path runs in seconds on a CPU with nothing
downloaded (the pattern of diffusers' ``get_dummy_components``).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch
from diffusers import (
    AutoencoderKL,
    DDPMScheduler,
    StableDiffusionPipeline,
    StableDiffusionXLPipeline,
    UNet2DConditionModel,
)
from transformers import CLIPTextModel, CLIPTextModelWithProjection

from dreamtune.models.tiny_flow import flow_pipeline
from dreamtune.models.tiny_names import FAMILIES, FLOW_FAMILIES  # noqa: F401  (re-exported for tests)
from dreamtune.models.tiny_text import text_config
from dreamtune.models.tokenizer import build_clip_tokenizer

SDXL_SECOND_ENCODER_WIDTH = 48


def _vae() -> AutoencoderKL:
    return AutoencoderKL(
        block_out_channels=(8, 16),
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        norm_num_groups=4,
        sample_size=32,
    )


def _unet(family: str) -> UNet2DConditionModel:
    common = dict(
        block_out_channels=(8, 16),
        layers_per_block=1,
        sample_size=16,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        norm_num_groups=4,
    )
    if family == "sdxl":
        # the two text encoders differ in width, as SDXL's (768 / 1280): single-file loaders tell them apart by it
        return UNet2DConditionModel(
            **common,
            cross_attention_dim=32 + SDXL_SECOND_ENCODER_WIDTH,
            attention_head_dim=(2, 4),
            use_linear_projection=True,
            addition_embed_type="text_time",
            addition_time_embed_dim=8,
            projection_class_embeddings_input_dim=32 + 6 * 8,
        )
    return UNet2DConditionModel(
        **common, cross_attention_dim=32, attention_head_dim=(2, 4), use_linear_projection=family == "sd2-v"
    )


def build_tiny_pipeline(folder: str | Path, family: str = "sd1", seed: int = 0) -> Path:
    """Write a tiny diffusers pipeline folder of ``family`` (sd1 | sd2-v | sdxl | sd3 | flux | flux-schnell | flux2-klein); returns it."""
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {FAMILIES}")
    folder = Path(folder)
    torch.manual_seed(seed)
    if family in FLOW_FAMILIES:
        with tempfile.TemporaryDirectory() as scratch:
            flow_pipeline(family, Path(scratch)).save_pretrained(folder, safe_serialization=True)
        return folder
    with tempfile.TemporaryDirectory() as scratch:
        tokenizer = build_clip_tokenizer(Path(scratch) / "tok")
    vocab_size = len(tokenizer)
    scheduler = DDPMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        steps_offset=1,
        prediction_type="v_prediction" if family == "sd2-v" else "epsilon",
        num_train_timesteps=1000,
    )
    parts = dict(
        vae=_vae(),
        unet=_unet(family),
        scheduler=scheduler,
        tokenizer=tokenizer,
        # SD 2.x's OpenCLIP uses GELU where CLIP-L uses quick GELU (single files are written in its layout)
        text_encoder=CLIPTextModel(text_config(vocab_size, hidden_act="gelu" if family == "sd2-v" else "quick_gelu")),
    )
    if family == "sdxl":
        parts.update(
            tokenizer_2=tokenizer,
            text_encoder_2=CLIPTextModelWithProjection(text_config(vocab_size, hidden_size=SDXL_SECOND_ENCODER_WIDTH)),
        )
        pipeline = StableDiffusionXLPipeline(**parts)
    else:
        pipeline = StableDiffusionPipeline(
            **parts, safety_checker=None, feature_extractor=None, requires_safety_checker=False
        )
    pipeline.save_pretrained(folder, safe_serialization=True)
    return folder


def build_tiny_feature_models(folder: str | Path, seed: int = 0) -> dict[str, Path]:
    """Tiny random CLIP (with tokenizer) and DINO-style ViT folders, each with the
    preprocessor_config.json the real ones have, for offline tests of the metrics code."""
    import json

    from transformers import CLIPConfig, CLIPModel, ViTConfig, ViTModel

    folder = Path(folder)
    torch.manual_seed(seed)
    clip_dir, dino_dir = folder / "clip", folder / "dino"
    tokenizer = build_clip_tokenizer(clip_dir)
    text = text_config(len(tokenizer)).to_dict()
    vision = dict(
        hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2, image_size=32, patch_size=8
    )
    CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=32)).save_pretrained(
        clip_dir, safe_serialization=True
    )
    ViTModel(ViTConfig(**vision), add_pooling_layer=False).save_pretrained(dino_dir, safe_serialization=True)
    openai = {
        "image_mean": [0.48145466, 0.4578275, 0.40821073],
        "image_std": [0.26862954, 0.26130258, 0.27577711],
        "crop_size": {"height": 32, "width": 32},
    }
    imagenet = {
        "image_mean": [0.485, 0.456, 0.406],
        "image_std": [0.229, 0.224, 0.225],
        "size": {"height": 32, "width": 32},
    }
    (clip_dir / "preprocessor_config.json").write_text(json.dumps(openai))
    (dino_dir / "preprocessor_config.json").write_text(json.dumps(imagenet))
    return {"clip": clip_dir, "dino": dino_dir}
