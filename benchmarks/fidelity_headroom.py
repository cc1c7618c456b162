"""Does a subject-fidelity reward have headroom on new shapes? (issue 35, item 3) — before any training.

For each personalized start (a finished LoRA + prior run of ``benchmarks/miniature_methods.py``),
sample ``--samples`` images per prompt of the RL prompts (the 8 RL contexts, never the evaluation
ones) exactly as RL's rollouts are sampled, score every image with the candidate rewards — the
mini CLIP's CLIP-I and CLIP-T, their cosine harmonic mean, ``subject_in_context`` (its identity
margin over the class images, its context probability, λ-harmonic: RPO, Miao et al. 2024), the
identity as a saturating probability, and with ``--identity-model`` the identity half through
another network — and pick the best of each prompt's samples by each. The *judge* (never used by
any reward) then says what the pick is worth: identity among all instances, context, and the
judge's own similarity to the photos.

A reward has headroom for RL when its best-of-n is clearly above the mean sample on the judge's
verdicts; the judge's own pick (best by judge similarity) is the ceiling of what selection can do.

    python benchmarks/fidelity_headroom.py [--half new-tuning] [--seed 0] [--samples 8] [--subjects a,b]
                                           [--identity-model runs/judge-v4/judge]

Per subject in ROOT/<subject>-s<seed>/scores.json (sampled once, re-scored when the scoring changes);
prints a markdown table (gains paired within subject) and writes ROOT/headroom-<half>-s<seed>.md.
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

import subject_split  # noqa: E402
import torch  # noqa: E402
from rl_test_half import RL_CONTEXTS  # noqa: E402
from subject_runs import mean_se  # noqa: E402

from dreamtune.miniature import scenery, world  # noqa: E402
from dreamtune.miniature.assemble import MODEL_DIR  # noqa: E402
from dreamtune.miniature.demo import IDENTIFIER, photographs  # noqa: E402

LAMBDAS = (0.5, 0.7, 0.9)  # weight of identity in the harmonic mean
SCORES_VERSION = 2  # 2: subject_in_context's identity is the margin, not the saturating probability


def harmonic_of(a: torch.Tensor, b: torch.Tensor, lam: float) -> torch.Tensor:
    """1 / (λ/a + (1-λ)/b) of two values in [0, 1]."""
    return a * b / (lam * b + (1 - lam) * a).clamp_min(1e-12)


def cosine_harmonic(identity: torch.Tensor, context: torch.Tensor, lam: float) -> torch.Tensor:
    """RPO's harmonic mean of two raw cosines, each mapped to [0, 1] by (1 + cos) / 2."""
    return harmonic_of((1 + identity) / 2, (1 + context) / 2, lam)


def _sample(start: Path, prompts: list[str], samples: int, out: Path) -> None:
    from dreamtune.sampling.generate import GenerateRequest, generate

    shutil.rmtree(out / "images", ignore_errors=True)  # an interrupted sampling starts again
    generate(
        GenerateRequest(
            trained=str(start / "run" / "model"),
            prompts=tuple(prompts),
            images_per_prompt=samples,
            steps=20,
            guidance_scale=4.0,
            resolution=64,
        ),
        out / "images",
        show_progress=False,
    )


