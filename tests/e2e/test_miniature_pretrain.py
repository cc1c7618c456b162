"""Every pretraining stage runs through the one loop for a few steps, resumes, and the
assembled folder loads as a plain diffusers pipeline."""
from __future__ import annotations

import json

import numpy as np

from dreamtune.miniature.assemble import assemble
from dreamtune.miniature.pretrain import pretrain


def test_stages_resume_and_assemble_into_a_plain_diffusers_pipeline(tmp_path):
    from diffusers import DiffusionPipeline

    root = tmp_path / "mini"
    common = [f"root={root}", "world.pool_size=64", "train.batch_size=4", "train.checkpoint_every=2"]
    for stage in ("clip", "vae", "unet"):
        pretrain(f"configs/miniature/{stage}.yaml", common + ["train.steps=2"], show_progress=False)
    pretrain("configs/miniature/unet.yaml", common + ["train.steps=3"], show_progress=False)  # resumes at 2
    steps = [json.loads(l)["step"] for l in (root / "unet" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3]
    model = assemble(root, tmp_path / "model")
    pipeline = DiffusionPipeline.from_pretrained(str(model), use_safetensors=True)
    assert type(pipeline).__name__ == "StableDiffusionPipeline"
    image = pipeline("a sks dog on the beach", num_inference_steps=2, output_type="np").images[0]
    assert image.shape == (64, 64, 3) and np.isfinite(image).all()
