"""Ablation of the adversarial objective on the miniature: LoRA DreamBooth + prior vs the same
plus the adversarial term at several weights; same subjects, seeds and step budget; the
ground-truth ceiling row. Prints a markdown table and writes OUT/ablation.{json,md,png}.

    python experiments/adversarial-ablation/adversarial_ablation.py [--out runs/adversarial] [--subjects dog3,backpack3]
        [--weights 0.02,0.05,0.2] [--seeds 2] [--stability-seeds 1,2]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from dreamtune.bench.comparison import compare, comparison_markdown  # noqa: E402
from dreamtune.bench.harness import CEILING, BenchSettings  # noqa: E402
from dreamtune.evaluation.dreambench import read_benchmark  # noqa: E402
from dreamtune.evaluation.evaluate import load_features  # noqa: E402
from dreamtune.miniature.assemble import MODEL_DIR  # noqa: E402
from dreamtune.miniature.minidreambench import write_minidreambench  # noqa: E402

RECIPE = str(Path(__file__).resolve().parents[2] / "configs" / "miniature-adversarial.yaml")


def stability(out: Path, subject_photos: Path, seeds: list[int], weight: float) -> list[dict]:
    """Extra training seeds: every loss finite (a NaN would stop the run), final D accuracy."""
    from dreamtune import config
    from dreamtune.training.run import train

    rows = []
    for seed in seeds:
        run = train(
            config.load(
                RECIPE,
                [
                    f"data.instance_dir={subject_photos}",
                    f"adversarial.weight={weight}",
                    f"train.seed={seed}",
                    f"train.output_dir={out / f'stability-seed{seed}'}",
                    f"prior.class_dir={out / 'class_images' / 'dog'}",
                ],
            ),
            show_progress=False,
        )
        tail = run.history[-50:]
        rows.append(
            {
                "seed": seed,
                "steps": run.state.step,
                "finite": all(r["loss"] == r["loss"] for r in run.history),
                "d_accuracy_last50": sum(r["adv/d_accuracy"] for r in tail) / len(tail),
                "d_loss_last50": sum(r["adv/d_loss"] for r in tail) / len(tail),
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="runs/adversarial")
    parser.add_argument("--subjects", default="dog3,backpack3")
    parser.add_argument("--weights", default="0.02,0.05,0.2")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--stability-seeds", default="1,2")
    args = parser.parse_args()
    out = Path(args.out)
    bench = read_benchmark(write_minidreambench(out / "minidreambench"))
    methods = {"lora + prior": (RECIPE, ("adversarial.weight=0",))}
    methods.update({f"+ adversarial {w}": (RECIPE, (f"adversarial.weight={w}",)) for w in args.weights.split(",")})
    methods["ceiling (ground truth)"] = (CEILING, ())
    common = BenchSettings(
        recipe=None,
        base_model=str(MODEL_DIR),
        subjects=tuple(args.subjects.split(",")),
        seeds=args.seeds,
        sample_steps=25,
        guidance_scale=4.0,
    )
    result = compare(bench, common, load_features(model_dir=MODEL_DIR), out, methods=methods)
    seeds = [int(s) for s in args.stability_seeds.split(",") if s]
    if seeds:
        result["stability"] = stability(out, bench.photos_dir("dog3"), seeds, float(args.weights.split(",")[-1]))
    (out / "ablation.json").write_text(json.dumps(result, indent=1))
    print(comparison_markdown(result))
    for row in result.get("stability", []):
        print(
            f"stability seed {row['seed']}: {row['steps']} steps, finite={row['finite']}, "
            f"D accuracy (last 50) {row['d_accuracy_last50']:.3f}, D loss {row['d_loss_last50']:.3f}"
        )


if __name__ == "__main__":
    main()
