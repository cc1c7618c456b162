"""A blind check of the miniature judge's identity verdicts on generated images (issue 14): does
the judge agree with a person looking at the pictures?

    python benchmarks/judge_blind_check.py sheets --runs runs/methods-gpu [--items 48] [--out runs/blind]
    (look at OUT/sheet-*.png, write OUT/answers.txt: one line per item, "7 C" or "7 -", optionally
    followed by the background seen: "7 C jungle" — one of the demo's 8 evaluation contexts, or "-")
    python benchmarks/judge_blind_check.py score [--out runs/blind]

Another judge on the same items and answers: `sheets --judge DIR --again OLD --out NEW` takes OLD's items
(its key.json: the same images, the same lettering) and answers, judges them anew, then `score --out NEW`.

Items are drawn (fixed seed) from personalized images of every method's runs, with base-model
images and ground-truth renders mixed in as controls. Each row of a sheet shows the item, then a
photo of each of its class's 4 instances in shuffled order, lettered A-D (for a new-shape subject:
the class's 3 pretraining instances and the subject); the person answers with
the letter of the instance the item shows, or "-" when it shows none of them (not the class, or not
recognisable) — the judge's task, done by eye. The judge's per-image verdicts and its own pick go
to OUT/key.json, which the person answering does not open before answering.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from PIL import Image  # noqa: E402

from dreamtune.miniature import judge, world  # noqa: E402
from dreamtune.miniature.assemble import MODEL_DIR  # noqa: E402
from dreamtune.miniature.demo import EVAL_CONTEXTS  # noqa: E402
from dreamtune.sampling.contact_sheet import contact_sheet, save_png  # noqa: E402

PER_SHEET = 8


def candidates(runs: Path, seed: int) -> list[dict]:
    """Every personalized image under ``runs`` (METHOD/SUBJECT-sSEED/personalized/NNNN.png)."""
    found = []
    for png in sorted(runs.glob("*/*-s*/personalized/0*.png")):
        method, run = png.parts[-4], png.parts[-3]
        subject = run.rsplit("-s", 1)[0]
        index = int(png.stem)
        found.append({"source": method, "subject": subject, "path": str(png), "context": EVAL_CONTEXTS[index // 2]})
    return found


def draw(runs: Path, items: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    pool = candidates(runs, seed)
    chosen = rng.sample(pool, items - items // 6)
    for _ in range(items // 12):  # controls: ground truth and the base model
        subject, context = rng.choice([c["subject"] for c in pool]), rng.choice(EVAL_CONTEXTS)
        chosen.append({"source": "ground truth", "subject": subject, "context": context, "seed": rng.randrange(10_000)})
        base = rng.choice([c for c in pool if c["subject"] != subject and "floor" not in c["path"]])
        floor = sorted(Path(base["path"]).parents[1].glob("floor/0*.png")) or sorted(
            (runs / "lora+prior" / Path(base["path"]).parts[-3] / "floor").glob("0*.png")
        )
        if floor:
            png = rng.choice(floor)
            chosen.append(
                {
                    "source": "base model",
                    "subject": base["subject"],
                    "path": str(png),
                    "context": EVAL_CONTEXTS[int(png.stem) // 2],
                }
            )
    rng.shuffle(chosen)
    return chosen


def image_of(item: dict) -> Image.Image:
    if "path" in item:
        return Image.open(item["path"]).convert("RGB")
    return world.render(world.Scene(item["subject"], item["context"]), 90_000 + item["seed"])


def class_members(subject: str) -> list[str]:
    """The instances the eye chooses among: the class's pretraining instances and the subject (a held-out
    instance, or a new shape standing in for the class's held-out one)."""
    noun = world.instance(subject).class_noun
    shown = [
        i.name for i in world.INSTANCES if i.class_noun == noun and (i.name not in world.HELD_OUT or i.name == subject)
    ]
    return shown if subject in shown else [*shown, subject]


REFERENCES: dict[str, tuple] = {}


def judge_pick(net, vae, item: dict) -> tuple[str, str]:
    """The instance the judge says ``item`` shows: nearest of all references, and nearest of the class's."""
    if item["subject"] not in REFERENCES:
        REFERENCES[item["subject"]] = judge.instance_references(net, item["subject"], None, vae)
    names, means = REFERENCES[item["subject"]]
    with torch.no_grad():
        similarity = judge.judge_images(net, [image_of(item)])["embedding"][0] @ means.T
    family = [k for k, n in enumerate(names) if n in class_members(item["subject"])]
    return names[int(similarity.argmax())], names[family[int(similarity[family].argmax())]]