def score_subject(start: Path, subject: str, samples: int, out: Path, cache: dict) -> dict:
    """Every sample's candidate-reward parts and judge verdicts (kept in scores.json; sampled once)."""
    import numpy as np
    from PIL import Image

    from dreamtune.evaluation.evaluate import strip_identifier
    from dreamtune.evaluation.features import load_clip
    from dreamtune.miniature import judge
    from dreamtune.rewards.alignment import SubjectInContext

    scores = json.loads((out / "scores.json").read_text()) if (out / "scores.json").is_file() else {}
    if scores.get("version") == SCORES_VERSION:
        return with_identity_model(scores, start, out, cache)
    noun = world.instance(subject).class_noun
    prompts = [f"a {IDENTIFIER} {noun} {scenery.PHRASES[c]}" for c in RL_CONTEXTS]
    if not scores:
        _sample(start, prompts, samples, out)
    record = json.loads((out / "images" / "generations.json").read_text())
    images = [Image.open(out / "images" / r["file"]).convert("RGB") for r in record["images"]]
    image_prompts = [r["prompt"] for r in record["images"]]
    photos = photographs(start / "photos")
    class_images = [Image.open(p).convert("RGB") for p in sorted((start / "run" / "class_images").glob("**/*.png"))]
    if "clip" not in cache:
        cache["clip"] = load_clip(MODEL_DIR / "clip")
        cache["net"], cache["vae"] = judge.load_judge(MODEL_DIR / "judge"), judge.load_vae(MODEL_DIR)
    clip, net = cache["clip"], cache["net"]
    pixels = torch.stack([torch.from_numpy(np.array(i)).permute(2, 0, 1) for i in images]).float() / 255
    with torch.no_grad():
        embedded = clip.images(images)
        target = torch.nn.functional.normalize(clip.images(photos).mean(0), dim=-1)
        texts = clip.texts([strip_identifier(p, IDENTIFIER) for p in image_prompts])
        scores["clip_i"], scores["clip_t"] = (embedded @ target).tolist(), (embedded * texts).sum(-1).tolist()
        for lam in LAMBDAS:
            reward = SubjectInContext(clip, photos, class_images, prompts, IDENTIFIER, identity_weight=lam)
            parts = reward.parts(pixels, image_prompts, {})
            scores[f"subject_in_context λ={lam}"] = parts[reward.name].tolist()
        scores["sic_identity"], scores["sic_context"] = parts["identity"].tolist(), parts["context"].tolist()
        others = reward.scale * embedded @ reward.others.T  # the identity part's logit, in cosine units
        typical = (torch.logsumexp(others, dim=1) - math.log(others.shape[1])) / reward.scale
        scores["clip_margin"], scores["clip_scale"] = (embedded @ target - typical).tolist(), reward.scale
    if "judge_identity_all" not in scores:
        contexts = [c for c in RL_CONTEXTS for _ in range(samples)]
        references = judge.instance_references(net, subject, photos, cache["vae"])
        verdicts = judge.per_image_verdicts(net, images, subject, contexts, references=references)
        scores.update({f"judge_{k}": v.tolist() for k, v in verdicts.items()})
    scores.update(subject=subject, prompts=image_prompts, version=SCORES_VERSION)
    (out / "scores.json").write_text(json.dumps(scores))
    return with_identity_model(scores, start, out, cache)


def with_identity_model(scores: dict, start: Path, out: Path, cache: dict) -> dict:
    """Add subject_in_context with its identity half seen through ``cache["identity_model"]`` (--identity-model)."""
    import numpy as np
    from PIL import Image

    from dreamtune.evaluation.features import load_dino
    from dreamtune.miniature.judge import JudgeFeatures, load_judge
    from dreamtune.rewards.alignment import SubjectInContext

    folder = cache.get("identity_model")
    if not folder or "identity_model" in scores:
        return scores
    if "clip" not in cache:
        from dreamtune.evaluation.features import load_clip

        cache["clip"] = load_clip(MODEL_DIR / "clip")
    if "identity" not in cache:
        judged = (Path(folder) / "judge.safetensors").is_file()
        cache["identity"] = JudgeFeatures(load_judge(Path(folder))) if judged else load_dino(folder)
    record = json.loads((out / "images" / "generations.json").read_text())
    images = [Image.open(out / "images" / r["file"]).convert("RGB") for r in record["images"]]
    photos = photographs(start / "photos")
    class_images = [Image.open(p).convert("RGB") for p in sorted((start / "run" / "class_images").glob("**/*.png"))]
    seen = cache["identity"]
    pixels = torch.stack([torch.from_numpy(np.array(i)).permute(2, 0, 1) for i in images]).float() / 255
    with torch.no_grad():
        reward = SubjectInContext(cache["clip"], photos, class_images, scores["prompts"], IDENTIFIER, 0.9, seen)
        parts = reward.parts(pixels, scores["prompts"], {})
        scores["model_similarity"] = (seen.images(images) @ reward.target).tolist()
    scores["model_identity"], scores["model_in_context λ=0.9"] = parts["identity"].tolist(), parts[reward.name].tolist()
    scores["identity_model"] = str(folder)
    (out / "scores.json").write_text(json.dumps(scores))
    return scores


