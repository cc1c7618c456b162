"""Does the judge see shape? (issue 34, item 2) Its verdicts on the new-shape subjects' ground truth and
on confusers built to fool a judge that looks at colour:

  ground truth     the subject rendered in every context: clean, through the miniature's VAE, blurred 1 px
  other colour     the subject's shape half-way round the colour wheel (grey glyphs tinted, as the world
                   makes its instances of one glyph)
  class shape      each pretraining glyph of the subject's class recoloured to the subject's main hue (grey
                   for a grey subject): the "class's usual shape in the subject's colours" a model draws
                   when it misses the shape

Per image it also records the colour match (benchmarks/colour_match.py) for a rule that adds a colour floor to
the similarity floor (both calibrated on the tuning half's ground truth; measured, not wired into the judge).

For ground truth the judge should say "the subject" (identity within its class and among all instances)
and name the context; for each confuser it should not (the rate it does is its false acceptance).

    python benchmarks/new_shape_judge_check.py [--subjects all|new-tuning|new-test] [--out experiments/new-shape-judge]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


GROUND_TRUTH = ("ground truth", "ground truth, VAE", "ground truth, blur 1 px")
CONFUSERS = ("other colour", "class shape")


def accepted(rows: list[dict], case: str, floor: float, colour_floor: float = 0.0) -> float:
    """Share of ``case``'s images (mean over subjects) the judge calls the subject: nearest of its class's
    instances, similarity to the subject's photos at least ``floor`` and, with ``colour_floor``, holding at least
    that share of the subject's colours (miniature/colour_match.py)."""
    shares = [
        sum(i and s >= floor and c >= colour_floor for i, s, c in r[case]["per_image"]) / len(r[case]["per_image"])
        for r in rows
    ]
    return sum(shares) / len(shares)


def calibrate(rows: list[dict], keep: float, column: int) -> float:
    """The highest floor on per-image ``column`` (1: similarity, 2: colour match) that still accepts ``keep`` of
    the tuning subjects' ground truth through the VAE (how generated images reach the judge), the other floor
    off; confusers play no part in choosing it."""
    tuning = [r for r in rows if r["half"] == "tuning"]
    candidates = sorted({p[column] for r in tuning for p in r["ground truth, VAE"]["per_image"]})
    floors = lambda f: (f, 0.0) if column == 1 else (0.0, f)
    return max(f for f in candidates if accepted(tuning, "ground truth, VAE", *floors(f)) >= keep)


def floor_table(rows: list[dict], colour: bool) -> None:
    """Identity within the class with the similarity floor (and, with ``colour``, the colour floor) calibrated on
    the tuning half, by half. Each floor alone keeps 97 % of the tuning ground truth (with both, 98.5 % each)."""
    keep = 0.985 if colour else 0.97
    floor = calibrate(rows, keep, 1)
    colour_floor = calibrate(rows, keep, 2) if colour else 0.0
    print(
        f"\nsimilarity floor {floor:.3f}"
        + (f", colour floor {colour_floor:.3f}" if colour else "")
        + f" (each calibrated alone to keep {100 * keep:.1f} % of the tuning half's ground truth through the VAE)"
    )
    print("| case | tuning half | test half |\n|---|---|---|")
    for case in (*GROUND_TRUTH, *CONFUSERS):
        halves = [accepted([r for r in rows if r["half"] == h], case, floor, colour_floor) for h in ("tuning", "test")]
        print(f"| {case} | {100 * halves[0]:.1f} % | {100 * halves[1]:.1f} % |")


def judge_cases(name: str, vae) -> tuple[dict, list[str], list]:
    """The images of each case for one subject, one per context (the class-shape case: per class glyph), with
    the class's glyphs and their recoloured sprites."""
    import torch
    from judge_training import main_hue, tinted

    from dreamtune.miniature import judge, world

    subject, sprite, contexts = world.instance(name), world.object_sprite(name), list(world.CONTEXTS)
    renders = lambda s: judge.to_pixels([world.compose(s, c, 7_000 + k) for k, c in enumerate(contexts)])
    clean = renders(sprite)
    cases = {
        "ground truth": clean,
        "ground truth, VAE": judge.vae_round_trip(vae, clean),
        "ground truth, blur 1 px": judge.gaussian_blur(clean, torch.ones(len(clean))),
        "other colour": judge.vae_round_trip(vae, renders(world.glyph_sprite(subject.glyph, 0.5))),
    }
    class_glyphs = sorted({i.glyph for i in world.PRETRAIN_INSTANCES if i.class_noun == subject.class_noun})
    confusers = [tinted(g, main_hue(sprite)) for g in class_glyphs]
    cases["class shape"] = judge.vae_round_trip(vae, torch.cat([renders(c) for c in confusers]))
    return cases, class_glyphs, confusers


