"""A FLUX.1-dev-wide pipeline with few blocks (random fp16 weights, a one-layer T5 of T5-XXL's width):
a model small enough to train in a minute on a CPU whose per-block costs scale to the 57-block original.
Used to find what grows with the number of blocks (experiments/cpu-heap-fragments).

    python benchmarks/flux_width_probe.py FOLDER --double 2 --single 4
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    import torch
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    from benchmarks.full_size_smoke import CLIP_L, FLUX1_DEV_TRANSFORMER, T5_XXL, VAE
    from dreamtune.models.tiny_text import build_t5_tokenizer
    from dreamtune.models.tokenizer import build_clip_tokenizer

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder")
    parser.add_argument("--double", type=int, default=2, help="double-stream blocks (FLUX.1-dev: 19)")
    parser.add_argument("--single", type=int, default=4, help="single-stream blocks (FLUX.1-dev: 38)")
    args = parser.parse_args()
    folder = Path(args.folder)
    clip = build_clip_tokenizer(folder.parent / ".clip-tokenizer")
    ids = dict(bos_token_id=clip.bos_token_id, eos_token_id=clip.eos_token_id, pad_token_id=clip.pad_token_id)
    torch.manual_seed(0)
    torch.set_default_dtype(torch.float16)
    try:
        pipeline = FluxPipeline(
            transformer=FluxTransformer2DModel(
                **{**FLUX1_DEV_TRANSFORMER, "num_layers": args.double, "num_single_layers": args.single}
            ),
            text_encoder=CLIPTextModel(CLIPTextConfig(**CLIP_L, **ids)),
            tokenizer=clip,
            text_encoder_2=T5EncoderModel(T5Config(**{**T5_XXL, "num_layers": 1})),
            tokenizer_2=build_t5_tokenizer(folder.parent / ".t5-tokenizer", model_max_length=512),
            vae=AutoencoderKL(
                **{**VAE, "latent_channels": 16},
                sample_size=1024,
                scaling_factor=0.3611,
                shift_factor=0.1159,
                use_quant_conv=False,
                use_post_quant_conv=False,
            ),
            scheduler=FlowMatchEulerDiscreteScheduler(
                shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15
            ),
        )
    finally:
        torch.set_default_dtype(torch.float32)
    pipeline.save_pretrained(folder, safe_serialization=True)
    print(f"{sum(p.numel() for p in pipeline.transformer.parameters()) / 1e9:.2f} B transformer weights in {folder}")


if __name__ == "__main__":
    main()