def selections(scores: dict, samples: int) -> dict[str, dict[str, float]]:
    """For each way of choosing one image per prompt: the judge's verdicts on the chosen images."""
    t = {k: torch.tensor(v).reshape(-1, samples) for k, v in scores.items() if isinstance(v, list) and k != "prompts"}
    saturating = torch.sigmoid(scores["clip_scale"] * t["clip_margin"])  # the identity as a probability
    rules = {
        "CLIP-I": t["clip_i"],
        "CLIP-T": t["clip_t"],
        **{f"cosine harmonic λ={lam}": cosine_harmonic(t["clip_i"], t["clip_t"], lam) for lam in LAMBDAS},
        "its identity part (margin)": t["sic_identity"],
        "identity as a probability (saturates)": saturating,
        "its context part": t["sic_context"],
        "probability identity ⊕ context λ=0.5": harmonic_of(saturating, t["sic_context"], 0.5),
        **{f"subject_in_context λ={lam}": t[f"subject_in_context λ={lam}"] for lam in LAMBDAS},
        **(
            {
                "--identity-model: similarity to the photos": t["model_similarity"],
                "--identity-model: identity half (margin)": t["model_identity"],
                "--identity-model: subject_in_context λ=0.9": t["model_in_context λ=0.9"],
            }
            if "identity_model" in scores
            else {}
        ),
        "judge similarity (ceiling)": t["judge_similarity"],
    }
    verdicts = (
        "judge_identity_all",
        "judge_identity",
        "judge_context",
        "judge_similarity",
        "clip_i",
        "clip_t",
        "subject_in_context λ=0.9",
    )
    rows = {"mean sample": {v: float(t[v].mean()) for v in verdicts}}
    for name, values in rules.items():
        pick = values.argmax(dim=1, keepdim=True)
        rows[f"best of {samples} by {name}"] = {v: float(t[v].gather(1, pick).mean()) for v in verdicts}
    return rows


def table(per_subject: list[dict[str, dict[str, float]]]) -> str:
    """Each pick's judge verdicts and its gain over the mean sample (paired within subject): mean ± s.e. over subjects."""
    columns = (
        ("identity (all)", "judge_identity_all", 100, False),
        ("Δ identity (all)", "judge_identity_all", 100, True),
        ("identity (class)", "judge_identity", 100, False),
        ("context", "judge_context", 100, False),
        ("Δ context", "judge_context", 100, True),
        ("judge similarity", "judge_similarity", 1, False),
        ("CLIP-I", "clip_i", 1, False),
        ("subject_in_context λ=0.9", "subject_in_context λ=0.9", 1, False),
    )
    lines = ["| pick | " + " | ".join(c[0] for c in columns) + " |", "|---|" + "---|" * len(columns)]
    for row in per_subject[0]:
        cells = []
        for _, key, scale, paired in columns:
            gains = [s[row][key] - (s["mean sample"][key] if paired else 0.0) for s in per_subject]
            mean, se, _ = mean_se([g * scale for g in gains])
            cells.append(
                f"{mean:+.1f} ± {se:.1f}"
                if paired
                else (f"{mean:.1f} ± {se:.1f}" if scale == 100 else f"{mean:.3f} ± {se:.3f}")
            )
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + f"\n\n{len(per_subject)} subjects"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--half", default="new-tuning", choices=sorted(subject_split.HALVES))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--subjects", default="")
    parser.add_argument("--starts", default="", help="default: runs/new-shape-<tuning|test>/lora+prior")
    parser.add_argument("--root", default=str(ROOT / "runs" / "fidelity-headroom"))
    parser.add_argument("--identity-model", default="", help="also score the identity half through this network")
    args = parser.parse_args()
    starts = Path(args.starts or ROOT / "runs" / f"new-shape-{args.half.removeprefix('new-')}" / "lora+prior")
    subjects = args.subjects.split(",") if args.subjects else list(subject_split.HALVES[args.half])
    cache, per_subject = {"identity_model": args.identity_model}, []
    for subject in subjects:
        start = starts / f"{subject}-s{args.seed}"
        if not (start / "run" / "model").is_dir():
            print(f"skipping {subject}: no finished start in {start}")
            continue
        scores = score_subject(start, subject, args.samples, Path(args.root) / f"{subject}-s{args.seed}", cache)
        per_subject.append(selections(scores, args.samples))
        print(
            subject, json.dumps({k: round(v["judge_identity_all"], 3) for k, v in per_subject[-1].items()}), flush=True
        )
    if per_subject:
        text = table(per_subject)
        print(text)
        (Path(args.root) / f"headroom-{args.half}-s{args.seed}.md").write_text(text + "\n")


if __name__ == "__main__":
    main()
