"""Issue 15's adversarial designs (and the one-run recipe) against LoRA + prior on the test half:
tabulates finished runs of ``benchmarks/miniature_methods.py --methods lora+prior,lora+prior+ladd,...``
with the judge's identity, context and class, a sharpness figure, and each design's paired
difference from LoRA + prior (same subject, same training seed), and plots the discriminators'
accuracy over training.

  sharpness  mean Laplacian energy of the personalized images / that of ground-truth renders of the
             subject in the same contexts (1 = as crisp as the world; the miniature's blur < 1)
  print      the print reward (print_proof) of the personalized images, each its own anchor

    python benchmarks/adversarial_designs.py [--root runs/issue15] [--methods a,b,c] [--plot docs/adversarial_designs.png]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from dreamtune.miniature import subject_split, world  # noqa: E402
from dreamtune.miniature.demo import EVAL_CONTEXTS  # noqa: E402
from dreamtune.miniature.subject_runs import mean_se, row  # noqa: E402

KEYS = ("identity", "context_vs_truth", "class", "sharpness", "print")


def _pixels(images) -> torch.Tensor:
    return torch.stack([torch.from_numpy(np.array(i.convert("RGB"))).permute(2, 0, 1) for i in images]).float() / 255


def laplacian(images) -> float:
    from dreamtune.rewards.colour import luminance
    from dreamtune.rewards.print_proof import _laplacian_energy

    return float(_laplacian_energy(luminance(_pixels(images))).mean())


def figures(folder: Path, subject: str, truth_energy: dict, proof) -> dict:
    metrics = json.loads((folder / "metrics.json").read_text())
    images = [Image.open(p).convert("RGB") for p in sorted((folder / "personalized").glob("*.png"))]
    if subject not in truth_energy:
        truth_energy[subject] = laplacian([world.render(world.Scene(subject, c), 90_000 + s) for c in EVAL_CONTEXTS for s in range(2)])
    with torch.no_grad():
        printed = float(proof(_pixels(images), [], {}).mean())
    return {**row(metrics), "sharpness": laplacian(images) / truth_energy[subject], "print": printed}


def accuracy_curve(folder: Path) -> list[float]:
    records = [json.loads(line) for line in (folder / "run" / "metrics.jsonl").read_text().splitlines()]
    key = next((k for k in ("adv/d_accuracy", "denoise/adv/d_accuracy") if k in records[0]), None)
    return [r.get(key, float("nan")) for r in records] if key else []


def main() -> None:
    from dreamtune.rewards.print_proof import PrintProof

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=str(ROOT / "runs" / "issue15"))
    parser.add_argument("--methods", default="lora+prior,lora+prior+ladd,lora+prior+clip-d4,one-run")
    parser.add_argument("--plot", default="")
    args = parser.parse_args()
    root, methods = Path(args.root), args.methods.split(",")
    proof, truth_energy = PrintProof(), {}
    results: dict[str, dict[tuple[str, str], dict]] = {}
    curves: dict[str, list[list[float]]] = {}
    for method in methods:
        results[method] = {}
        for folder in sorted((root / method).glob("*-s*")):
            subject, seed = folder.name.rsplit("-s", 1)
            if subject in subject_split.TEST and (folder / "metrics.json").is_file():
                results[method][subject, seed] = figures(folder, subject, truth_energy, proof)
                if "adversarial" in (folder / "run" / "config.yaml").read_text() and "weight: 0.0\n" not in (folder / "run" / "config.yaml").read_text():
                    curves.setdefault(method, []).append(accuracy_curve(folder))
    base = results[methods[0]]
    print(f"| method | runs | {' | '.join(KEYS)} | " + " | ".join(f"Δ {k} vs {methods[0]} (paired)" for k in KEYS) + " |")
    print("|---|---|" + "---|" * (2 * len(KEYS)))
    summary = {}
    for method in methods:
        runs = results[method]
        cells = [mean_se([r[k] for r in runs.values()]) for k in KEYS]
        pairs = [key for key in runs if key in base]
        deltas = [mean_se([runs[p][k] - base[p][k] for p in pairs]) for k in KEYS]
        summary[method] = {"runs": len(runs), "paired": len(pairs), **{k: c[:2] for k, c in zip(KEYS, cells)},
                           **{f"delta_{k}": d[:2] for k, d in zip(KEYS, deltas)}}
        print(f"| {method} | {len(runs)} | " + " | ".join(f"{m:.3f} ± {s:.3f}" for m, s, _ in cells) + " | "
              + " | ".join(f"{m:+.3f} ± {s:.3f} ({n})" for m, s, n in deltas) + " |")
    (root / "designs.json").write_text(json.dumps(summary, indent=1))
    if args.plot and curves:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        figure, axis = plt.subplots(figsize=(7, 3.5))
        for method, runs in curves.items():
            length = min(len(c) for c in runs)
            mean = np.nanmean(np.array([c[:length] for c in runs]), axis=0)
            smooth = np.convolve(mean, np.ones(15) / 15, mode="valid")
            axis.plot(smooth, label=f"{method} ({len(runs)} runs)")
        axis.axhline(0.5, color="grey", lw=0.8, ls="--")
        axis.set_xlabel("step")
        axis.set_ylabel("discriminator accuracy (15-step mean)")
        axis.set_title("discriminator accuracy during personalization, test half")
        axis.legend(fontsize=8)
        figure.tight_layout()
        figure.savefig(args.plot, dpi=110)
        print(f"wrote {args.plot}")


if __name__ == "__main__":
    main()
