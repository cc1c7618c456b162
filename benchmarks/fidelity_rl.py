"""Subject-fidelity RL on new shapes, judged by a scorer the reward never saw (issue 35, item 3).

Start from each finished LoRA + prior run of a new-shape half (``benchmarks/miniature_methods.py
--half new-tuning|new-test``), raise ``subject_in_context`` (the mini CLIP: the subject against its
class images, the prompted scene against the run's other scenes, λ-harmonic) with DRaFT or DDPO on
the 8 RL contexts while the denoising + prior loss keeps the subject, then judge before and after on
the method table's 8 evaluation contexts x 2 seeds (never trained on) with the miniature's judge —
a separate network no reward uses:

  identity (all)   the subject is the nearest of all instances (the headline; +15 points is the target)
  identity (class) the subject is the nearest of its class's instances
  context          the judge's context head names the prompted scene (kept within 3 points)
  reward           subject_in_context on the evaluation images, its scenes the evaluation prompts
  hacks            colourfulness after / before and CIEDE2000 between after and before (how far it moved)

    python benchmarks/fidelity_rl.py --half new-tuning --seeds 0 [--algorithm draft] [--steps 60]
                                     [--tag T] [--subjects a,b] [--extra rl.identity_weight=0.7 ...] [--collect]

Each image is also judged on LittleCMS's own 8-bit print of it (SWOP, black-point compensation, paper white).
Runs are resumable (a run with metrics.json is kept; finished runs' figures and logs are kept in
experiments/subject-fidelity-rl/runs/ and read back by later sessions); writes ROOT/summary.md, ROOT/before_after.png,
the same as soft proofs (ROOT/before_after_printed.png) and the reward against DRaFT's KL term (ROOT/reward_vs_kl.png).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import subject_split  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402
from rl_figures import littlecms_prints, write_pictures  # noqa: E402
from rl_test_half import RECIPES, keep, pixels, restore, run_one, sweep  # noqa: E402
from subject_runs import mean_se  # noqa: E402

from dreamtune.miniature import scenery, world  # noqa: E402
from dreamtune.miniature.assemble import MODEL_DIR  # noqa: E402
from dreamtune.miniature.demo import EVAL_CONTEXTS, IDENTIFIER, judge_rows, photographs  # noqa: E402

REWARD = ("rl.rewards.print_proof=0", "rl.rewards.subject_in_context=1")
FIGURES = (
    ("identity (all)", "judge_identity_all", 100),
    ("identity (class)", "judge_identity", 100),
    ("context", "judge_context", 100),
    ("reward", "reward", 1),
    ("reward part: identity", "reward_identity", 1),
    ("reward part: context", "reward_context", 1),
    ("identity (all), on LittleCMS prints", "print_identity_all", 100),
    ("context, on LittleCMS prints", "print_context", 100),
)


def _generated(folder: Path) -> tuple[list, list[dict]]:
    record = json.loads((folder / "generations.json").read_text())
    return [Image.open(folder / r["file"]).convert("RGB") for r in record["images"]], record["images"]


def measure(start: Path, out: Path, subject: str, cache: dict) -> dict:
    """After-RL images made exactly as the start's ``personalized/`` were; both judged and scored."""
    from dreamtune.evaluation.features import load_clip
    from dreamtune.rewards.alignment import SubjectInContext
    from dreamtune.rewards.colour import ciede2000, colourfulness, srgb_to_lab
    from dreamtune.sampling.generate import GenerateRequest, generate

    before, records = _generated(start / "personalized")
    noun = world.instance(subject).class_noun
    prompts = [f"a {IDENTIFIER} {noun} {scenery.PHRASES[c]}" for c in EVAL_CONTEXTS]
    shutil.rmtree(out / "after", ignore_errors=True)
    generate(
        GenerateRequest(
            trained=str(out / "run" / "model"),
            prompts=tuple(prompts),
            images_per_prompt=2,
            steps=25,
            guidance_scale=4.0,
            resolution=64,
        ),
        out / "after",
        show_progress=False,
    )
    after, again = _generated(out / "after")
    assert [r["seed"] for r in again] == [r["seed"] for r in records], "before and after must pair by seed"
    photos = photographs(start / "photos")
    rows: dict = {}
    judge_rows(rows, MODEL_DIR / "judge", MODEL_DIR, subject, {"before": before, "after": after}, photos, 2, cache)
    printed = {"before": littlecms_prints(before), "after": littlecms_prints(after)}
    judge_rows(
        rows, MODEL_DIR / "judge", MODEL_DIR, subject, {f"print_{w}": x for w, x in printed.items()}, photos, 2, cache
    )
    if "clip" not in cache:
        cache["clip"] = load_clip(MODEL_DIR / "clip")
    class_images = [Image.open(p).convert("RGB") for p in sorted((start / "run" / "class_images").glob("**/*.png"))]
    reward = SubjectInContext(cache["clip"], photos, class_images, prompts, IDENTIFIER)
    b, a = pixels(before), pixels(after)
    image_prompts = [r["prompt"] for r in records]
    with torch.no_grad():
        parts = {name: reward.parts(x, image_prompts, {}) for name, x in (("before", b), ("after", a))}
        moved = ciede2000(srgb_to_lab(a), srgb_to_lab(b)).mean(dim=(1, 2))
    result = {"subject": subject}
    for when in ("before", "after"):
        result.update({f"{k}_{when}": v for k, v in rows[when].items()})
        result.update({f"print_{k.removeprefix('judge_')}_{when}": v for k, v in rows[f"print_{when}"].items()})
        result[f"reward_{when}"] = float(parts[when][reward.name].mean())
        result[f"reward_identity_{when}"] = float(parts[when]["identity"].mean())
        result[f"reward_context_{when}"] = float(parts[when]["context"].mean())
    result["colourfulness_ratio"] = float(colourfulness(a).mean() / colourfulness(b).mean())
    result["delta_e00_to_start"] = float(moved.mean())
    return result


