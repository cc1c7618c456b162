"""RL on print_in_context from personalized new-shape starts, judged by the reward's judge and a held-out one
(issue 35, item 2).

Start from each finished LoRA + prior run of a new-shape half, raise ``print_in_context`` (identity through
the miniature's judge, context through the mini CLIP, both on the simulated print; floors and ceilings from
the start's per-prompt average print; DRaFT's KL leash ``rl.kl_weight``) on the 8 RL contexts while the
denoising + prior loss keeps the subject; then, on the method table's 8 evaluation contexts x 2 seeds (never
trained on), before and after, each image printed by LittleCMS itself (8-bit, black-point compensation,
paper white):

  reward            print_in_context on the evaluation images (floors from the *before* images per prompt)
  identity, context the shipped judge on the prints (the network inside the reward's identity half)
  held out          identity and context of the hard-negative judge (runs/judge-v4, used by no reward)
  hacks             colourfulness, clipped share and grain of the prints after / before; CIEDE2000 moved

    python benchmarks/print_rl.py --half new-tuning --seeds 0 [--steps 60] [--tag=-T] [--subjects a,b]
                                  [--extra rl.kl_weight=1 ...] [--collect]

Runs are resumable (a run with metrics.json is kept); writes ROOT/summary.md, ROOT/before_after.png, the same as
soft proofs (ROOT/before_after_printed.png) and the reward against the KL term over training (ROOT/reward_vs_kl.png).
A run measured before runs/judge-v4 exists gets the held-out verdicts on a later call; each fully judged run's
figures and training log are kept in experiments/print-in-context/runs/<half><tag>/ and read back by later sessions
(runs/ does not outlive one), so a 3-seed sweep can span sessions.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from fidelity_rl import _generated, half_arguments, run_half  # noqa: E402
from rl_figures import littlecms_prints, write_pictures  # noqa: E402
from rl_test_half import keep, pixels, restore  # noqa: E402
from subject_runs import mean_se  # noqa: E402

from dreamtune.miniature import scenery, world  # noqa: E402
from dreamtune.miniature.assemble import MODEL_DIR  # noqa: E402
from dreamtune.miniature.demo import EVAL_CONTEXTS, IDENTIFIER, judge_rows, photographs  # noqa: E402

HELD_OUT = ROOT / "runs" / "judge-v4" / "judge"
WIDTH_CM = 4.0  # a 64-pixel image printed as a thumbnail, seen from 40 cm
REWARD = (
    "rl.rewards.print_proof=0",
    "rl.rewards.print_in_context=1",
    f"rl.identity_model={MODEL_DIR / 'judge'}",
    f"rl.print_width_cm={WIDTH_CM}",
    "rl.kl_weight=1.0",
)
FIGURES = (
    ("reward (print_in_context)", "reward", 1),
    ("identity (all), judge", "judge_identity_all", 100),
    ("context, judge", "judge_context", 100),
    ("identity (all), held-out judge", "held_identity_all", 100),
    ("context, held-out judge", "held_context", 100),
)


def measure(start: Path, out: Path, subject: str, cache: dict) -> dict:
    from PIL import Image

    from dreamtune.evaluation.features import load_clip
    from dreamtune.miniature.judge import JudgeFeatures, load_judge
    from dreamtune.rewards.alignment import SubjectInContext
    from dreamtune.rewards.colour import ciede2000, colourfulness, srgb_to_lab
    from dreamtune.rewards.print_in_context import PrintInContext, clipped_share, grain
    from dreamtune.rewards.print_proof import littlecms_proof
    from dreamtune.rewards.simulated_print import SimulatedPrint, Viewing
    from dreamtune.sampling.generate import GenerateRequest, generate

    before, records = _generated(start / "personalized")
    noun = world.instance(subject).class_noun
    prompts = [f"a {IDENTIFIER} {noun} {scenery.PHRASES[c]}" for c in EVAL_CONTEXTS]
    shutil.rmtree(out / "after", ignore_errors=True)
    request = GenerateRequest(
        trained=str(out / "run" / "model"),
        prompts=tuple(prompts),
        images_per_prompt=2,
        steps=25,
        guidance_scale=4.0,
        resolution=64,
    )
    generate(request, out / "after", show_progress=False)
    after, again = _generated(out / "after")
    assert [r["seed"] for r in again] == [r["seed"] for r in records], "before and after must pair by seed"
    photos = photographs(start / "photos")
    if "clip" not in cache:
        cache["clip"] = load_clip(MODEL_DIR / "clip")
        cache["identity"] = JudgeFeatures(load_judge(MODEL_DIR / "judge"))
    printer = SimulatedPrint(viewing=Viewing(WIDTH_CM, 40.0))
    image_prompts = [r["prompt"] for r in records]
    judged = SubjectInContext(
        cache["clip"], photos, [], prompts, IDENTIFIER, 0.9, cache["identity"], view=printer, margin=False
    )
    reward = PrintInContext(judged, printer)
    b, a = pixels(before), pixels(after)
    reward.set_floors(b, image_prompts)
    printed = {
        when: littlecms_proof(x, printer.profile, black_point_compensation=True, paper_white=True)
        for when, x in (("before", b), ("after", a))
    }
    as_images = {
        when: [Image.fromarray((p.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)) for p in x]
        for when, x in printed.items()
    }
    rows: dict = {}
    judge_rows(rows, MODEL_DIR / "judge", MODEL_DIR, subject, as_images, photos, 2, cache)
    result = {"subject": subject}
    with torch.no_grad():
        for when, x in (("before", b), ("after", a)):
            parts = reward.parts(x, image_prompts, {})
            result[f"reward_{when}"] = float(parts[reward.name].mean())
            result.update({f"part_{k}_{when}": float(v.mean()) for k, v in parts.items() if k != reward.name})
            result.update({f"{k}_{when}": v for k, v in rows[when].items()})
        ratio = lambda f: float(f(printed["after"]).mean() / f(printed["before"]).mean().clamp_min(1e-9))  # noqa: E731
        result["colourfulness_ratio"] = ratio(colourfulness)
        result["clipped_ratio"] = float((clipped_share(a).mean() + 1e-4) / (clipped_share(b).mean() + 1e-4))
        result["grain_ratio"] = ratio(grain)
        result["delta_e00_to_start"] = float(ciede2000(srgb_to_lab(a), srgb_to_lab(b)).mean())
    if (HELD_OUT / "judge.safetensors").is_file():
        result.update(held_out(start, out, subject, cache))
    return result


def held_out(start: Path, out: Path, subject: str, cache: dict) -> dict:
    """The hard-negative judge's verdicts (used by no reward) on the before and after prints."""

    images = {"before": _generated(start / "personalized")[0], "after": _generated(out / "after")[0]}
    photos = photographs(start / "photos")
    held: dict = {}
    prints = {when: littlecms_prints(x) for when, x in images.items()}
    judge_rows(held, HELD_OUT, MODEL_DIR, subject, prints, photos, 2, cache.setdefault("held", {}))
    return {f"held_{k.removeprefix('judge_')}_{when}": v for when in held for k, v in held[when].items()}


