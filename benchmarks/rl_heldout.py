"""Confirm a reward fine-tuning run on fresh held-out samples: the run's exported model against
its base, on the run's monitor prompts (held out from training) with seeds the monitor never
used, so the monitor's step selection cannot flatter the figures (it picks the best of noisy
points). Prints, per run, the mean reward (and its parts) and CLIP-T of base and trained with
the paired difference ± its standard error (same prompt and seed), and writes a side-by-side
sheet (base above, trained below) to <run>/heldout.png.

    python benchmarks/rl_heldout.py runs/miniature-ddpo runs/miniature-draft [--seeds 8]
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from dreamtune import config  # noqa: E402
from dreamtune.errors import UserError  # noqa: E402
from dreamtune.evaluation.evaluate import load_features, strip_identifier  # noqa: E402
from dreamtune.rewards.registry import build_rewards  # noqa: E402
from dreamtune.sampling.contact_sheet import contact_sheet, save_png  # noqa: E402
from dreamtune.sampling.generate import GenerateRequest, fill_prompt, load_pipeline  # noqa: E402
from dreamtune.sampling.pipeline import sample  # noqa: E402
from dreamtune.training.assembly import reward_features  # noqa: E402


def scores(images, prompts: list[str], rewards, features, identifier: str) -> dict[str, torch.Tensor]:
    """Per image: the reward, its parts and CLIP-T."""
    pixels = torch.stack([torch.from_numpy(np.array(i.convert("RGB"))).permute(2, 0, 1) for i in images]).float() / 255
    out = {}
    with torch.no_grad():
        for _weight, reward in rewards.terms:
            out.update(
                {
                    f"{reward.name}/{k}" if k != reward.name else reward.name: v
                    for k, v in reward.parts(pixels, prompts, {}).items()
                }
            )
        out["reward"] = rewards(pixels, prompts, {})
    clip = features.clip
    texts = clip.texts([strip_identifier(p, identifier) for p in prompts])
    out["clip_t"] = (clip.images(images) * texts).sum(-1)
    return out


def paired(base: torch.Tensor, trained: torch.Tensor) -> str:
    difference = (trained - base).double()
    error = float(difference.std() / math.sqrt(len(difference))) if len(difference) > 1 else float("nan")
    start = float(base.mean())
    return (
        f"{start:.4f} -> {float(trained.mean()):.4f}  ({float(difference.mean()):+.4f} ± {error:.4f}, "
        f"{100 * float(trained.mean()) / start:.1f} % of start)"
    )


def evaluate_run(run: Path, seeds: int, first_seed: int) -> None:
    cfg = config.load(run / "config.yaml")
    model = run / "model"
    if not (model / "dreamtune.json").is_file():
        raise UserError(f"{run} has no exported model/; train it first (dreamtune train ...).")
    identifier = cfg.monitor.identifier
    prompts = [fill_prompt(p, cfg.rl.subject, cfg.rl.class_noun) for p in cfg.monitor.prompts]
    if not prompts:
        raise UserError(f"{run}'s config has no monitor.prompts (the held-out prompts); set them and train again.")
    rewards = build_rewards(cfg.rl, reward_features(cfg) if cfg.rl.rewards.clip_score else None)
    local = Path(cfg.model.pretrained)
    features = load_features(cfg.monitor.clip or None, "none", local if local.is_dir() else None)
    pairs = [(p, first_seed + s) for p in prompts for s in range(seeds)]
    rendered, measured = {}, {}
    for name, trained in (("base", ""), ("trained", str(model))):
        pipeline, _ = load_pipeline(GenerateRequest(base_model=cfg.model.pretrained, trained=trained))
        images = sample(
            pipeline,
            [p for p, _ in pairs],
            [s for _, s in pairs],
            cfg.monitor.sample_steps,
            cfg.monitor.guidance_scale,
            cfg.data.resolution,
        )
        rendered[name], measured[name] = images, scores(images, [p for p, _ in pairs], rewards, features, identifier)
    selected = cfg.monitor.select_best
    print(
        f"{run}  ({len(prompts)} held-out prompts x {seeds} seeds from {first_seed}; model/ = "
        f"{'the monitor-selected step' if selected else 'the last step'})"
    )
    for key in measured["base"]:
        print(f"  {key:32s} {paired(measured['base'][key], measured['trained'][key])}")
    rows, captions = [], []
    for seed in range(first_seed, first_seed + min(seeds, 2)):  # per seed: base row, trained row
        shown = [i for i, (_, s) in enumerate(pairs) if s == seed]
        for name in ("base", "trained"):
            rows += [rendered[name][i] for i in shown]
            captions += [f"{name}: {pairs[i][0]} #{seed}" for i in shown]
    sheet = contact_sheet(
        rows,
        captions,
        columns=len(prompts),
        cell=128,
        title=f"{run.name}: base and trained, held-out prompts (rows alternate base / trained)",
    )
    print(f"  sheet: {save_png(sheet, run / 'heldout.png')}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--first-seed", type=int, default=1000)
    args = parser.parse_args()
    try:
        for run in args.runs:
            evaluate_run(run, args.seeds, args.first_seed)
    except UserError as error:
        sys.exit(f"error: {error}")


if __name__ == "__main__":
    main()
