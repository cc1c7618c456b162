"""Reward fine-tuning of *personalized* miniatures, measured honestly (issue 15, part 4): start from
each finished LoRA + prior run of the test half (``benchmarks/miniature_methods.py --methods
lora+prior``), raise the print reward (``print_proof``) with DRaFT-1 or the DDPO recipe while the
denoising + prior loss on the subject's photos keeps the subject, then judge before and after on
the method table's 8 evaluation contexts x 2 seeds (never trained on: the reward's prompts use 8
other contexts):

  reward      print_proof of each image, its anchor ("meant to look like") the start's same-seed image
  identity    the validated judge's instance retrieval, before / after (target: within 5 % of the start)
  context     the judge's context accuracy, before / after (kept)
  hacks       colourfulness after / before, CIEDE2000 between after and before (how far the picture
              moved), Laplacian energy after / before (blur < 1 < noise)

    python benchmarks/rl_test_half.py --starts runs/issue15/lora+prior --algorithm draft [--seeds 0,1,2]
                                      [--root runs/issue15/rl-draft] [--steps 60] [--minutes M] [--collect]
                                      [--half tuning|test] [--subjects a,b] [--extra train.lr=3e-5 ...]

Runs are resumable (a run with metrics.json is kept); prints a markdown table (mean ± s.e. over
runs) and writes ROOT/summary.{json,md} and ROOT/before_after.png (seed 0: before above, after below).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import subject_split  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402
from subject_runs import mean_se  # noqa: E402

from dreamtune import config  # noqa: E402
from dreamtune.miniature import scenery, world  # noqa: E402
from dreamtune.miniature.demo import EVAL_CONTEXTS, IDENTIFIER, photographs  # noqa: E402
from dreamtune.recipes import RECIPES_DIR  # noqa: E402

RL_CONTEXTS = (
    "pink_fabric",
    "purple_rug_forest",
    "wheat_field",
    "eiffel_tower",
    "water",
    "sunflowers",
    "dirt_road",
    "white_rug",
)
RECIPES = {"draft": "miniature-draft.yaml", "ddpo": "miniature-ddpo.yaml"}
FIGURES = (
    "reward_before",
    "reward_after",
    "identity_before",
    "identity_after",
    "context_before",
    "context_after",
    "class_before",
    "class_after",
    "colourfulness_ratio",
    "delta_e00_to_start",
    "laplacian_ratio",
)


def rl_overrides(start: Path, noun: str, seed: int, out: Path, steps: int, extra: tuple[str, ...] = ()) -> list[str]:
    personalized = config.load(start / "run" / "config.yaml")  # the start's own LoRA and prior settings
    lora, prior = personalized.method.lora, personalized.prior
    return [
        f"method.lora.rank={lora.rank}",
        f"method.lora.alpha={lora.alpha}",
        f"method.lora.target_modules={list(lora.target_modules)}",
        f"method.lora.init_from={start / 'run' / 'model'}",
        f"data.instance_dir={start / 'run' / 'data'}",
        f"data.instance_prompt=a {IDENTIFIER} {noun}",
        "prior.enabled=true",
        f"prior.class_prompt=a {noun}",
        f"prior.class_dir={start / 'run' / 'class_images'}",
        f"prior.loss_weight={prior.loss_weight}",
        f"prior.num_class_images={prior.num_class_images}",
        f"prior.sample_steps={prior.sample_steps}",
        f"prior.sampler={prior.sampler}",
        f"prior.guidance_scale={prior.guidance_scale}",
        "rl.rewards.print_quality=0",
        "rl.rewards.print_proof=1",
        f"rl.prompts={['a {subject} {class} ' + scenery.PHRASES[c] for c in RL_CONTEXTS]}",
        f"rl.subject={IDENTIFIER}",
        f"rl.class_noun={noun}",
        "rl.regularize_weight=1.0",
        "monitor.every=0",
        "monitor.select_best=",
        f"train.steps={steps}",
        f"train.seed={seed}",
        f"train.output_dir={out / 'run'}",
        *extra,
    ]


def pixels(images: list) -> torch.Tensor:
    return torch.stack([torch.from_numpy(np.array(i.convert("RGB"))).permute(2, 0, 1) for i in images]).float() / 255


def _images(folder: Path) -> list:
    record = json.loads((folder / "generations.json").read_text())
    return [Image.open(folder / r["file"]).convert("RGB") for r in record["images"]], record


def measure(start: Path, out: Path, subject: str, cache: dict) -> dict:
    """Generate after-RL images exactly as the start's ``personalized/`` were made; judge both."""
    from dreamtune.sampling.generate import GenerateRequest, generate

    before, record = _images(start / "personalized")
    noun = world.instance(subject).class_noun
    phrases = [scenery.PHRASES[c] for c in EVAL_CONTEXTS]
    generate(
        GenerateRequest(
            trained=str(out / "run" / "model"),
            prompts=tuple(f"a {IDENTIFIER} {noun} {p}" for p in phrases),
            images_per_prompt=2,
            steps=25,
            guidance_scale=4.0,
            resolution=64,
        ),
        out / "after",
    )
    after, again = _images(out / "after")
    assert [r["seed"] for r in again["images"]] == [r["seed"] for r in record["images"]], (
        "before and after must pair by seed"
    )
    photos = photographs(start / "photos")
    return {"subject": subject, **score(before, after, subject, photos, cache)}


