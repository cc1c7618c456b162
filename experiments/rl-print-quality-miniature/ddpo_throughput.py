"""Throughput of one DDPO round on the miniature: sampling (trajectories/s with log-probabilities
and rewards) and the PPO updates over the round's transitions (transitions/s), for the recipe
(configs/miniature-ddpo.yaml: branched rollouts over the last steps) and for classic DDPO
(every image its own trajectory, every step trained).

    python experiments/rl-print-quality-miniature/ddpo_throughput.py [--samples 64] [--steps 20] [--batch 32]
        [--precision no|bf16] [key=value ...]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from dreamtune import config  # noqa: E402
from dreamtune.miniature.assemble import MODEL_DIR  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--precision", default="no")
    parser.add_argument("overrides", nargs="*", help="config overrides for the recipe variant, e.g. rl.last_steps=5")
    args = parser.parse_args()
    variants = {
        "recipe": list(args.overrides),
        "classic DDPO": ["rl.branch=false", "rl.last_steps=0", "rl.timestep_fraction=1.0"],
    }
    for name, overrides in variants.items():
        measure(name, args, overrides)


def measure(name: str, args, overrides: list[str]) -> None:
    import torch
    from accelerate import Accelerator

    from dreamtune.models.adapters import make_trainable
    from dreamtune.models.loading import load_components
    from dreamtune.training.assembly import Ingredients, RunPlan, build, wrap_trainable
    from dreamtune.training.loop import LoopSettings, run_step
    from dreamtune.training.optim import build_training_state

    cfg = config.load(
        Path(__file__).resolve().parents[2] / "configs" / "miniature-ddpo.yaml",
        [
            f"model.pretrained={MODEL_DIR}",
            f"rl.samples_per_round={args.samples}",
            f"rl.sample_steps={args.steps}",
            f"train.batch_size={args.batch}",
            f"train.mixed_precision={args.precision}",
            "train.output_dir=/tmp/ddpo-bench",
            *overrides,
        ],
    )
    accelerator = Accelerator(mixed_precision=cfg.train.mixed_precision, cpu=True)
    components = load_components(cfg.model)
    parts = make_trainable(components, cfg)
    ingredients = Ingredients(
        cfg,
        components,
        wrap_trainable(components, accelerator),
        parts,
        accelerator,
        None,
        None,
        Path("/tmp/ddpo-bench"),
        [],
    )
    objective, source, _ = build(ingredients, RunPlan.of(cfg))
    state = build_training_state(objective, cfg.train, accelerator)
    settings = LoopSettings(source.steps_per_round, 1, cfg.train.max_grad_norm, 0, log_every=1, show_progress=False)
    started = time.perf_counter()
    source.batch(0)  # samples the round (rollouts + rewards)
    sampled = time.perf_counter() - started
    started = time.perf_counter()
    for _ in range(source.steps_per_round):
        run_step(objective, source, state, accelerator, settings)
        state.step += 1
    trained = time.perf_counter() - started
    transitions = source.transitions * cfg.rl.inner_epochs
    rl = cfg.rl
    shape = (
        f"branched: {args.samples // rl.images_per_prompt} groups x {rl.images_per_prompt}, last {rl.last_steps} steps"
        if rl.branch
        else f"last {rl.last_steps or args.steps} steps x {rl.timestep_fraction:g} trained"
    )
    print(
        f"{name} ({shape}); threads {torch.get_num_threads()}, precision {args.precision}: "
        f"one round = {args.samples} trajectories x {args.steps} steps"
    )
    print(f"  sampling: {sampled:.1f} s ({args.samples / sampled:.2f} trajectories/s, incl. rewards)")
    print(
        f"  PPO updates: {trained:.1f} s for {transitions} transitions in "
        f"{source.steps_per_round} steps ({transitions / trained:.1f} transitions/s)"
    )
    print(f"  round total: {sampled + trained:.1f} s ({args.samples / (sampled + trained):.2f} samples/s)")


if __name__ == "__main__":
    main()
