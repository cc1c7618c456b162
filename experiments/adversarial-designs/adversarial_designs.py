"""Issue 15's adversarial designs (and the one-run recipe) against LoRA + prior on the test half:
tabulates finished runs of ``benchmarks/miniature_methods.py --methods lora+prior,lora+prior+ladd,...``
with the judge's identity, context and class, a sharpness figure, and each design's paired
difference from LoRA + prior (same subject, same training seed), and plots the discriminators'
accuracy over training.

  sharpness  mean Laplacian energy of the personalized images / that of ground-truth renders of the
             subject in the same contexts (1 = as crisp as the world; the miniature's blur < 1)
  print      the print reward (print_proof) of the personalized images, each its own anchor

    python experiments/adversarial-designs/adversarial_designs.py [--root runs/issue15] [--methods a,b,c] [--seeds 1,2]
        [--plot experiments/adversarial-designs/adversarial_designs.png]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import numpy as np  # noqa: E402
import subject_split  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402
from subject_runs import mean_se, row  # noqa: E402

from dreamtune import config  # noqa: E402
from dreamtune.miniature import world  # noqa: E402
from dreamtune.miniature.demo import EVAL_CONTEXTS  # noqa: E402

KEYS = ("identity", "context_vs_truth", "class", "sharpness", "print")


def _pixels(images) -> torch.Tensor:
    return torch.stack([torch.from_numpy(np.array(i.convert("RGB"))).permute(2, 0, 1) for i in images]).float() / 255


def laplacian(images) -> float:
    from dreamtune.rewards.colour import luminance
    from dreamtune.rewards.print_proof import _laplacian_energy

    return float(_laplacian_energy(luminance(_pixels(images))).mean())


def figures(folder: Path, subject: str, truth_energy: dict, proof) -> dict:
    metrics = json.loads((folder / "metrics.json").read_text())
    record = json.loads((folder / "personalized" / "generations.json").read_text())
    images = [Image.open(folder / "personalized" / r["file"]).convert("RGB") for r in record["images"]]
    if subject not in truth_energy:
        truth_energy[subject] = laplacian(
            [world.render(world.Scene(subject, c), 90_000 + s) for c in EVAL_CONTEXTS for s in range(2)]
        )
    with torch.no_grad():
        printed = float(proof(_pixels(images), [], {}).mean())
    return {**row(metrics), "sharpness": laplacian(images) / truth_energy[subject], "print": printed}


def accuracy_curve(folder: Path) -> list[float]:
    records = [json.loads(line) for line in (folder / "run" / "metrics.jsonl").read_text().splitlines()]
    prefix = next((p for p in ("adv/", "denoise/adv/") if any(f"{p}d_loss" in r for r in records)), None)
    if prefix is None:
        return []
    # a step where nothing was judged (every t < min_timestep) has no accuracy (older runs logged 0 with d_loss 0)
    return [
        r[f"{prefix}d_accuracy"] if r.get(f"{prefix}d_loss") and f"{prefix}d_accuracy" in r else float("nan")
        for r in records
    ]


def main() -> None:
    from dreamtune.rewards.print_proof import PrintProof

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=str(ROOT / "runs" / "issue15"))
    parser.add_argument("--methods", default="lora+prior,lora+prior+ladd,lora+prior+clip-d4,one-run")
    parser.add_argument("--seeds", default="", help="only these training seeds, e.g. 1,2 (default: every finished run)")
    parser.add_argument("--plot", default="")
    args = parser.parse_args()
    seeds = set(args.seeds.split(",")) if args.seeds else None
    root, methods = Path(args.root), args.methods.split(",")
    proof, truth_energy = PrintProof(), {}
    results: dict[str, dict[tuple[str, str], dict]] = {}
    curves: dict[str, list[list[float]]] = {}
    for method in methods:
        results[method] = {}
        for folder in sorted((root / method).glob("*-s*")):
            subject, seed = folder.name.rsplit("-s", 1)
            if (
                subject in subject_split.TEST
                and (folder / "metrics.json").is_file()
                and (seeds is None or seed in seeds)
            ):
                results[method][subject, seed] = figures(folder, subject, truth_energy, proof)
                if config.load(folder / "run" / "config.yaml").adversarial.weight:
                    curves.setdefault(method, []).append(accuracy_curve(folder))
    base = results[methods[0]]
    print(
        f"| method | runs | {' | '.join(KEYS)} | " + " | ".join(f"Δ {k} vs {methods[0]} (paired)" for k in KEYS) + " |"
    )
    print("|---|---|" + "---|" * (2 * len(KEYS)))
    summary = {}
    for method in methods:
        runs = results[method]
        cells = [mean_se([r[k] for r in runs.values()]) for k in KEYS]
        pairs = [key for key in runs if key in base]
        deltas = [mean_se([runs[p][k] - base[p][k] for p in pairs]) for k in KEYS]
        summary[method] = {
            "runs": len(runs),
            "paired": len(pairs),
            **{k: c[:2] for k, c in zip(KEYS, cells)},
            **{f"delta_{k}": d[:2] for k, d in zip(KEYS, deltas)},
        }
        print(
            f"| {method} | {len(runs)} | "
            + " | ".join(f"{m:.3f} ± {s:.3f}" for m, s, _ in cells)
            + " | "
            + " | ".join(f"{m:+.3f} ± {s:.3f} ({n})" for m, s, n in deltas)
            + " |"
        )
    (root / "designs.json").write_text(json.dumps(summary, indent=1))
    if args.plot and curves:
        from dreamtune.evaluation.plots import line_plot

        series = {}
        for method, runs in curves.items():
            length = min(len(c) for c in runs)
            values = np.array([c[:length] for c in runs])  # (runs, steps), NaN where nothing was judged
            window = [values[:, max(0, i - 24) : i + 1] for i in range(length)]
            mean = [float(np.nanmean(w)) for w in window]  # over runs and the last 25 steps
            series[f"{method} ({len(runs)} runs)"] = list(enumerate(mean, start=1))
        series["chance"] = [(1, 0.5), (length, 0.5)]
        line_plot(
            series,
            "discriminator accuracy during personalization (test half; mean over runs and 25 steps; x = step)",
            size=(720, 320),
        ).save(args.plot)
        print(f"wrote {args.plot}")


if __name__ == "__main__":
    main()
