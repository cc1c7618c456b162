"""How close are the miniature's base samples to ground truth? (issue 14's sharpness figure)

    python benchmarks/miniature_sharpness.py [--model dreamtune/miniature/model] [--prompts 200] [--out runs/sharpness]

For random world prompts of *pretraining* instances it generates one image per prompt and renders
the ground truth of the same scene, then prints
  * high-frequency energy: mean |Laplacian| of the luminance (generated / ground truth; 1.0 = as sharp),
  * the VAE alone: ground truth through the model's VAE round trip (high-frequency ratio, PSNR),
  * KID (Binkowski et al. 2018; unbiased MMD², cubic polynomial kernel) between the two sets on the
    judge's embeddings and on the mini CLIP's image embeddings (lower = closer; x 1000 as usually
    reported), and for scale the KID between two disjoint halves of the ground truth and between
    ground truth and ground truth blurred by 1 px (the judge is blur-invariant by design; CLIP is not),
and writes a contact sheet (generated above ground truth) to --out/sheet.png.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dreamtune.miniature import judge, world  # noqa: E402
from dreamtune.miniature.assemble import MODEL_DIR  # noqa: E402


def high_frequency(pixels: torch.Tensor) -> float:
    """Mean |Laplacian| of the luminance of (N,3,H,W) images in [-1, 1]."""
    luminance = (0.299 * pixels[:, 0] + 0.587 * pixels[:, 1] + 0.114 * pixels[:, 2])[:, None]
    kernel = torch.tensor([[0.0, 1, 0], [1, -4, 1], [0, 1, 0]]).view(1, 1, 3, 3)
    return float(torch.nn.functional.conv2d(luminance, kernel).abs().mean())


def kid(a: torch.Tensor, b: torch.Tensor) -> float:
    """Unbiased MMD² with the kernel (x·y/d + 1)³."""
    d = a.shape[1]
    k = lambda x, y: (x @ y.T / d + 1) ** 3
    m, n = len(a), len(b)
    kaa, kbb, kab = k(a, a), k(b, b), k(a, b)
    return float(
        (kaa.sum() - kaa.diag().sum()) / (m * (m - 1)) + (kbb.sum() - kbb.diag().sum()) / (n * (n - 1)) - 2 * kab.mean()
    )


def clip_embedder(folder: Path):
    """Unit-norm image embeddings of the mini CLIP, through dreamtune's own preprocessing."""
    from dreamtune.evaluation.features import load_clip

    clip = load_clip(folder)
    return lambda pixels: torch.cat(
        [clip.embed(clip.tensor_pixels((chunk + 1) / 2)).float() for chunk in pixels.split(64)]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(MODEL_DIR))
    parser.add_argument("--prompts", type=int, default=200)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--guidance", type=float, default=4.0)
    parser.add_argument("--scheduler", default="default", help="sampler (dreamtune.sampling.pipeline.SCHEDULERS)")
    parser.add_argument("--out", default=str(ROOT / "runs" / "sharpness"))
    args = parser.parse_args()
    from diffusers import DiffusionPipeline

    from dreamtune.sampling.contact_sheet import contact_sheet, save_png
    from dreamtune.sampling.pipeline import scheduler_for

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(4321)
    scenes = [
        world.Scene(rng.choice(world.PRETRAIN_INSTANCES).name, rng.choice(world.CONTEXTS)) for _ in range(args.prompts)
    ]
    truth = [world.render(s, 70_000 + i) for i, s in enumerate(scenes)]
    pipeline = DiffusionPipeline.from_pretrained(args.model, use_safetensors=True, dtype=torch.float32)
    pipeline.set_progress_bar_config(disable=True)
    pipeline.scheduler = scheduler_for(args.scheduler, pipeline.scheduler.config)
    started = time.perf_counter()
    generated = []
    for start in range(0, len(scenes), 25):
        chunk = scenes[start : start + 25]
        generators = [torch.Generator().manual_seed(start + i) for i in range(len(chunk))]
        generated += pipeline(
            [s.caption() for s in chunk],
            num_inference_steps=args.steps,
            guidance_scale=args.guidance,
            generator=generators,
        ).images
    sampling_seconds = time.perf_counter() - started
    net = judge.load_judge(Path(args.model) / "judge")
    gen_pixels, true_pixels = judge.to_pixels(generated), judge.to_pixels(truth)
    blurred = judge.gaussian_blur(true_pixels, torch.ones(len(true_pixels)))
    with torch.no_grad():
        round_trip = pipeline.vae.decode(pipeline.vae.encode(true_pixels).latent_dist.mean).sample.clamp(-1, 1)
    psnr = float(10 * torch.log10(4 / (round_trip - true_pixels).square().mean()))
    embed = lambda pixels: judge.judge_images(net, pixels)["embedding"]
    gen_e, true_e, blur_e = embed(gen_pixels), embed(true_pixels), embed(blurred)
    clip_embed = clip_embedder(Path(args.model) / "clip")
    with torch.no_grad():
        gen_c, true_c, blur_c = clip_embed(gen_pixels), clip_embed(true_pixels), clip_embed(blurred)
    half = len(true_e) // 2
    figures = {
        "model": str(args.model),
        "prompts": args.prompts,
        "scheduler": args.scheduler,
        "steps": args.steps,
        "sampling_seconds": round(sampling_seconds, 1),
        "high_frequency": {
            "generated": high_frequency(gen_pixels),
            "ground_truth": high_frequency(true_pixels),
            "ground_truth_blur1": high_frequency(blurred),
        },
        "kid_x1000": {
            "generated_vs_truth": 1000 * kid(gen_e, true_e),
            "truth_half_vs_half": 1000 * kid(true_e[:half], true_e[half:]),
            "truth_blur1_vs_truth": 1000 * kid(blur_e, true_e),
        },
        "kid_x1000_mini_clip": {
            "generated_vs_truth": 1000 * kid(gen_c, true_c),
            "truth_half_vs_half": 1000 * kid(true_c[:half], true_c[half:]),
            "truth_blur1_vs_truth": 1000 * kid(blur_c, true_c),
        },
        "vae_round_trip": {
            "high_frequency_ratio": high_frequency(round_trip) / high_frequency(true_pixels),
            "psnr_db": psnr,
        },
    }
    figures["high_frequency"]["ratio_generated_to_truth"] = (
        figures["high_frequency"]["generated"] / figures["high_frequency"]["ground_truth"]
    )
    (out / "sharpness.json").write_text(json.dumps(figures, indent=1))
    shown = 12
    save_png(
        contact_sheet(
            generated[:shown] + truth[:shown],
            [f"generated: {s.caption()}" for s in scenes[:shown]] + ["ground truth"] * shown,
            columns=shown,
            cell=96,
        ),
        out / "sheet.png",
    )
    print(json.dumps(figures, indent=1))
    print(f"contact sheet: {out / 'sheet.png'}")


if __name__ == "__main__":
    main()