def markdown(runs: list[dict]) -> str:
    subjects = sorted({r["subject"] for r in runs})
    groups = [[r for r in runs if r["subject"] == s] for s in subjects]

    def over(value, digits: int = 1) -> str:
        mean, se, _ = mean_se([float(np.mean([value(r) for r in group])) for group in groups])
        return f"{mean:.{digits}f} ± {se:.{digits}f}"

    lines = ["| figure | before | after | change |", "|---|---|---|---|"]
    for label, key, scale in FIGURES:
        digits = 1 if scale == 100 else 3
        before = over(lambda r, k=key, s=scale: s * r[f"{k}_before"], digits)
        after = over(lambda r, k=key, s=scale: s * r[f"{k}_after"], digits)
        change = over(lambda r, k=key, s=scale: s * (r[f"{k}_after"] - r[f"{k}_before"]), digits)
        lines.append(f"| {label} | {before} | {after} | {'' if change.startswith('-') else '+'}{change} |")
    gain = over(lambda r: 100 * (r["reward_after"] / r["reward_before"] - 1))
    lines.append(f"| reward change, % | | | {'' if gain.startswith('-') else '+'}{gain} % |")
    for part in ("identity", "context", "colour", "tonal", "clipping", "grain", "ink"):
        before, after = (over(lambda r, k=f"part_{part}_{when}": r[k], 3) for when in ("before", "after"))
        lines.append(f"| part: {part} | {before} | {after} | |")
    for label, key in (
        ("colourfulness after / before (prints)", "colourfulness_ratio"),
        ("clipped share after / before", "clipped_ratio"),
        ("grain after / before (prints)", "grain_ratio"),
        ("CIEDE2000 moved", "delta_e00_to_start"),
    ):
        lines.append(f"| {label} | | {over(lambda r, k=key: r[k], 3)} | |")
    seeds = sorted({r["seed"] for r in runs})
    return "\n".join(lines) + f"\n\n{len(runs)} runs: {len(subjects)} subjects x seeds {seeds}"


def fill_held_out(root: Path, starts: Path, runs: list[dict]) -> None:
    """The held-out judge's verdicts added to runs measured before that judge existed (while their images last)."""
    cache: dict = {}
    for r in runs:
        name = f"{r['subject']}-s{r['seed']}"
        if "held_identity_all_after" not in r and (root / name / "after").is_dir():
            r.update(held_out(starts / name, root / name, r["subject"], cache))
            (root / name / "metrics.json").write_text(json.dumps(r, indent=1))


def main() -> None:
    parser = half_arguments(__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60)
    args = parser.parse_args()
    record = ROOT / "experiments" / "print-in-context" / "runs" / f"{args.half}{args.tag}"
    restore(ROOT / "runs" / "print-rl" / args.half / f"draft{args.tag}", record)
    starts, root, runs = run_half(parser, args, "print-rl", "draft", args.steps, REWARD, measure)
    if not runs:
        print("no finished runs yet")
        return
    if (HELD_OUT / "judge.safetensors").is_file():
        fill_held_out(root, starts, runs)
    runs = [r for r in runs if "held_identity_all_after" in r]  # the held-out judge not trained yet: not tabulated
    keep(root, record, runs)
    if not runs:
        print("no run judged by the held-out judge yet")
        return
    text = markdown(runs)
    (root / "summary.md").write_text(text + "\n")
    print(text)
    write_pictures(root, starts, runs, "print_in_context")


if __name__ == "__main__":
    main()
