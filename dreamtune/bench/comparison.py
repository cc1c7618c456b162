"""``dreamtune bench methods``: one table comparing personalization methods on the same
subjects, seeds and step budget — base model (class noun), textual inversion, LoRA and full
DreamBooth, each without and with prior preservation — plus the ground-truth ceiling row.
Each row is a harness run (harness.py) in <out>/<method>/; everything resumes.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from dreamtune.atomic import write_json
from dreamtune.bench.harness import CEILING, METRICS, BenchSettings, plus_minus, run_bench
from dreamtune.evaluation.dreambench import Benchmark
from dreamtune.evaluation.evaluate import FeatureSet
from dreamtune.recipes import RECIPES_DIR

CONFIGS = RECIPES_DIR
MINIATURE_METHODS: dict[str, tuple[str | None, tuple[str, ...]]] = {
    "base (class noun)": (None, ()),
    "textual inversion": (str(CONFIGS / "miniature-textual-inversion.yaml"), ("prior.enabled=false",)),
    "textual inversion + prior": (str(CONFIGS / "miniature-textual-inversion.yaml"), ("prior.enabled=true",)),
    "lora": (str(CONFIGS / "miniature-lora.yaml"), ("prior.enabled=false",)),
    "lora + prior": (str(CONFIGS / "miniature-lora.yaml"), ("prior.enabled=true",)),
    "dreambooth": (str(CONFIGS / "miniature-dreambooth.yaml"), ("prior.enabled=false",)),
    "dreambooth + prior": (str(CONFIGS / "miniature-dreambooth.yaml"), ("prior.enabled=true",)),
    "ceiling (ground truth)": (CEILING, ()),
}


def _folder(name: str) -> str:
    return name.split(" (")[0].replace(" + ", "+").replace(" ", "_")


def compare(
    bench: Benchmark,
    common: BenchSettings,
    features: FeatureSet,
    out: Path,
    methods: dict = MINIATURE_METHODS,
    steps: int | None = None,
    show_progress: bool = True,
) -> dict:
    """Run every method on ``common.subjects``; ``steps`` overrides every recipe's train.steps."""
    out = Path(out)
    rows = []
    for name, (recipe, overrides) in methods.items():
        budget = (f"train.steps={steps}",) if steps and recipe not in (None, CEILING) else ()
        settings = replace(
            common,
            recipe=recipe,
            overrides=(*overrides, *budget, *common.overrides),
            class_images_dir=str(out / "class_images"),
        )
        table = run_bench(bench, settings, features, out / _folder(name), title=name, show_progress=show_progress)
        wall = sum(r.get("train_seconds", 0) + r.get("sample_seconds", 0) for r in table["rows"])
        rows.append(
            {
                "method": name,
                **{m: table["overall"][m] for m in METRICS if m in table["overall"]},
                "seconds_per_subject": round(wall / max(1, len(table["rows"])), 1),
            }
        )
    result = {
        "subjects": list(common.subjects) or bench.available,
        "seeds": common.seeds,
        "steps": steps,
        "features": features.describe(),
        "rows": rows,
    }
    write_json(out / "comparison.json", result)
    (out / "comparison.md").write_text(comparison_markdown(result), encoding="utf-8")
    _sheet(bench, result, out, list(methods))
    _report(result, out)
    return result


def comparison_markdown(result: dict) -> str:
    metrics = [m for m in METRICS if any(m in r for r in result["rows"])]
    lines = ["| method | " + " | ".join(metrics) + " | s / subject |", "|---|" + "---|" * (len(metrics) + 1)]
    for row in result["rows"]:
        cells = [plus_minus(row[m]) if m in row else "" for m in metrics]
        lines.append(f"| {row['method']} | " + " | ".join(cells) + f" | {row['seconds_per_subject']:.0f} |")
    return "\n".join(lines) + (
        f"\n\nSubjects: {', '.join(result['subjects'])}; {result['seeds']} seed(s) per prompt; "
        f"{result['steps'] or 'recipe'} training steps. Features: {result['features']}\n"
    )


def _sheet(bench: Benchmark, result: dict, out: Path, methods: list[str], prompts: int = 6) -> None:
    """comparison.png: per subject, one row per method, the same prompts (seed 0) side by side."""
    import json

    from PIL import Image

    from dreamtune.sampling.contact_sheet import contact_sheet, save_png

    cells, captions = [], []
    for subject in result["subjects"][:3]:
        for name in methods:
            folder = out / _folder(name) / subject
            folder = bench.ceiling_dir(subject) if name.startswith("ceiling") else folder / "generated"
            record = folder / "generations.json" if folder else None
            if not record or not record.is_file():
                continue
            first = [r for r in json.loads(record.read_text())["images"] if r["seed"] == 0][:prompts]
            for r in first:
                cells.append(Image.open(folder / r["file"]).convert("RGB"))
                captions.append(f"{subject} · {name}")
    if cells:
        save_png(contact_sheet(cells, captions, columns=prompts, cell=128), out / "comparison.png")


def _report(result: dict, out: Path) -> None:
    from dreamtune.evaluation.report import Report

    report = Report("Method comparison on the miniature")
    report.text(comparison_markdown(result).split("\n\n")[1])
    metrics = [m for m in METRICS if any(m in r for r in result["rows"])]
    report.table(
        [
            {
                "method": r["method"],
                **{m: plus_minus(r[m]) for m in metrics if m in r},
                "s / subject": r["seconds_per_subject"],
            }
            for r in result["rows"]
        ],
        ["method", *metrics, "s / subject"],
    )
    report.image("comparison.png", "rows: methods; columns: the first prompts, seed 0")
    report.write(out / "report.html")