def markdown(runs: list[dict]) -> str:
    """Before, after and the change of each figure: mean ± s.e. over subjects (a subject's seeds averaged first)."""
    subjects = sorted({r["subject"] for r in runs})
    groups = [[r for r in runs if r["subject"] == s] for s in subjects]

    def over(value, decimals: int = 3) -> str:
        mean, se, _ = mean_se([float(np.mean([value(r) for r in group])) for group in groups])
        return f"{mean:.{decimals}f} ± {se:.{decimals}f}"

    def signed(text: str) -> str:
        return text if text.startswith("-") else "+" + text

    def figure(key: str, scale: float, when: str) -> str:
        decimals = 1 if scale == 100 else 3  # points, or the reward's own units
        if when == "change":
            return over(lambda r: scale * (r[f"{key}_after"] - r[f"{key}_before"]), decimals)
        return over(lambda r: scale * r[f"{key}_{when}"], decimals)

    lines = ["| figure | before | after | change |", "|---|---|---|---|"]
    for label, key, scale in FIGURES:
        before, after, change = (figure(key, scale, w) for w in ("before", "after", "change"))
        lines.append(f"| {label} | {before} | {after} | {signed(change)} |")
    lines.append(f"| colourfulness after / before | | {over(lambda r: r['colourfulness_ratio'])} | |")
    lines.append(f"| CIEDE2000 moved | | {over(lambda r: r['delta_e00_to_start'], 1)} | |")
    seeds = sorted({r["seed"] for r in runs})
    return "\n".join(lines) + f"\n\n{len(runs)} runs: {len(subjects)} subjects x seeds {seeds}"


def half_arguments(description: str) -> argparse.ArgumentParser:
    """The options every RL sweep over a new-shape half takes."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--half", default="new-tuning", choices=["new-tuning", "new-test"])
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--subjects", default="")
    parser.add_argument("--tag", default="", help="appended to the run folder's name (runs with other --extra)")
    parser.add_argument("--extra", nargs="*", default=[], help="overrides added to every run")
    parser.add_argument("--collect", action="store_true", help="run nothing: tabulate the finished runs")
    return parser


def run_half(parser, args, folder: str, algorithm: str, steps: int, reward: tuple, judge) -> tuple[Path, Path, list]:
    """Every (seed, subject) of ``args.half`` from its LoRA + prior start into runs/<folder>/<half>/<algorithm><tag>
    (finished runs read back; ``--collect`` runs nothing); returns (starts, root, runs)."""
    starts = ROOT / "runs" / f"new-shape-{args.half.removeprefix('new-')}" / "lora+prior"
    root = ROOT / "runs" / folder / args.half / f"{algorithm}{args.tag}"
    try:
        subjects = subject_split.subjects_of(args.half, args.subjects)
    except ValueError as error:
        parser.error(str(error))
    cache: dict = {}
    extra = (*reward, *args.extra)
    go = lambda start, out: None if args.collect else run_one(start, out, algorithm, steps, cache, extra, judge)  # noqa: E731
    return starts, root, sweep(starts, root, args.seeds, subjects, go)


def main() -> None:
    parser = half_arguments(__doc__.splitlines()[0])
    parser.add_argument("--algorithm", choices=sorted(RECIPES), default="draft")
    parser.add_argument("--steps", type=int, default=0, help="RL steps (default: 60 for DRaFT, 160 for DDPO)")
    args = parser.parse_args()
    steps = args.steps or {"draft": 60, "ddpo": 160}[args.algorithm]
    record = ROOT / "experiments" / "subject-fidelity-rl" / "runs" / f"{args.half}-{args.algorithm}{args.tag}"
    restore(ROOT / "runs" / "fidelity-rl" / args.half / f"{args.algorithm}{args.tag}", record)
    starts, root, runs = run_half(parser, args, "fidelity-rl", args.algorithm, steps, REWARD, measure)
    if not runs:
        print("no finished runs yet")
        return
    keep(root, record, runs)
    text = markdown(runs)
    (root / "summary.md").write_text(text + "\n")
    print(text)
    write_pictures(root, starts, runs, "subject_in_context")


if __name__ == "__main__":
    main()
