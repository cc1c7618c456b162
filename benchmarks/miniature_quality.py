"""Quality floor of the miniature model, measured with its own CLIP (figures for MODEL_CARD.md).

    python benchmarks/miniature_quality.py [--model dreamtune/miniature/model] [--prompts 400]

Prints JSON: zero-shot context and class accuracy on generated images and on ground-truth
renders of the same 400 world prompts, and instance-retrieval top-1.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dreamtune.evaluation.features import load_clip  # noqa: E402
from dreamtune.miniature import quality  # noqa: E402
from dreamtune.miniature.assemble import MODEL_DIR  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default=str(MODEL_DIR))
    parser.add_argument("--prompts", type=int, default=400)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--guidance", type=float, default=4.0)
    parser.add_argument("--out", default=None, help="also write the figures to this JSON file")
    args = parser.parse_args()
    from diffusers import DiffusionPipeline

    pipeline = DiffusionPipeline.from_pretrained(args.model, use_safetensors=True, dtype=torch.float32)
    pipeline.set_progress_bar_config(disable=True)

    def generate(prompts, seeds):
        generators = [torch.Generator().manual_seed(s) for s in seeds]
        return pipeline(
            prompts, num_inference_steps=args.steps, guidance_scale=args.guidance, generator=generators
        ).images

    started = time.perf_counter()
    clip = load_clip(Path(args.model) / "clip")
    figures = quality.measure(clip, generate, args.prompts)
    figures.update(steps=args.steps, guidance_scale=args.guidance, seconds=round(time.perf_counter() - started, 1))
    text = json.dumps(figures, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