def score(before: list, after: list, subject: str, photos: list, cache: dict) -> dict:
    """The print reward of ``after`` anchored to the same-seed ``before`` images, the judge's verdicts
    on both, and the hack indicators (colourfulness, CIEDE2000 moved, Laplacian energy ratio)."""
    from dreamtune.miniature.assemble import MODEL_DIR
    from dreamtune.miniature.demo import judge_rows
    from dreamtune.rewards.colour import ciede2000, colourfulness, luminance, srgb_to_lab
    from dreamtune.rewards.print_proof import PrintProof, _laplacian_energy

    rows: dict = {}
    judge_rows(rows, MODEL_DIR / "judge", MODEL_DIR, subject, {"before": before, "after": after}, photos, 2, cache)
    if "proof" not in cache:
        cache["proof"] = PrintProof()
    proof = cache["proof"]
    b, a = pixels(before), pixels(after)
    with torch.no_grad():
        reward_before, reward_after = proof(b, [], {"reference": b}), proof(a, [], {"reference": b})
        parts_after = proof.parts(a, [], {"reference": b})
        moved = ciede2000(srgb_to_lab(a), srgb_to_lab(b)).mean(dim=(1, 2))
        laplacian = _laplacian_energy(luminance(a)) / _laplacian_energy(luminance(b)).clamp(min=1e-8)
    return {
        "reward_before": float(reward_before.mean()),
        "reward_after": float(reward_after.mean()),
        **{f"after_{k}": float(v.mean()) for k, v in parts_after.items()},
        "identity_before": rows["before"]["judge_identity"],
        "identity_after": rows["after"]["judge_identity"],
        "context_before": rows["before"]["judge_context"],
        "context_after": rows["after"]["judge_context"],
        "class_before": rows["before"]["judge_class"],
        "class_after": rows["after"]["judge_class"],
        "colourfulness_ratio": float(colourfulness(a).mean() / colourfulness(b).mean()),
        "delta_e00_to_start": float(moved.mean()),
        "laplacian_ratio": float(laplacian.mean()),
    }


def _claim(out: Path) -> Path | None:
    """A claim on ``out`` beside it (its owner's pid), or None while a live process holds it: several sweeps over the
    same half share the work without wiping each other's unfinished runs."""
    claim = out.with_name(out.name + ".claim")
    claim.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(2):
        try:
            with open(claim, "x") as handle:
                handle.write(str(os.getpid()))
            return claim
        except FileExistsError:
            try:
                os.kill(int(claim.read_text() or 0), 0)
                return None  # a live sweep is on it
            except (ProcessLookupError, ValueError):
                claim.unlink(missing_ok=True)  # left by a killed sweep
    return None


