"""Assemble the trained stages into a diffusers StableDiffusionPipeline folder (fp16)."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

from dreamtune.atomic import atomic_dir
from dreamtune.miniature import architecture
from dreamtune.models.components import Components
from dreamtune.models.families import StableDiffusion
from dreamtune.models.loading import freeze, load_folder, quiet_libraries

MODEL_DIR = Path(__file__).parent / "model"


def frozen_components(root: Path) -> Components:
    """Trained VAE and the mini CLIP's text tower (frozen) for the UNet stage."""
    from diffusers import AutoencoderKL
    from transformers import CLIPModel, CLIPTextModel, CLIPTokenizer

    quiet_libraries()
    root = Path(root)
    clip = load_folder(CLIPModel, root / "clip" / "final")
    text_encoder = CLIPTextModel(clip.config.text_config)
    text_encoder.load_state_dict(clip.text_model.state_dict())
    tokenizer = CLIPTokenizer.from_pretrained(str(root / "clip" / "final"))
    vae = load_folder(AutoencoderKL, root / "vae" / "final")
    freeze(vae, text_encoder)
    return Components(
        StableDiffusion(), None, vae, [text_encoder], [tokenizer], architecture.noise_scheduler(), source=str(root)
    )


def assemble(root: Path, out: Path = MODEL_DIR) -> Path:
    """Write ``out``: a StableDiffusionPipeline (fp16 safetensors) plus clip/ for metrics."""
    from diffusers import DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel

    root = Path(root)
    components = frozen_components(root)
    unet = load_folder(UNet2DConditionModel, root / "unet" / "final")
    scheduler = DDIMScheduler.from_config(architecture.noise_scheduler().config)
    pipeline = StableDiffusionPipeline(
        vae=components.vae,
        text_encoder=components.text_encoders[0],
        tokenizer=components.tokenizers[0],
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    # fp16 on disk for size; diffusers loads the UNet and VAE back as fp32, but transformers keeps a
    # text encoder's saved dtype, so it stays fp32 (0.9 M parameters) for a pipeline that runs as loaded
    unet.to(torch.float16)
    components.vae.to(torch.float16)
    with atomic_dir(
        out, owned=Path(out).resolve() == MODEL_DIR.resolve()
    ) as temp:  # the packaged model is replaced in place
        pipeline.save_pretrained(temp, safe_serialization=True)
        from transformers import CLIPModel

        refined = root / "clip_image" / "final"  # same text tower, better image tower
        clip = load_folder(CLIPModel, refined if refined.is_dir() else root / "clip" / "final").to(torch.float16)
        clip.save_pretrained(temp / "clip", safe_serialization=True)
        components.tokenizers[0].save_pretrained(temp / "clip")
        judge = root / "judge" if (root / "judge" / "judge.safetensors").is_file() else MODEL_DIR / "judge"
        if (
            judge / "judge.safetensors"
        ).is_file():  # the judge (benchmarks/miniature_judge.py; retrain it after a new VAE)
            shutil.copytree(judge, temp / "judge", ignore=shutil.ignore_patterns(".*"))
        card = Path(__file__).parent / "MODEL_CARD.md"
        if card.is_file():
            shutil.copy(card, temp / "README.md")
    return out
