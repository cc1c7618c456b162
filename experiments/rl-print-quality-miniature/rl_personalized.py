"""Reward fine-tuning of a *personalized* miniature: start from the demo's LoRA DreamBooth of
dog3 (runs/demo, made by `make demo`), raise print quality with DRaFT-1 (or the DDPO recipe with
--recipe configs/miniature-ddpo.yaml), keep the subject with the denoising + prior regularizer;
the monitor measures subject CLIP-I, CLIP-T, PRES and the reward
on held-out prompts. Prints the monitor's records.

    python experiments/rl-print-quality-miniature/rl_personalized.py [--demo runs/demo] [--out runs/rl-personalized] [--steps 60]
                                         [--recipe configs/miniature-draft.yaml] [--every 10]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from dreamtune import config  # noqa: E402
from dreamtune.errors import UserError  # noqa: E402
from dreamtune.training.run import train  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--demo", default="runs/demo")
    parser.add_argument("--out", default="runs/rl-personalized")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--regularize", type=float, default=1.0)
    parser.add_argument("--recipe", default=str(ROOT / "configs" / "miniature-draft.yaml"))
    parser.add_argument("--every", type=int, default=10, help="monitor interval in steps")
    args = parser.parse_args()
    demo = Path(args.demo) / "run"
    if not (demo / "model" / "pytorch_lora_weights.safetensors").is_file():
        raise UserError(
            f"no personalized LoRA in {demo / 'model'}; run `make demo` (or dreamtune demo --out {args.demo}) first."
        )
    lora = config.load(ROOT / "configs" / "miniature-lora.yaml").method.lora
    contexts = [
        "in the jungle",
        "in the snow",
        "on a cobblestone street",
        "with a city in the background",
        "on top of pink fabric",
        "with a mountain in the background",
        "on top of a purple rug in a forest",
        "with a wheat field in the background",
    ]
    held_out = [
        "on the beach",
        "with a blue house in the background",
        "with a tree and autumn leaves in the background",
    ]
    overrides = [
        f"method.lora.rank={lora.rank}",
        f"method.lora.alpha={lora.alpha}",
        f"method.lora.target_modules={list(lora.target_modules)}",
        f"method.lora.init_from={demo / 'model'}",
        f"data.instance_dir={demo / 'data'}",
        "data.instance_prompt=a sks dog",
        "prior.enabled=true",
        "prior.class_prompt=a dog",
        f"prior.class_dir={demo / 'class_images'}",
        "prior.loss_weight=0.35",
        f"rl.prompts={['a {subject} {class} ' + c for c in contexts]}",
        "rl.subject=sks",
        "rl.class_noun=dog",
        f"rl.regularize_weight={args.regularize}",
        f"monitor.prompts={['a {subject} {class} ' + c for c in held_out]}",
        f"monitor.every={args.every}",
        "monitor.select_best=reward_with_clip_i_floor",
        "monitor.clip_i_floor=0.95",
        f"train.steps={args.steps}",
        f"train.output_dir={args.out}",
    ]
    run = train(config.load(args.recipe, overrides))
    for line in (Path(args.out) / "monitor" / "monitor.jsonl").read_text().splitlines():
        r = json.loads(line)
        print(
            f"step {r['step']:4d}  reward {r['reward']:.4f}  clip_i {r['clip_i']:.4f}  clip_t {r['clip_t']:.4f}  pres {r['pres']:.4f}"
        )
    print(f"report: {Path(args.out) / 'report.html'} ({run.state.step} steps)")


if __name__ == "__main__":
    main()
