"""Does print_in_context have headroom, resist gaming, and agree with a scorer it never saw? (issue 35, item 2)
— measured before any training.

For each personalized start of the new-shape tuning half, the images ``benchmarks/fidelity_headroom.py``
sampled (8 per prompt of the 8 RL contexts, as RL's rollouts sample them; run it first) are scored by
``print_in_context`` — identity through ``--identity-model`` (on the miniature its validated judge; DINO
on real models), context through the mini CLIP, both on the simulated print
(soft proof through Ghostscript's SWOP profile with black-point compensation and paper white, seen
``--width-cm`` wide from ``--distance-cm``) — with the colour and tonal floors set from the same starting
model's per-prompt average print.

  headroom   best of 8 by the reward over the mean sample, per prompt, averaged (target ≥ 2 %)
  held out   ``--held-out`` (a judge the reward never uses: the hard-negative judge runs/judge-v4) on
             LittleCMS's own 8-bit print of each image (paper white): identity among all instances, context
             and similarity of the reward's pick vs the mean sample, and the rank correlation within a prompt
  gaming     each image transformed (greyscale, half saturation, blur, noise, contrast down and up, hue
             shift; and the two things print people do: black-point-compensated separation, mild output
             sharpening) and re-scored against the untransformed image: mean change and the share that lose

    python benchmarks/print_reward_headroom.py [--subjects a,b] [--identity-model runs/judge-v4/judge]
        [--width-cm 4] [--distance-cm 40]

Prints markdown tables; writes ROOT/print-headroom.json and ROOT/print-headroom.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import subject_split  # noqa: E402
import torch  # noqa: E402
from print_reward_sanity import gaussian_blur  # noqa: E402
from rl_test_half import RL_CONTEXTS  # noqa: E402
from subject_runs import mean_se  # noqa: E402

from dreamtune.miniature.assemble import MODEL_DIR  # noqa: E402
from dreamtune.miniature.demo import IDENTIFIER, photographs  # noqa: E402


def _to_tensor(images) -> torch.Tensor:
    import numpy as np

    return torch.stack([torch.from_numpy(np.asarray(i, dtype=np.float32) / 255).permute(2, 0, 1) for i in images])


def _to_pil(pixels: torch.Tensor) -> list:
    from PIL import Image

    arrays = (pixels.clamp(0, 1).permute(0, 2, 3, 1) * 255).round().to(torch.uint8).numpy()
    return [Image.fromarray(a, "RGB") for a in arrays]


def _hue_shift(images: torch.Tensor, degrees: float) -> torch.Tensor:
    """Rotate the chroma in YIQ by ``degrees``."""
    to_yiq = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
    angle = torch.tensor(degrees).deg2rad()
    rotate = torch.tensor([[1, 0, 0], [0, angle.cos(), -angle.sin()], [0, angle.sin(), angle.cos()]])
    matrix = torch.linalg.inv(to_yiq) @ rotate @ to_yiq
    return torch.einsum("ij,bjhw->bihw", matrix, images).clamp(0, 1)


def _separated_with_bpc(images: torch.Tensor, profile: Path) -> torch.Tensor:
    """What a print-prepared file looks like: separated into CMYK with black-point compensation (perceptual)
    and read back relative colorimetric — the image as ``generate --print-profile`` hands it to the shop."""
    from dreamtune.rewards.print_proof import littlecms_proof

    return littlecms_proof(images, profile, "perceptual", black_point_compensation=True)


def _sharpened(images: torch.Tensor) -> torch.Tensor:
    """Mild output sharpening as ``generate --print-profile`` applies it (unsharp mask 60 %, threshold 0)."""
    from PIL import ImageFilter

    from dreamtune.sampling.print_ready import SHARPENING

    mask = ImageFilter.UnsharpMask(radius=1, percent=SHARPENING["mild"], threshold=0)
    return _to_tensor([i.filter(mask) for i in _to_pil(images)])


def transforms(profile: Path) -> dict:
    grey = lambda x: (0.2126 * x[:, :1] + 0.7152 * x[:, 1:2] + 0.0722 * x[:, 2:]).repeat(1, 3, 1, 1)  # noqa: E731
    noise = torch.Generator().manual_seed(0)
    return {
        "greyscale": grey,
        "half saturation": lambda x: (grey(x) + 0.5 * (x - grey(x))).clamp(0, 1),
        "blur 1 px": lambda x: gaussian_blur(x, 1.0).clamp(0, 1),
        "noise σ 0.03": lambda x: (x + 0.03 * torch.randn(x.shape, generator=noise)).clamp(0, 1),
        "contrast × 0.7": lambda x: x.mean((1, 2, 3), keepdim=True) + 0.7 * (x - x.mean((1, 2, 3), keepdim=True)),
        "contrast × 1.3": lambda x: (
            x.mean((1, 2, 3), keepdim=True) + 1.3 * (x - x.mean((1, 2, 3), keepdim=True))
        ).clamp(0, 1),
        "hue shift +30°": lambda x: _hue_shift(x, 30.0),
        "hue shift −30°": lambda x: _hue_shift(x, -30.0),
        "separated with BPC (print people do)": lambda x: _separated_with_bpc(x, profile),
        "mild output sharpening (print people do)": _sharpened,
    }


def score_subject(subject: str, start: Path, sampled: Path, args, cache: dict) -> dict:
    from PIL import Image

    from dreamtune.evaluation.features import load_clip
    from dreamtune.miniature import judge
    from dreamtune.miniature.judge import JudgeFeatures, load_judge
    from dreamtune.rewards.alignment import SubjectInContext
    from dreamtune.rewards.print_in_context import PrintInContext
    from dreamtune.rewards.print_proof import littlecms_proof
    from dreamtune.rewards.simulated_print import SimulatedPrint, Viewing

    if "clip" not in cache:
        cache["clip"] = load_clip(MODEL_DIR / "clip")
        cache["identity"] = JudgeFeatures(load_judge(Path(args.identity_model)))
        cache["net"], cache["vae"] = judge.load_judge(Path(args.held_out)), judge.load_vae(MODEL_DIR)
    printer = SimulatedPrint(viewing=Viewing(args.width_cm, args.distance_cm))
    record = json.loads((sampled / "images" / "generations.json").read_text())
    images = _to_tensor([Image.open(sampled / "images" / r["file"]).convert("RGB") for r in record["images"]])
    prompts = [r["prompt"] for r in record["images"]]
    photos = photographs(start / "photos")
    class_images = [Image.open(p).convert("RGB") for p in sorted((start / "run" / "class_images").glob("**/*.png"))]
    judged = SubjectInContext(
        cache["clip"], photos, class_images, prompts, IDENTIFIER, 0.9, cache["identity"], view=printer, margin=False
    )
    reward = PrintInContext(judged, printer)
    reward.set_floors(images, prompts)  # the starting model's per-prompt average print
    out = {"prompts": prompts}
    with torch.no_grad():
        parts = reward.parts(images, prompts, {})
        out.update({k: v.tolist() for k, v in parts.items()})
        for name, change in transforms(printer.profile).items():
            gamed = reward.parts(change(images).float(), prompts, {})
            out[f"gamed: {name}"] = gamed[reward.name].tolist()
            out.update({f"gamed part: {name}: {k}": v.tolist() for k, v in gamed.items() if k != reward.name})
        held_out = _to_pil(littlecms_proof(images, printer.profile, black_point_compensation=True, paper_white=True))
        contexts = [c for c in RL_CONTEXTS for _ in range(len(images) // len(RL_CONTEXTS))]
        references = judge.instance_references(cache["net"], subject, photos, cache["vae"])
        verdicts = judge.per_image_verdicts(cache["net"], held_out, subject, contexts, references=references)
    out.update({f"judge_{k}": v.tolist() for k, v in verdicts.items()})
    return out


def summarise(per_subject: dict[str, dict], samples: int) -> tuple[dict, str]:
    def grid(scores, key):
        return torch.tensor(scores[key]).reshape(-1, samples)

    rows, lines = {}, []
    headroom, picks = [], {k: [] for k in ("judge_identity_all", "judge_context", "judge_similarity")}
    spearman = []
    for scores in per_subject.values():
        reward = grid(scores, "print_in_context")
        headroom.append(100 * (float(reward.max(1).values.mean()) / float(reward.mean()) - 1))
        pick = reward.argmax(1, keepdim=True)
        for key in picks:
            values = grid(scores, key)
            picks[key].append(float(values.gather(1, pick).mean()) - float(values.mean()))
        similarity = grid(scores, "judge_similarity")
        ranks = lambda t: t.argsort(1).argsort(1).float()  # noqa: E731
        a, b = ranks(reward), ranks(similarity)
        a, b = a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True)
        spearman.append(float(((a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1)).clamp_min(1e-9)).mean()))
    m, se, _ = mean_se(headroom)
    rows["headroom %"] = (m, se)
    lines += [
        "| measure | mean ± s.e. over subjects |",
        "|---|---|",
        f"| best-of-{samples} headroom | {m:+.1f} ± {se:.1f} % |",
    ]
    for key, label, scale in (
        ("judge_identity_all", "held-out judge identity (all) of the pick − mean sample, points", 100),
        ("judge_context", "held-out judge context of the pick − mean sample, points", 100),
        ("judge_similarity", "held-out judge similarity of the pick − mean sample", 1),
    ):
        m, se, _ = mean_se([v * scale for v in picks[key]])
        rows[label] = (m, se)
        lines.append(f"| {label} | {m:+.3g} ± {se:.2g} |")
    m, se, _ = mean_se(spearman)
    rows["rank correlation with held-out similarity"] = (m, se)
    lines.append(f"| rank correlation (within prompt) with the held-out judge's similarity | {m:+.2f} ± {se:.2f} |")
    parts = ("identity", "context", "colour", "tonal", "clipping", "grain", "ink")
    lines += [
        "",
        "| transform | reward change (%) | images that lose | images that win | "
        + " | ".join(f"Δ {p}" for p in parts)
        + " |",
        "|---|---|---|---|" + "---|" * len(parts),
    ]
    gamed = [k for k in next(iter(per_subject.values())) if k.startswith("gamed: ")]
    for key in gamed:
        change, lose, win = [], [], []
        for scores in per_subject.values():
            base, moved = torch.tensor(scores["print_in_context"]), torch.tensor(scores[key])
            change.append(100 * (float(moved.mean()) / float(base.mean()) - 1))
            lose.append(float((moved < base * 0.995).float().mean()) * 100)
            win.append(float((moved > base * 1.005).float().mean()) * 100)
        (m, se, _), (lo, _, _), (wi, _, _) = mean_se(change), mean_se(lose), mean_se(win)
        name = key.removeprefix("gamed: ")
        deltas = [
            mean_se(
                [
                    float(torch.tensor(s[f"gamed part: {name}: {p}"]).mean() - torch.tensor(s[p]).mean())
                    for s in per_subject.values()
                ]
            )[0]
            for p in parts
        ]
        rows[key] = (m, se, lo, wi, *deltas)
        cells = " | ".join(f"{d:+.3f}" for d in deltas)
        lines.append(f"| {name} | {m:+.1f} ± {se:.1f} | {lo:.0f} % | {wi:.0f} % | {cells} |")
    lines.append(f"\n{len(per_subject)} subjects, {samples} samples per prompt, 8 prompts")
    return rows, "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--half", default="new-tuning", choices=sorted(subject_split.HALVES))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--subjects", default="")
    parser.add_argument("--sampled", default=str(ROOT / "runs" / "fidelity-headroom"))
    parser.add_argument(
        "--identity-model", default=str(MODEL_DIR / "judge"), help="the identity network (a judge folder)"
    )
    parser.add_argument(
        "--held-out", default=str(ROOT / "runs" / "judge-v4" / "judge"), help="the scorer the reward never uses"
    )
    parser.add_argument("--width-cm", type=float, default=4.0, help="the print's width (a 64-px image: a thumbnail)")
    parser.add_argument("--distance-cm", type=float, default=40.0)
    args = parser.parse_args()
    starts = ROOT / "runs" / f"new-shape-{args.half.removeprefix('new-')}" / "lora+prior"
    cache, per_subject = {}, {}
    for subject in subject_split.subjects_of(args.half, args.subjects):
        start, sampled = starts / f"{subject}-s{args.seed}", Path(args.sampled) / f"{subject}-s{args.seed}"
        if not (sampled / "images" / "generations.json").is_file():
            print(f"skipping {subject}: no samples in {sampled} (run benchmarks/fidelity_headroom.py first)")
            continue
        per_subject[subject] = score_subject(subject, start, sampled, args, cache)
        print(subject, f"mean reward {sum(per_subject[subject]['print_in_context']) / 64:.4f}", flush=True)
    rows, text = summarise(per_subject, args.samples)
    print(text)
    out = Path(args.sampled)
    (out / "print-headroom.json").write_text(json.dumps({"settings": vars(args), "subjects": per_subject}))
    (out / "print-headroom.md").write_text(text + "\n")


if __name__ == "__main__":
    main()
