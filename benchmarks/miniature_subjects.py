"""The demo's recipe over a half of the held-out subjects and several training seeds, judged by the
miniature's judge (issue 14's protocol: tune on the tuning half, report on the test half).

    python benchmarks/miniature_subjects.py --half tuning [--seeds 0,1,2] [--label baseline] [-- OVERRIDES...]

Each (subject, seed) is one `dreamtune demo` run in --root/LABEL/SUBJECT-sSEED; finished runs are
kept and skipped, so the benchmark resumes after an interruption (an unfinished run folder, which
this script made, is started again). Prints per-run rows and the mean ± standard error of: judge
identity of personalized images (chance 25 %), their context accuracy relative to ground truth's,
the judge's and CLIP-I's floor→ceiling gap closed; writes --root/LABEL/summary-HALF.json.
"""
from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dreamtune.miniature import subject_split  # noqa: E402
from dreamtune.miniature.demo import run_demo  # noqa: E402


def row(metrics: dict) -> dict:
    p, c = metrics["personalized"], metrics["ceiling"]
    return {"identity": p["judge_identity"], "context_vs_truth": p["judge_context"] / c["judge_context"] if c["judge_context"] else None,
            "judge_gap_closed": metrics.get("judge_gap_closed"), "clip_i_gap_closed": metrics.get("clip_i_gap_closed"),
            "floor_identity": metrics["floor"]["judge_identity"]}


def mean_se(values: list[float]) -> tuple[float, float]:
    values = [v for v in values if v is not None]
    mean = sum(values) / len(values)
    spread = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) / math.sqrt(len(values)) if len(values) > 1 else 0.0
    return mean, spread


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--half", choices=["tuning", "test"], required=True)
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--label", default="baseline")
    parser.add_argument("--root", default=str(ROOT / "runs" / "subjects"))
    parser.add_argument("overrides", nargs="*", help="config overrides of the demo's recipe, e.g. train.steps=400")
    args = parser.parse_args()
    from tqdm.auto import tqdm

    subjects = subject_split.TUNING if args.half == "tuning" else subject_split.TEST
    seeds = [int(s) for s in args.seeds.split(",")]
    root = Path(args.root) / args.label
    rows = {}
    runs = [(subject, seed) for subject in subjects for seed in seeds]
    for subject, seed in tqdm(runs, desc=f"{args.half} half", unit="run"):
        out = root / f"{subject}-s{seed}"
        if not (out / "metrics.json").is_file():
            shutil.rmtree(out, ignore_errors=True)      # an interrupted run of this script
            run_demo(out, subject=subject, overrides=[f"train.seed={seed}", *args.overrides])
        rows[f"{subject}-s{seed}"] = row(json.loads((out / "metrics.json").read_text()))
        print(json.dumps({f"{subject}-s{seed}": rows[f"{subject}-s{seed}"]}), flush=True)
    summary = {key: mean_se([r[key] for r in rows.values()]) for key in next(iter(rows.values()))}
    (root / f"summary-{args.half}.json").write_text(json.dumps({"half": args.half, "seeds": seeds, "overrides": args.overrides,
                                                                 "runs": rows, "mean_se": summary}, indent=1))
    print(f"\n{args.half} half, {len(subjects)} subjects x {len(seeds)} seeds, label {args.label}")
    for key, (mean, se) in summary.items():
        print(f"{key:20s} {mean:.3f} ± {se:.3f}")


if __name__ == "__main__":
    main()