def run_one(
    start: Path, out: Path, algorithm: str, steps: int, cache: dict, extra: tuple[str, ...] = (), judge=None
) -> dict | None:
    """One RL run from ``start`` into ``out`` (kept when finished), then ``judge`` (default: :func:`measure`);
    None when another sweep is running it."""
    from dreamtune.training.run import train

    subject, seed = start.name.rsplit("-s", 1)
    if (out / "metrics.json").is_file():
        return json.loads((out / "metrics.json").read_text())
    claim = _claim(out)
    if claim is None:
        return None
    try:
        if (out / "metrics.json").is_file():  # finished by another sweep between the look and the claim
            return json.loads((out / "metrics.json").read_text())
        shutil.rmtree(out, ignore_errors=True)  # an unfinished run of an interrupted sweep (this script made it)
        out.mkdir(parents=True)
        started = time.perf_counter()
        noun = world.instance(subject).class_noun
        train(
            config.load(RECIPES_DIR / RECIPES[algorithm], rl_overrides(start, noun, int(seed), out, steps, extra)),
            show_progress=False,
            log=lambda *_: None,
        )
        metrics = {
            **(judge or measure)(start, out, subject, cache),
            "seed": int(seed),
            "seconds": round(time.perf_counter() - started, 1),
        }
        (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
        return metrics
    finally:
        claim.unlink(missing_ok=True)


def _row(label: str, groups: list[list[dict]]) -> str:
    """One table row: each figure's mean ± s.e. over ``groups`` (each group's runs averaged first)."""

    def over_groups(value) -> tuple[float, float]:
        mean, se, _ = mean_se([float(np.mean([value(r) for r in group])) for group in groups])
        return mean, se

    cells = [f"{m:.3f} ± {e:.3f}" for m, e in (over_groups(lambda r, k=key: r[k]) for key in FIGURES)]
    change, change_se = over_groups(lambda r: r["reward_after"] / r["reward_before"] - 1)
    identity, identity_se = over_groups(lambda r: r["identity_after"] - r["identity_before"])
    return (
        f"| {label} | " + " | ".join(cells) + f" | {100 * change:+.1f} % ± {100 * change_se:.1f} | "
        f"{100 * identity:+.1f} ± {100 * identity_se:.1f} pts |"
    )


def markdown(runs: list[dict]) -> str:
    """A row per seed (± s.e. over its subjects) and, with several seeds, one over all runs whose s.e.
    is over subjects (each subject's seeds averaged first: one subject's runs are not independent)."""
    head = "| runs | " + " | ".join(FIGURES) + " | reward change | identity change |"
    lines = [head, "|" + "---|" * (len(FIGURES) + 3)]
    seeds = sorted({r["seed"] for r in runs})
    for seed in seeds:
        of_seed = [r for r in runs if r["seed"] == seed]
        lines.append(_row(f"seed {seed}: {len(of_seed)}", [[r] for r in of_seed]))
    if len(seeds) > 1:
        subjects = sorted({r["subject"] for r in runs})
        lines.append(
            _row(
                f"all: {len(runs)} ({len(subjects)} subjects)",
                [[r for r in runs if r["subject"] == s] for s in subjects],
            )
        )
    return "\n".join(lines)


def sheet(root: Path, starts: Path, runs: list[dict], reward: str = "print reward") -> Path:
    from dreamtune.sampling.contact_sheet import contact_sheet, save_png

    images, captions = [], []
    for r in [r for r in runs if r["seed"] == 0]:
        for label, folder in (
            ("before", starts / f"{r['subject']}-s0" / "personalized"),
            ("after", root / f"{r['subject']}-s0" / "after"),
        ):
            for index, context in enumerate(EVAL_CONTEXTS):
                images.append(Image.open(folder / f"{2 * index:04d}.png").convert("RGB"))
                captions.append(f"{r['subject']} {label}" if index == 0 else context)
    return save_png(
        contact_sheet(
            images,
            captions,
            columns=len(EVAL_CONTEXTS),
            cell=96,
            title=f"{reward} on personalized subjects (seed 0): before above, after below",
        ),
        root / "before_after.png",
    )


def keep(root: Path, record: Path, runs: list[dict]) -> None:
    """Each run's figures and training log from ``root`` into ``record`` (a tracked folder: runs/ does not outlive a
    session, so a sweep over seeds can span sessions; :func:`restore` reads them back)."""
    record.mkdir(parents=True, exist_ok=True)
    for r in runs:
        name = f"{r['subject']}-s{r['seed']}"
        (record / f"{name}.json").write_text(json.dumps(r, indent=1) + "\n")
        log = root / name / "run" / "metrics.jsonl"
        if log.is_file():  # the reward's terms and the KL of each step (what the curves draw), not the whole log
            steps = [json.loads(line) for line in log.read_text().splitlines()]
            kept = [
                {k: round(v, 5) for k, v in x.items() if k in ("step", "kl") or k.startswith("reward")} for x in steps
            ]
            (record / f"{name}.jsonl").write_text("".join(json.dumps(x) + "\n" for x in kept))


def restore(root: Path, record: Path) -> None:
    """Runs :func:`keep` recorded in an earlier session, read back as finished: their figures and training log
    (their images are gone: sheets show only the runs of this session)."""
    for figures in sorted(record.glob("*.json")) if record.is_dir() else []:
        out = root / figures.stem
        if not (out / "metrics.json").is_file():
            (out / "run").mkdir(parents=True, exist_ok=True)
            if figures.with_suffix(".jsonl").is_file():
                shutil.copyfile(figures.with_suffix(".jsonl"), out / "run" / "metrics.jsonl")
            shutil.copyfile(figures, out / "metrics.json")


def sweep(starts: Path, root: Path, seeds: str, subjects, go) -> list[dict]:
    """Every (seed, subject): a finished run read back, else ``go(start, out)`` for a finished start (None: not
    run now), each new result printed as it lands."""
    runs = []
    for seed in seeds.split(","):
        for subject in subjects:
            start, out = starts / f"{subject}-s{seed}", root / f"{subject}-s{seed}"
            if (out / "metrics.json").is_file():
                runs.append(json.loads((out / "metrics.json").read_text()))
            elif (start / "metrics.json").is_file() and (result := go(start, out)) is not None:
                runs.append(result)
                rounded = {k: round(v, 4) if isinstance(v, float) else v for k, v in result.items()}
                print(json.dumps({"run": f"{subject}-s{seed}", **rounded}), flush=True)
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--starts", default=str(ROOT / "runs" / "issue15" / "lora+prior"))
    parser.add_argument("--algorithm", choices=sorted(RECIPES), default="draft")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--root", default="")
    parser.add_argument("--steps", type=int, default=0, help="RL steps (default: 60 for DRaFT, 160 for DDPO)")
    parser.add_argument("--minutes", type=float, default=0, help="start no run after this many minutes (0: no limit)")
    parser.add_argument("--collect", action="store_true", help="run nothing: tabulate the finished runs")
    parser.add_argument(
        "--half",
        choices=["tuning", "test"],
        default="test",
        help="the subjects (benchmarks/subject_split.py); choose settings on tuning, report on test",
    )
    parser.add_argument(
        "--subjects", default="", help="comma-separated subset of the half (e.g. to run two processes at once)"
    )
    parser.add_argument("--extra", nargs="*", default=[], help="overrides added to every run (e.g. train.lr=3e-5)")
    args = parser.parse_args()
    starts = Path(args.starts)
    root = Path(args.root or ROOT / "runs" / "issue15" / f"rl-{args.algorithm}")
    steps = args.steps or {"draft": 60, "ddpo": 160}[args.algorithm]
    deadline = time.time() + 60 * args.minutes if args.minutes else None
    try:
        subjects = subject_split.subjects_of(args.half, args.subjects)
    except ValueError as error:
        parser.error(str(error))
    cache: dict = {}
    late = lambda: args.collect or bool(deadline and time.time() > deadline)  # noqa: E731
    runs = sweep(
        starts,
        root,
        args.seeds,
        subjects,
        lambda start, out: None if late() else run_one(start, out, args.algorithm, steps, cache, tuple(args.extra)),
    )
    if not runs:
        print("no finished runs yet")
        return
    text = markdown(runs)
    (root / "summary.md").write_text(text + "\n")
    (root / "summary.json").write_text(
        json.dumps({"algorithm": args.algorithm, "steps": steps, "extra": args.extra, "runs": runs}, indent=1)
    )
    print(text)
    print(f"wrote {sheet(root, starts, runs)}")


if __name__ == "__main__":
    main()
