"""Train and validate the miniature's judge (dreamtune/miniature/judge.py), then install it in the
packaged model as ``judge/``.

    python benchmarks/miniature_judge.py [--steps 1500] [--out runs/judge] [--no-install]

Resumable: a checkpoint every 250 steps in --out; rerunning continues. Validation (printed and
written to --out/validation.json) is on the 15 held-out instances, which training never sees:
each rendered in all 20 contexts, clean, after the VAE round trip, and after the round trip plus
a 1-px Gaussian blur; identity = the instance is nearest among its class's 4 instances (chance
25 %), class = the nearest of all instances is of its class; references are the photos the
personalization set uses, through the VAE as generated images are.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from judge_training import Rendered, degrade, judge_loss, render_pairs  # noqa: E402

from dreamtune.miniature import judge, world  # noqa: E402
from dreamtune.miniature.assemble import MODEL_DIR  # noqa: E402


def pool(out: Path, pairs: int, hard_p: float = 0.0) -> Rendered:
    from safetensors.torch import load_file, save_file

    path = out / (f"pool-{pairs}.safetensors" if not hard_p else f"pool-{pairs}-hard{hard_p:g}.safetensors")
    if not path.is_file():
        data = render_pairs(pairs, seed=1, hard_p=hard_p)
        save_file({k: v.contiguous() for k, v in vars(data).items()}, str(path))
    return Rendered(**load_file(str(path)))


def round_trips(out: Path, data: Rendered) -> torch.Tensor:
    """The pool through the packaged model's VAE, once (cached in --out by the VAE's weights)."""
    from safetensors.torch import load_file, save_file
    from tqdm.auto import tqdm

    vae = judge.load_vae(MODEL_DIR)
    key = hashlib.sha256((MODEL_DIR / "vae" / "diffusion_pytorch_model.safetensors").read_bytes()).hexdigest()[:12]
    path = out / f"round-trips-{len(data.pixels)}-{key}.safetensors"
    if not path.is_file():
        with torch.no_grad():
            trips = torch.cat(
                [judge.vae_round_trip(vae, chunk) for chunk in tqdm(data.pixels.split(64), desc="VAE round trips")]
            )
        save_file({"pixels": trips.to(torch.float16).contiguous()}, str(path))
    return load_file(str(path))["pixels"].float()


def train(
    out: Path, steps: int, pool_pairs: int, pairs_per_batch: int = 32, fade_p: float = 0.0, hard_p: float = 0.0
) -> judge.JudgeNet:
    """``hard_p``: the pool's share of hard-negative blocks (judge_training.render_pairs); with it, batches
    draw whole blocks of two identities so that each hard negative meets its twin."""
    from tqdm.auto import tqdm

    data = pool(out, pool_pairs, hard_p)
    trips = round_trips(out, data)
    torch.manual_seed(0)
    net = judge.JudgeNet()
    optimizer = torch.optim.AdamW(net.parameters(), lr=2e-3, weight_decay=1e-4)
    start, checkpoint = 0, out / "checkpoint.pt"
    if checkpoint.is_file():
        state = torch.load(checkpoint, weights_only=True)
        net.load_state_dict(state["net"]), optimizer.load_state_dict(state["optimizer"])
        start = state["step"]
    pair_count = len(data.identity) // 2
    for step in tqdm(range(start, steps), desc="judge", initial=start, total=steps):
        generator = torch.Generator().manual_seed(1000 + step)
        if hard_p:
            blocks = torch.randperm(pair_count // 2, generator=generator)[: pairs_per_batch // 2]
            chosen = torch.stack([2 * blocks, 2 * blocks + 1], dim=1).flatten()
        else:
            chosen = torch.randperm(pair_count, generator=generator)[:pairs_per_batch]
        rows = torch.stack([2 * chosen, 2 * chosen + 1], dim=1).flatten()
        batch = Rendered(data.pixels[rows], data.identity[rows], data.classes[rows], data.contexts[rows])
        pixels = degrade(batch.pixels, None, generator, round_trips=trips[rows], fade_p=fade_p)
        if torch.rand((), generator=generator) < 0.5:
            pixels = pixels.flip(-1)
        for group in optimizer.param_groups:
            group["lr"] = 2e-3 * 0.5 * (1 + math.cos(math.pi * step / steps))
        loss, parts = judge_loss(net, pixels, batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if (step + 1) % 250 == 0 or step + 1 == steps:
            torch.save(
                {"net": net.state_dict(), "optimizer": optimizer.state_dict(), "step": step + 1}, out / "checkpoint.tmp"
            )
            (out / "checkpoint.tmp").replace(checkpoint)
            print(
                json.dumps(
                    {"step": step + 1, "loss": round(float(loss), 4), **{k: round(v, 4) for k, v in parts.items()}}
                ),
                flush=True,
            )
    return net.eval()


def validate(net: judge.JudgeNet) -> dict:
    vae = judge.load_vae(MODEL_DIR)
    results = {}
    for level in ("clean", "vae", "vae+blur1"):
        per_subject = {}
        for subject in world.HELD_OUT:
            contexts = list(world.CONTEXTS)
            pixels = judge.to_pixels(
                [world.render(world.Scene(subject, c), 90_000 + i) for i, c in enumerate(contexts)]
            )
            if level != "clean":
                pixels = judge.vae_round_trip(vae, pixels)
            if level == "vae+blur1":
                pixels = judge.gaussian_blur(pixels, torch.ones(len(pixels)))
            per_subject[subject] = judge.verdicts(net, pixels, subject, contexts, vae=vae)
        mean = {k: sum(v[k] for v in per_subject.values()) / len(per_subject) for k in ("identity", "context", "class")}
        results[level] = {"mean": mean, "subjects": per_subject}
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--out", default=str(ROOT / "runs" / "judge"))
    parser.add_argument("--pool", type=int, default=6000, help="identity pairs rendered once (cached in --out)")
    parser.add_argument(
        "--fade",
        type=float,
        default=0.5,
        help="share of training images made paler (same hue), as generated ones often are",
    )
    parser.add_argument(
        "--hard",
        type=float,
        default=0.0,
        help="share of hard-negative identity blocks: the same shape in another colour, another shape in the same "
        "colour (0: the shipped judge; 0.5 measured in experiments/new-shape-judge, not shipped)",
    )
    parser.add_argument(
        "--no-install", action="store_true", help="keep the judge in --out/judge only, not in the packaged model"
    )
    parser.add_argument(
        "--validate-only", action="store_true", help="validate the judge installed in the packaged model"
    )
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    net = (
        judge.load_judge(MODEL_DIR / "judge")
        if args.validate_only
        else train(out, args.steps, args.pool, fade_p=args.fade, hard_p=args.hard)
    )
    trained = time.perf_counter() - started
    results = validate(net)
    (out / "validation.json").write_text(
        json.dumps({"steps": args.steps, "train_seconds": round(trained), **results}, indent=1)
    )
    print(f"\nheld-out instances (never trained on), 15 subjects x 20 contexts; train {trained:.0f} s")
    print("| images | identity (chance 25 %) | context | class |\n|---|---|---|---|")
    for level, result in results.items():
        m = result["mean"]
        print(
            f"| ground truth, {level} | {100 * m['identity']:.1f} % | {100 * m['context']:.1f} % | {100 * m['class']:.1f} % |"
        )
    worst = min(results["vae+blur1"]["subjects"].items(), key=lambda kv: kv[1]["identity"])
    print(f"weakest subject (vae+blur1): {worst[0]} identity {100 * worst[1]['identity']:.0f} %")
    if args.validate_only:
        return
    judge.save_judge(net, out / "judge")  # what the records' --judge runs/<out>/judge reads
    print(f"saved in {out / 'judge'}")
    if not args.no_install:
        judge.save_judge(net, MODEL_DIR / "judge")
        print(f"installed in {MODEL_DIR / 'judge'}")


if __name__ == "__main__":
    main()
