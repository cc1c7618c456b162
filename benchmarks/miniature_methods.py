"""The method table on the miniature (issue 14): textual inversion, LoRA and full DreamBooth, each
with and without prior preservation, over a half of the held-out subjects and several training
seeds, with the floor (base model, class prompt) and ceiling (ground truth) rows, judged by the
miniature's validated judge.

    python benchmarks/miniature_methods.py --half test --seeds 0,1,2 [--jobs N] [--minutes M] [--methods a,b]

Runs go to --root/METHOD/SUBJECT-sSEED (resumable: finished runs are reused). Seed-major order, so
a sweep cut short by --minutes still covers every method on the seeds it reached. Prints a
markdown table (mean ± s.e. over subject × seed runs) and writes --root/methods-HALF.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import subject_split  # noqa: E402
from subject_runs import METHODS, VARIANTS, Job, markdown, run_jobs, table  # noqa: E402


def method_sheet(root: Path, subjects: list[str], methods: list[str], half: str = "test") -> Path:
    """Rows: the base model (floor), each method's personalized images, ground truth — seed 0, the
    first image of each of the demo's 8 evaluation contexts."""
    from PIL import Image

    from dreamtune.miniature import world
    from dreamtune.miniature.demo import EVAL_CONTEXTS
    from dreamtune.sampling.contact_sheet import contact_sheet, save_png

    images, captions = [], []
    for subject in subjects:
        rows = [("base model", root / methods[0] / f"{subject}-s0" / "floor")] + [
            (method, root / method / f"{subject}-s0" / "personalized") for method in methods
        ]
        for label, folder in rows:
            for index, context in enumerate(EVAL_CONTEXTS):
                images.append(Image.open(folder / f"{2 * index:04d}.png").convert("RGB"))
                captions.append(f"{subject} {label}" if index == 0 else context)
        for index, context in enumerate(EVAL_CONTEXTS):
            images.append(world.render(world.Scene(subject, context), 90_000))
            captions.append(f"{subject} ground truth" if index == 0 else context)
    return save_png(
        contact_sheet(
            images,
            captions,
            columns=len(EVAL_CONTEXTS),
            cell=96,
            title=f"{half} half, training seed 0: rows = base model, each method, ground truth",
        ),
        root / "method_sheet.png",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--half", choices=list(subject_split.HALVES), required=True)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument(
        "--methods",
        default=",".join(m.label for m in METHODS),
        help=f"comma-separated; besides the table's: {', '.join(m.label for m in VARIANTS)}",
    )
    parser.add_argument(
        "--subjects", default="", help="comma-separated subset of the half (e.g. to run two processes at once)"
    )
    parser.add_argument("--jobs", type=int, default=1, help="runs at once (on a GPU several fill it)")
    parser.add_argument("--minutes", type=float, default=0, help="start no run after this many minutes (0: no limit)")
    parser.add_argument("--root", default=str(ROOT / "runs" / "methods"))
    parser.add_argument("--collect", action="store_true", help="run nothing: tabulate the finished runs under --root")
    parser.add_argument(
        "--paired", default="", help="also each method minus this one on the same subject and seed, e.g. lora+prior"
    )
    parser.add_argument(
        "--rejudge",
        metavar="JUDGE_DIR",
        help="judge the finished runs' saved images again with this judge "
        "(written to --root-rejudged), then tabulate those",
    )
    parser.add_argument(
        "--resample",
        metavar="SAMPLER:STEPS:GUIDANCE",
        help="draw the finished runs' personalized images again from their trained models with this sampler "
        "(e.g. euler_a:25:4; written to --root-SAMPLER-STEPS-gGUIDANCE, resumable), judge and tabulate those",
    )
    parser.add_argument(
        "--sheet",
        metavar="SUBJECTS",
        help="run nothing: a contact sheet of the finished runs under --root "
        "(floor, each method, ground truth; seed 0, one image per context) for these subjects, e.g. can3,boot3",
    )
    parser.add_argument(
        "--extra", nargs="*", default=[], help="overrides added to every run (e.g. train.steps=3 for a smoke test)"
    )
    parser.add_argument(
        "--model",
        default="",
        help="a miniature pipeline folder to personalize instead of the shipped one (its base rows too)",
    )
    args = parser.parse_args()

    chosen = [m for m in (*METHODS, *VARIANTS) if m.label in args.methods.split(",")]
    if args.sheet:
        print(f"wrote {method_sheet(Path(args.root), args.sheet.split(','), [m.label for m in chosen], args.half)}")
        return
    try:
        subjects = subject_split.subjects_of(args.half, args.subjects)
    except ValueError as error:
        parser.error(str(error))
    jobs = [
        Job(m, subject, int(seed), tuple(args.extra), args.model)
        for seed in args.seeds.split(",")
        for subject in subjects
        for m in chosen
    ]
    if args.rejudge:
        from subject_runs import rejudge

        target = Path(f"{args.root.rstrip('/')}-rejudged")
        print(f"{rejudge(Path(args.root), target, Path(args.rejudge))} runs judged again into {target}")
        args.root, args.collect = str(target), True
    if args.resample:
        from subject_runs import resample

        scheduler, steps, guidance = args.resample.split(":")
        target = Path(f"{args.root.rstrip('/')}-{scheduler}-{steps}-g{guidance}")
        labels = [m.label for m in chosen]
        drawn = resample(Path(args.root), target, labels, scheduler, int(steps), float(guidance), args.model or None)
        print(f"{drawn} runs drawn again into {target}")
        args.root, args.collect = str(target), True
    deadline = time.time() if args.collect else time.time() + 60 * args.minutes if args.minutes else None
    results = run_jobs(jobs, Path(args.root), args.jobs, deadline)
    summary = table(results, [m.label for m in chosen])
    text = markdown(summary)
    root = Path(args.root)
    (root / f"methods-{args.half}.json").write_text(
        json.dumps(
            {
                "half": args.half,
                "seeds": args.seeds,
                "table": summary,
                "methods": {m.label: [m.recipe, *m.overrides] for m in chosen},
            },
            indent=1,
        )
    )
    (root / f"methods-{args.half}.md").write_text(text + "\n")
    print(f"\n{args.half} half, {len(results)} of {len(jobs)} runs")
    print(text)
    if args.paired:
        from subject_runs import paired_differences

        paired = paired_differences(results, args.paired)
        (root / f"methods-{args.half}-paired.md").write_text(paired + "\n")
        print("\n" + paired)


if __name__ == "__main__":
    main()
