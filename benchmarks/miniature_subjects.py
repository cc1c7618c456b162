"""The demo's recipe over a half of the held-out subjects and several training seeds, judged by the
miniature's judge (issue 14's protocol: tune on the tuning half, report on the test half).

    python benchmarks/miniature_subjects.py --half tuning [--seeds 0,1,2] [--label baseline] [--jobs N] [-- OVERRIDES...]

Each (subject, seed) is one `dreamtune demo` run in --root/LABEL/SUBJECT-sSEED; finished runs are
kept and skipped, so the benchmark resumes after an interruption. Prints per-run rows and the
mean ± standard error of: judge identity of personalized images (chance 25 %), their context
accuracy relative to ground truth's, class, the judge's and CLIP-I's floor→ceiling gap closed;
writes --root/LABEL/summary-HALF.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import subject_split  # noqa: E402
from subject_runs import Job, Method, markdown, row, run_jobs, table  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--half", choices=list(subject_split.HALVES), required=True)
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--label", default="baseline")
    parser.add_argument("--recipe", default="miniature-lora.yaml", help="a recipe in configs/")
    parser.add_argument("--jobs", type=int, default=1, help="runs at once (on a GPU several fill it)")
    parser.add_argument("--root", default=str(ROOT / "runs" / "subjects"))
    parser.add_argument("overrides", nargs="*", help="config overrides of the recipe, e.g. train.steps=400")
    args = parser.parse_args()

    subjects = subject_split.HALVES[args.half]
    seeds = [int(s) for s in args.seeds.split(",")]
    method = Method(args.label, args.recipe, tuple(args.overrides))
    results = run_jobs(
        [Job(method, subject, seed) for seed in seeds for subject in subjects], Path(args.root), args.jobs
    )
    summary = table(results, [args.label])
    rows = {f"{job.subject}-s{job.seed}": row(metrics) for job, metrics in results}
    (Path(args.root) / args.label / f"summary-{args.half}.json").write_text(
        json.dumps(
            {
                "half": args.half,
                "seeds": seeds,
                "recipe": args.recipe,
                "overrides": args.overrides,
                "runs": rows,
                "mean_se": summary,
            },
            indent=1,
        )
    )
    print(f"\n{args.half} half, {len(subjects)} subjects x {len(seeds)} seeds, label {args.label}")
    print(markdown(summary))


if __name__ == "__main__":
    main()
