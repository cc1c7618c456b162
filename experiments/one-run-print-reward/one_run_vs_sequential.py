"""Issue 15, part 3: one training run that personalizes, applies the adversarial term and the print
reward (the ``one-run`` variant: LoRA + prior + LADD for 300 steps, DRaFT joins for 60 more) against
the sequential path (the ``lora+prior+ladd`` run of the same subject, then DRaFT 60 steps from its
weights, ``benchmarks/rl_test_half.py --starts .../lora+prior+ladd``), on the same judge and the same
8 evaluation contexts x 2 seeds.

Every arm is scored against one anchor: the LADD run's own images (what both paths have before the
reward acts — the one-run variant's first 300 steps are that recipe): print reward anchored to them,
the judge's identity / context / class, and the hack indicators (colourfulness ratio, CIEDE2000
moved, Laplacian energy ratio).

    python experiments/one-run-print-reward/one_run_vs_sequential.py [--subjects boot3,glasses3] [--seed 0] [--root runs/issue15]
        [--arms sequential,one-run,sequential-reg0,one-run-handover] [--sheet experiments/one-run-print-reward/one_run_vs_sequential.png]

``one-run-handover`` (``rl.handover``) hands over at step 300 as the sequential path does: the
reward alone from then on, fresh AdamW, no discriminator; ``sequential-reg0`` is its sequential
twin (the LADD run, then DRaFT with the subject loss off, the tuning half's choice).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from PIL import Image  # noqa: E402
from rl_test_half import _images, score  # noqa: E402
from subject_runs import mean_se  # noqa: E402

from dreamtune.miniature.demo import EVAL_CONTEXTS  # noqa: E402

ANCHOR = "anchor: LoRA + prior + LADD, no reward"
ARMS = {
    "sequential": "rl-draft-after-ladd/{run}/after",  # then DRaFT, subject loss on
    "one-run": "one-run/{run}/personalized",  # DRaFT joins at 300, everything else keeps training
    "sequential-reg0": "rl-draft-after-ladd-reg0/{run}/after",  # then DRaFT, subject loss off (the tuning half's choice)
    "one-run-handover": "one-run-handover/{run}/personalized",
}  # DRaFT takes over at 300 (rl.handover, subject loss off)
FIGURES = (
    "reward_after",
    "identity_after",
    "context_after",
    "class_after",
    "colourfulness_ratio",
    "delta_e00_to_start",
    "laplacian_ratio",
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", default="boot3,glasses3")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--root", default=str(ROOT / "runs" / "issue15"))
    parser.add_argument(
        "--arms", default="sequential,one-run", help=f"compared beside the anchor, from {', '.join(ARMS)}"
    )
    parser.add_argument("--sheet", default="", help="write a contact sheet here: the anchor and each arm per subject")
    args = parser.parse_args()
    root, cache = Path(args.root), {}
    chosen = args.arms.split(",")
    unknown = [arm for arm in chosen if arm not in ARMS]
    if unknown:
        parser.error(f"unknown arms {unknown}; choose from {', '.join(ARMS)}")
    results: dict[str, list[dict]] = {ANCHOR: [], **{arm: [] for arm in chosen}}
    sheet_rows = []
    for subject in args.subjects.split(","):
        run = f"{subject}-s{args.seed}"
        start = root / "lora+prior+ladd" / run
        anchor, _ = _images(start / "personalized")
        photos = [Image.open(p).convert("RGB") for p in sorted((start / "photos").glob("*.png"))]
        arms = {arm: root / ARMS[arm].format(run=run) for arm in chosen}
        missing = [str(folder) for folder in arms.values() if not (folder / "generations.json").is_file()]
        if missing:
            print(f"{subject}: not finished ({', '.join(missing)}); skipped")
            continue
        sheet_rows.append((subject, "anchor", anchor))
        for index, (arm, folder) in enumerate(arms.items()):
            images, _ = _images(folder)
            figures = score(anchor, images, subject, photos, cache)
            if index == 0:  # the anchor scored against itself: its reward, the judge's verdicts on it
                results[ANCHOR].append(
                    {
                        "subject": subject,
                        "colourfulness_ratio": 1.0,
                        "delta_e00_to_start": 0.0,
                        "laplacian_ratio": 1.0,
                        **{
                            key.replace("_before", "_after"): value
                            for key, value in figures.items()
                            if key.endswith("_before")
                        },
                    }
                )
            results[arm].append({"subject": subject, **figures})
            sheet_rows.append((subject, arm, images))
            print(
                json.dumps({"subject": subject, "arm": arm, **{k: round(v, 4) for k, v in figures.items()}}), flush=True
            )
    print(f"\n| arm ({args.subjects}, seed {args.seed}) | " + " | ".join(FIGURES) + " |")
    print("|---|" + "---|" * len(FIGURES))
    for arm, runs in results.items():
        if runs:
            cells = [f"{m:.3f} ± {s:.3f}" for m, s, _ in (mean_se([r[k] for r in runs]) for k in FIGURES)]
            print(f"| {arm} ({len(runs)}) | " + " | ".join(cells) + " |")
    if args.sheet and sheet_rows:
        from dreamtune.sampling.contact_sheet import contact_sheet, save_png

        images, captions = [], []
        for subject, label, row in sheet_rows:
            for index, context in enumerate(EVAL_CONTEXTS):
                images.append(row[2 * index])
                captions.append(f"{subject} {label}" if index == 0 else context)
        title = f"one run vs sequential (seed {args.seed}): anchor, {', '.join(chosen)}"
        print(
            f"wrote {save_png(contact_sheet(images, captions, columns=len(EVAL_CONTEXTS), cell=96, title=title), Path(args.sheet))}"
        )


if __name__ == "__main__":
    main()
