"""Retrain the miniature's VAE and UNet on an accelerator within a wall-clock budget (issue 14's
sharper miniature), keeping its text encoder and mini CLIP (so the judge, the tokenizer and every
prompt keep their meaning).

    python benchmarks/pretrain_miniature_device.py --root runs/miniature-v2 --out OUT \\
        [--vae-seconds 100] [--unet-seconds 220] [--pool 60000] [--keep-vae] [--unet-heads 2,4,6]

``--keep-vae`` keeps the shipped VAE too (only the UNet is trained); ``--unet-heads 2,4,6`` builds the
UNet with heads of dim 32 instead of the shipped 32 heads of dim 4 / 6 (issue 34).

It seeds ``--root`` with the shipped model's mini CLIP (clip/final, clip_image/final), measures how
long one training step of each network takes here, chooses the step counts that fit the budgets,
then runs ``dreamtune pretrain`` (the one loop; configs/miniature/{vae,unet}.yaml with those
steps; the recipes hold every other setting) and assembles a pipeline folder to --out/model. Every stage resumes from its checkpoints.
On 2 CPU cores use tiny budgets only (a smoke run); the real run is for a GPU.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dreamtune.config import load_as  # noqa: E402
from dreamtune.miniature import architecture  # noqa: E402
from dreamtune.miniature.assemble import MODEL_DIR, assemble  # noqa: E402
from dreamtune.miniature.pool import build_pool  # noqa: E402
from dreamtune.miniature.pretrain import PretrainConfig, pretrain  # noqa: E402


def seed_clip(root: Path) -> None:
    """root/clip/final and root/clip_image/final from the shipped model: its refined mini CLIP with
    the pipeline's own fp32 text tower (clip/ is stored in fp16)."""
    from transformers import CLIPModel, CLIPTextModel, CLIPTokenizer

    for stage in ("clip", "clip_image"):
        final = root / stage / "final"
        if final.is_dir():
            continue
        clip = CLIPModel.from_pretrained(str(MODEL_DIR / "clip"), dtype=torch.float32)
        text = CLIPTextModel.from_pretrained(str(MODEL_DIR / "text_encoder"), dtype=torch.float32)
        clip.text_model.load_state_dict(text.state_dict())
        clip.save_pretrained(str(final), safe_serialization=True)
        CLIPTokenizer.from_pretrained(str(MODEL_DIR / "clip")).save_pretrained(str(final))


def seed_vae(root: Path) -> None:
    """root/vae/final from the shipped model's VAE, in fp32 (it is stored in fp16)."""
    from diffusers import AutoencoderKL

    final = root / "vae" / "final"
    if not final.is_dir():
        AutoencoderKL.from_pretrained(str(MODEL_DIR / "vae"), torch_dtype=torch.float32).save_pretrained(str(final))


def seconds_per_step(model: torch.nn.Module, make_inputs, loss_of, device: torch.device, steps: int = 12) -> float:
    """Wall time of one bf16-autocast forward + backward + AdamW step of ``model`` (after warm-up)."""
    model = model.to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), 1e-4)
    inputs = make_inputs()
    timings = []
    for _ in range(steps + 3):
        start = time.perf_counter()
        with torch.autocast(device.type, torch.bfloat16):
            loss = loss_of(model, inputs)
        loss.float().backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        loss.item()
        timings.append(time.perf_counter() - start)
    model.to("cpu")
    return sorted(timings[3:])[len(timings[3:]) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=str(ROOT / "runs" / "miniature-v2"))
    parser.add_argument("--out", required=True)
    parser.add_argument("--pool", type=int, default=60000)
    parser.add_argument("--vae-seconds", type=float, default=80)
    parser.add_argument("--unet-seconds", type=float, default=300)
    parser.add_argument(
        "--overhead", type=float, default=1.3, help="loop time / bare step time (H200: measured 1.27 UNet, 1.38 VAE)"
    )
    parser.add_argument("--keep-vae", action="store_true", help="train the UNet only, on the shipped VAE")
    parser.add_argument("--unet-heads", default="", help="heads per UNet down block, e.g. 2,4,6 (head dim 32)")
    args = parser.parse_args()
    heads = tuple(int(h) for h in args.unet_heads.split(",")) if args.unet_heads else architecture.SHIPPED_HEADS
    recipes = {stage: ROOT / "configs" / "miniature" / f"{stage}.yaml" for stage in ("vae", "unet")}
    vae_batch, unet_batch = (load_as(PretrainConfig, recipes[stage], []).train.batch_size for stage in ("vae", "unet"))
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    root, out = Path(args.root), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    seed_clip(root)
    if args.keep_vae:
        seed_vae(root)
    build_pool(args.pool, 0, root / "cache")  # before CUDA starts: rendering forks worker processes
    report = {"device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu", "unet_heads": list(heads)}

    stages = {}  # stage -> (network, its inputs, its loss): the ones this run trains, timed for their budgets
    if not args.keep_vae:
        stages["vae"] = (
            architecture.vae(),
            lambda: torch.randn(vae_batch, 3, 64, 64, device=device),
            lambda m, x: (m(x).sample - x).abs().mean(),
        )
    stages["unet"] = (
        architecture.unet(heads),
        lambda: (
            torch.randn(unet_batch, 4, 16, 16, device=device),
            torch.randint(0, 1000, (unet_batch,), device=device),
            torch.randn(unet_batch, architecture.MAX_TOKENS, architecture.TEXT_WIDTH, device=device),
        ),
        lambda m, x: m(x[0], x[1], encoder_hidden_states=x[2]).sample.square().mean(),
    )
    budgets = {"vae": args.vae_seconds, "unet": args.unet_seconds}
    steps_of = {}
    for stage, (network, make_inputs, loss_of) in stages.items():
        step = seconds_per_step(network, make_inputs, loss_of, device)
        steps_of[stage] = max(20, int(budgets[stage] / (step * args.overhead)) // 10 * 10)
        report.update({f"{stage}_seconds_per_step": step, f"{stage}_steps": steps_of[stage]})
    print(json.dumps(report), flush=True)

    common = [f"root={root}", f"world.pool_size={args.pool}", f"unet_heads={list(heads)}"]
    for stage, steps in steps_of.items():
        start = time.time()
        pretrain(
            recipes[stage],
            common + [f"train.steps={steps}", f"train.checkpoint_every={max(10, steps // 4)}"],
            show_progress=False,
        )
        report[f"{stage}_wall_s"] = round(time.time() - start, 1)
        print(json.dumps(report), flush=True)
    assemble(root, out / "model")
    (out / "report.json").write_text(json.dumps(report, indent=1))
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