def judged_items(args) -> list[dict]:
    rng = random.Random(args.seed + 1)
    again = Path(args.again) if args.again else None
    items = json.loads((again / "key.json").read_text()) if again else draw(Path(args.runs), args.items, args.seed)
    net, vae = judge.load_judge(Path(args.judge)), judge.load_vae(MODEL_DIR)
    for number, item in enumerate(items, 1):
        nearest, nearest_in_class = judge_pick(net, vae, item)  # caches the subject's references
        verdict = judge.per_image_verdicts(
            net, [image_of(item)], item["subject"], [item["context"]], vae=vae, references=REFERENCES[item["subject"]]
        )
        letters = item.get("letters") or class_members(item["subject"])
        if not again:
            rng.shuffle(letters)
        item.update(
            {
                "number": number,
                "letters": letters,
                "judge_nearest": nearest,
                "judge_nearest_in_class": nearest_in_class,
                **{f"judge_{k}": round(float(v[0]), 4) for k, v in verdict.items()},
            }
        )
    return items


def sheets(args) -> None:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    key = out / "key.json"
    items = json.loads(key.read_text()) if key.is_file() else judged_items(args)
    key.write_text(json.dumps(items, indent=1))
    if args.again and not (out / "answers.txt").is_file():
        (out / "answers.txt").write_text((Path(args.again) / "answers.txt").read_text())
    for page in range(0, len(items), PER_SHEET):
        cells, captions = [], []
        for item in items[page : page + PER_SHEET]:
            cells.append(image_of(item))
            captions.append(f"item {item['number']}")
            for letter, name in zip("ABCD", item["letters"]):
                cells.append(
                    judge.reference_photos(name, count=1, seed=61_000)[0]
                )  # one seed: the same backdrop for all
                captions.append(letter)
        save_png(contact_sheet(cells, captions, columns=5, cell=104), out / f"sheet-{page // PER_SHEET + 1}.png")
    print(
        f"{len(items)} items on {(len(items) + PER_SHEET - 1) // PER_SHEET} sheets in {out}; answers go to {out / 'answers.txt'}"
    )


def score(args) -> None:
    """Agreement of the judge with the eye: on the pick within the class (identity), and on whether
    the item is the subject at all (identity among all instances)."""
    out = Path(args.out)
    items = {i["number"]: i for i in json.loads((out / "key.json").read_text())}
    picks, contexts = {}, {}
    for line in (out / "answers.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            number, letter, *context = line.split()
            item = items[int(number)]
            picks[int(number)] = item["letters"]["ABCD".index(letter.upper())] if letter.upper() in "ABCD" else None
            if context:  # optional: the background the eye sees (a context name, or "-")
                contexts[int(number)] = context[0] == item["context"]
    rows = []
    for number, pick in picks.items():
        item = items[number]
        eye_subject = pick == item["subject"]
        rows.append(
            {
                "source": item["source"],
                "eye_subject": eye_subject,
                "eye_none": pick is None,
                "same_pick": pick is not None and pick == item["judge_nearest_in_class"],
                "identity_agrees": bool(item["judge_identity"]) == eye_subject,
                "identity_all_agrees": bool(item["judge_identity_all"]) == eye_subject,
            }
        )
    mean = lambda key, subset=rows: sum(r[key] for r in subset) / max(1, len(subset))  # noqa: E731
    named = [r for r in rows if not r["eye_none"]]
    result = {
        "items": len(rows),
        "eye_subject": sum(r["eye_subject"] for r in rows),
        "eye_none": sum(r["eye_none"] for r in rows),
        "identity_agreement": mean("identity_agrees"),
        "identity_all_agreement": mean("identity_all_agrees"),
        "same_pick_when_eye_names_one": mean("same_pick", named),
        "by_source": {
            source: {
                "items": len(subset),
                "eye_subject": sum(r["eye_subject"] for r in subset),
                "judge_identity": sum(int(items[n]["judge_identity"]) for n in picks if items[n]["source"] == source),
                "judge_identity_all": sum(
                    int(items[n]["judge_identity_all"]) for n in picks if items[n]["source"] == source
                ),
            }
            for source in sorted({r["source"] for r in rows})
            for subset in [[r for r in rows if r["source"] == source]]
        },
    }
    if contexts:
        result["context"] = {
            "items": len(contexts),
            "eye_says_prompted": sum(contexts.values()),
            "judge_agrees": sum(bool(items[n]["judge_context"]) == said for n, said in contexts.items())
            / len(contexts),
        }
    (out / "score.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("step", choices=["sheets", "score"])
    parser.add_argument("--runs", default=str(ROOT / "runs" / "methods-gpu"))
    parser.add_argument("--out", default=str(ROOT / "runs" / "blind"))
    parser.add_argument("--items", type=int, default=48)
    parser.add_argument(
        "--judge", default=str(MODEL_DIR / "judge"), help="the judge to check (a folder with judge.safetensors)"
    )
    parser.add_argument("--seed", type=int, default=14)
    parser.add_argument("--again", default="", help="a finished check's folder: judge its items and answers anew")
    args = parser.parse_args()
    sheets(args) if args.step == "sheets" else score(args)


if __name__ == "__main__":
    main()