def main() -> None:
    import subject_split
    import torch
    from colour_match import colour_match, colour_signature

    from dreamtune.miniature import judge, world
    from dreamtune.miniature.new_shapes import NEW_SHAPES
    from dreamtune.sampling.contact_sheet import contact_sheet, save_png

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", default="all", choices=["all", "new-tuning", "new-test"])
    parser.add_argument("--model", default=str(ROOT / "dreamtune" / "miniature" / "model"))
    parser.add_argument("--judge", default="", help="a judge folder (default: the packaged model's judge/)")
    parser.add_argument("--out", default=str(ROOT / "experiments" / "new-shape-judge"))
    parser.add_argument("--tables", default="", help="print the tables of this verdicts.json and stop")
    args = parser.parse_args()
    if args.tables:
        rows = json.loads(Path(args.tables).read_text())
        floor_table(rows, colour=False)
        floor_table(rows, colour=True)
        return
    names = [s.name for s in NEW_SHAPES] if args.subjects == "all" else list(subject_split.HALVES[args.subjects])
    net = judge.load_judge(Path(args.judge or Path(args.model) / "judge"))
    vae = judge.load_vae(Path(args.model))
    contexts = list(world.CONTEXTS)
    rows, sheet_images, sheet_captions = [], [], []
    with torch.no_grad():
        for name in names:
            subject = world.instance(name)
            sprite = world.object_sprite(name)
            references = judge.instance_references(net, name, vae=vae)
            sig = colour_signature(judge.vae_round_trip(vae, judge.to_pixels(judge.reference_photos(name))))
            cases, class_glyphs, confusers = judge_cases(name, vae)
            row = {"subject": name, "half": "tuning" if name in subject_split.NEW_TUNING else "test"}
            for case, pixels in cases.items():
                count = len(pixels) // len(contexts)
                verdict = judge.per_image_verdicts(net, pixels, name, contexts * count, references=references)
                row[case] = {k: round(float(v.mean()), 3) for k, v in verdict.items() if k != "similarity"}
                row[case]["similarity"] = round(float(verdict["similarity"].mean()), 3)
                # per image, for the floors (calibrate): within-class identity, similarity, colour match
                colour = colour_match(pixels, sig)
                row[case]["per_image"] = [
                    [int(i), round(float(s), 4), round(float(c), 4)]
                    for i, s, c in zip(verdict["identity"], verdict["similarity"], colour)
                ]
            rows.append(row)
            print(json.dumps(row), flush=True)
            sheet_images += [world.compose(sprite, "beach", 1)] + [
                world.compose(c, "beach", 1) for c in [world.glyph_sprite(subject.glyph, 0.5), confusers[0]]
            ]
            sheet_captions += [f"{name}", "other colour", f"class shape {class_glyphs[0]}"]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "verdicts.json").write_text(json.dumps(rows, indent=1))
    save_png(
        contact_sheet(sheet_images, sheet_captions, columns=9, cell=96, title="subject and its confusers"),
        out / "confusers.png",
    )
    floor_table(rows, colour=False)
    floor_table(rows, colour=True)
    print("\n| case | identity (class) | identity (all) | context | judge similarity |\n|---|---|---|---|---|")
    for case in rows[0]:
        if case in ("subject", "half"):
            continue
        mean = lambda key, case=case: sum(r[case][key] for r in rows) / len(rows)
        print(
            f"| {case} | {100 * mean('identity'):.1f} % | {100 * mean('identity_all'):.1f} % | "
            f"{100 * mean('context'):.1f} % | {mean('similarity'):.3f} |"
        )


if __name__ == "__main__":
    main()
