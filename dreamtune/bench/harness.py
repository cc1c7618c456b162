"""``dreamtune bench dreambench``: train every subject of a DreamBench-layout folder with one
recipe, generate its prompts × N seeds, score them, and tabulate like the paper's Table 1.

Per subject (resumable: a subject with metrics.json is done; an interrupted training resumes
from its newest checkpoint):  <out>/<subject>/{run/, generated/, class_generated/, metrics.json}
Whole bench: <out>/{table.json, table.md, report.html}. Recipe ``None`` scores the base model
prompted with the class noun (the floor); ``ceiling`` scores the benchmark's ground truth.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from dreamtune import config
from dreamtune.atomic import write_json
from dreamtune.errors import UserError
from dreamtune.evaluation.dreambench import Benchmark
from dreamtune.evaluation.evaluate import FeatureSet, read_generations, read_photos, score, strip_identifier
from dreamtune.evaluation.metrics import mean_and_spread
from dreamtune.methods import method_of
from dreamtune.sampling.generate import GenerateRequest, fill_prompt, generate

METRICS = ("dino", "clip_i", "clip_t", "pres", "div")
CEILING = "ceiling"


@dataclass(frozen=True)
class BenchSettings:
    recipe: str | None  # a YAML recipe; None: base model; "ceiling": ground truth
    overrides: tuple[str, ...] = ()
    base_model: str = ""  # default: the recipe's model.pretrained
    subjects: tuple[str, ...] = ()  # default: every subject with photos
    seeds: int = 4
    sample_steps: int = 30
    guidance_scale: float = 7.5
    resolution: int | None = None
    identifier: str = "sks"
    class_images_dir: str = ""  # shared class images per class (default <out>/class_images)
    extra: dict = field(default_factory=dict)


def _slug(noun: str) -> str:
    return noun.replace(" ", "_")


def _train_subject(
    bench: Benchmark, subject: str, settings: BenchSettings, folder: Path, class_root: Path
) -> tuple[str, str, float]:
    """Train one subject; returns (model folder, identifier the prompts use, seconds)."""
    from dreamtune.training.checkpoint import list_checkpoints
    from dreamtune.training.run import train

    noun = bench.classes[subject]
    base = [*([f"model.pretrained={settings.base_model}"] if settings.base_model else []), *settings.overrides]
    recipe = config.load(settings.recipe, base)
    identifier = method_of(recipe.method).identifier(recipe.method, settings.identifier)
    cfg = config.load(
        settings.recipe,
        [
            f"data.instance_dir={bench.photos_dir(subject)}",
            f"data.instance_prompt=a {identifier} {noun}",
            f"prior.class_prompt=a {noun}",
            f"prior.class_dir={class_root / _slug(noun)}",
            f"train.output_dir={folder / 'run'}",
            *base,
        ],
    )
    finished = folder / "run" / "model"
    if (finished / "dreamtune.json").is_file():  # trained by an earlier, interrupted bench: scored again, not retrained
        return str(finished), identifier, _logged_seconds(folder / "run")
    started = time.perf_counter()
    result = train(cfg, resume="latest" if list_checkpoints(folder / "run") else None)
    return str(result.model_dir), identifier, time.perf_counter() - started


def _logged_seconds(run: Path) -> float:
    """The training time a finished run logged (its last metrics record), 0 when unknown."""
    lines = (
        (run / "metrics.jsonl").read_text(encoding="utf-8").splitlines() if (run / "metrics.jsonl").is_file() else []
    )
    try:
        return float(json.loads(lines[-1]).get("seconds", 0.0)) if lines else 0.0
    except (json.JSONDecodeError, TypeError, ValueError):
        return 0.0


def run_subject(bench: Benchmark, subject: str, settings: BenchSettings, features: FeatureSet, out: Path) -> dict:
    folder = Path(out) / subject
    if (folder / "metrics.json").is_file():
        return json.loads((folder / "metrics.json").read_text())
    noun, templates = bench.classes[subject], bench.prompts(subject)
    real = read_photos(bench.photos_dir(subject))
    row = {"subject": subject, "class": noun}
    if settings.recipe == CEILING:
        truth = bench.ceiling_dir(subject)
        if truth is None:
            raise UserError(f"{bench.root} has no ceiling/{subject}/ ground truth; only a MiniDreamBench has one.")
        images, records = read_generations(truth)
        row.update(score(images, [strip_identifier(r["prompt"], settings.identifier) for r in records], real, features))
    else:
        trained, identifier, seconds = "", "", 0.0
        if settings.recipe:
            class_root = Path(settings.class_images_dir or Path(out) / "class_images")
            trained, identifier, seconds = _train_subject(bench, subject, settings, folder, class_root)
        common = dict(
            base_model=settings.base_model,
            trained=trained,
            class_noun=noun,
            seed=0,
            steps=settings.sample_steps,
            guidance_scale=settings.guidance_scale,
            resolution=settings.resolution,
        )
        started = time.perf_counter()
        generated = generate(
            GenerateRequest(prompts=templates, subject=identifier, images_per_prompt=settings.seeds, **common),
            folder / "generated",
        )
        class_prompts = tuple(dict.fromkeys(fill_prompt(t, "", noun) for t in templates))
        class_run = generate(
            GenerateRequest(prompts=class_prompts, images_per_prompt=1, **common), folder / "class_generated"
        )
        images = [img for img, _ in _opened(folder / "generated", generated)]
        prompts = [strip_identifier(r["prompt"], identifier) for r in generated["images"]]
        class_images = [img for img, _ in _opened(folder / "class_generated", class_run)]
        row.update(score(images, prompts, real, features, class_images))
        row.update(train_seconds=round(seconds, 1), sample_seconds=round(time.perf_counter() - started, 1))
    write_json(folder / "metrics.json", row)
    return row


def _opened(folder: Path, record: dict):
    from PIL import Image

    return [(Image.open(folder / r["file"]).convert("RGB"), r) for r in record["images"]]


def summarize(rows: list[dict]) -> dict:
    """Per-class and overall mean ± spread of every metric present."""

    def block(selected):
        return {
            m: mean_and_spread([r[m] for r in selected if m in r]) for m in METRICS if any(m in r for r in selected)
        }

    classes = sorted({r["class"] for r in rows})
    return {
        "per_class": {c: block([r for r in rows if r["class"] == c]) for c in classes},
        "overall": block(rows),
        "subjects": len(rows),
    }


def run_bench(
    bench: Benchmark,
    settings: BenchSettings,
    features: FeatureSet,
    out: Path,
    title: str = "DreamBench",
    show_progress: bool = True,
) -> dict:
    from tqdm.auto import tqdm

    subjects = list(settings.subjects) or bench.available
    unknown = [s for s in subjects if s not in bench.classes or not bench.photos_dir(s)]
    if unknown:
        raise UserError(
            f"subject(s) {', '.join(unknown)} not found in {bench.root}; available: {', '.join(bench.available)}."
        )
    rows = [
        run_subject(bench, s, settings, features, out)
        for s in tqdm(subjects, desc="subjects", disable=not show_progress)
    ]
    table = {
        "title": title,
        "recipe": settings.recipe,
        "overrides": list(settings.overrides),
        "seeds": settings.seeds,
        "features": features.describe(),
        "rows": rows,
        **summarize(rows),
    }
    write_json(Path(out) / "table.json", table)
    (Path(out) / "table.md").write_text(markdown_table(table), encoding="utf-8")
    write_report(table, Path(out))
    return table


def plus_minus(pair) -> str:
    mean, spread = pair
    return "" if mean != mean else f"{mean:.3f} ± {spread:.3f}"


def markdown_table(table: dict) -> str:
    metrics = [m for m in METRICS if m in table["overall"]]
    lines = ["| subject | class | " + " | ".join(metrics) + " |", "|---|---|" + "---|" * len(metrics)]
    for row in table["rows"]:
        lines.append(
            f"| {row['subject']} | {row['class']} | "
            + " | ".join(f"{row[m]:.3f}" if m in row else "" for m in metrics)
            + " |"
        )
    for noun, block in table["per_class"].items():
        lines.append(
            f"| *class mean* | {noun} | "
            + " | ".join(plus_minus(block[m]) if m in block else "" for m in metrics)
            + " |"
        )
    lines.append("| **all** | | " + " | ".join(plus_minus(table["overall"][m]) for m in metrics) + " |")
    return "\n".join(lines) + f"\n\nFeatures: {table['features']}\n"


def write_report(table: dict, out: Path) -> None:
    from dreamtune.evaluation.report import Report

    report = Report(f"{table['title']}: {table['recipe'] or 'base model (class noun)'}")
    report.text(
        f"Features: {table['features']}. {table['seeds']} seed(s) per prompt. DINO / CLIP-I: mean cosine to the "
        "subject's real photos; CLIP-T: to the prompt without the identifier; PRES: class-prompt generations vs "
        "the subject (lower = prior kept); DIV: within-prompt dissimilarity (higher = more varied)."
    )
    metrics = [m for m in METRICS if m in table["overall"]]
    report.table(table["rows"], ["subject", "class", *metrics])
    report.table(
        [{"class": c, **{m: plus_minus(b[m]) for m in b}} for c, b in table["per_class"].items()]
        + [{"class": "all", **{m: plus_minus(v) for m, v in table["overall"].items()}}],
        ["class", *metrics],
    )
    for row in table["rows"]:
        sheet = out / row["subject"] / "generated" / "contact_sheet.png"
        if sheet.is_file():
            report.heading(row["subject"])
            report.image(f"{row['subject']}/generated/contact_sheet.png")
    report.write(out / "report.html")
