"""CLI commands of the evaluation package: ``dreamtune evaluate`` and ``dreamtune bench ...``."""

from __future__ import annotations

import argparse
from pathlib import Path

from dreamtune.atomic import claim_output_dir
from dreamtune.errors import UserError


def _features_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--clip",
        default=None,
        help="CLIP folder or hub id (default: the model's own clip/, else openai/clip-vit-base-patch32)",
    )
    parser.add_argument(
        "--dino", default=None, help="DINO ViT folder or hub id, or 'none' (default: facebook/dino-vits16 if available)"
    )


def _evaluate(args) -> None:
    import json

    from dreamtune.atomic import write_json
    from dreamtune.evaluation.evaluate import evaluate, load_features

    if args.out and Path(args.out).exists():
        raise UserError(
            f"--out {args.out} already exists; choose a new file name (dreamtune never overwrites your files)."
        )
    record_path = Path(args.generated) / "generations.json"
    record = json.loads(record_path.read_text()) if record_path.is_file() else {}
    model_dir = args.model or record.get("trained", {}).get("base_model") or record.get("request", {}).get("base_model")
    features = load_features(args.clip, args.dino, model_dir)
    result = evaluate(
        Path(args.generated),
        Path(args.real),
        features,
        args.identifier,
        Path(args.class_generated) if args.class_generated else None,
    )
    write_json(
        Path(args.out) if args.out else Path(args.generated) / "metrics.json", result
    )  # --out checked before the work
    for key in ("dino", "clip_i", "clip_t", "pres", "div"):
        if key in result:
            print(f"{key:7s} {result[key]:.4f}")
    print(result["features"])


def _bench(args) -> None:
    from dreamtune.bench.harness import BenchSettings, run_bench
    from dreamtune.evaluation.dreambench import read_benchmark
    from dreamtune.evaluation.evaluate import load_features
    from dreamtune.miniature.assemble import MODEL_DIR
    from dreamtune.miniature.minidreambench import write_minidreambench
    from dreamtune.models.loading import model_path

    out = Path(args.out)
    if (
        args.bench == "minidreambench"
    ):  # written as one folder: an earlier MiniDreamBench is replaced, a user's folder refused
        print(f"MiniDreamBench written to {write_minidreambench(out, seeds=args.seeds)}")
        return
    claim_output_dir(out, "--out")
    from dreamtune import config

    data = Path(args.data) if args.data else write_minidreambench(out / "minidreambench")
    bench = read_benchmark(data)
    recipe = None if args.recipe == "base" else args.recipe
    trains = args.bench == "dreambench" and recipe not in (None, "ceiling")
    recipe_model = config.load(recipe).model.pretrained if trains else ""
    model = args.model or ("" if recipe_model else str(MODEL_DIR))  # the base/ceiling rows default to the miniature
    miniature = model_path(model or recipe_model).resolve() == MODEL_DIR.resolve()
    settings = BenchSettings(
        recipe=recipe,
        overrides=tuple(args.overrides),
        base_model=model,
        subjects=tuple(s for s in (args.subjects or "").split(",") if s),
        seeds=args.seeds,
        sample_steps=args.sample_steps or (25 if miniature else 30),
        guidance_scale=args.guidance_scale or (4.0 if miniature else 7.5),
        resolution=args.resolution,
    )
    features = load_features(args.clip, args.dino, model or recipe_model or None)
    if args.bench == "methods":
        from dreamtune.bench.comparison import compare, comparison_markdown

        print(comparison_markdown(compare(bench, settings, features, out, steps=args.steps)))
    else:
        from dreamtune.bench.harness import markdown_table

        print(markdown_table(run_bench(bench, settings, features, out)))
    print(f"report: {out / 'report.html'}")


def add_commands(commands) -> None:
    e = commands.add_parser("evaluate", help="DINO / CLIP-I / CLIP-T / PRES / DIV of a folder of generations")
    e.add_argument("--generated", required=True, help="a dreamtune generate output folder")
    e.add_argument("--real", required=True, help="the subject's real photos")
    e.add_argument("--class-generated", default=None, help="class-prompt generations of the personalized model (PRES)")
    e.add_argument("--identifier", default="sks", help="removed from prompts before CLIP-T")
    e.add_argument("--model", default=None, help="base model folder (its clip/ is used when it has one)")
    e.add_argument("--out", default=None, help="metrics JSON (default: GENERATED/metrics.json)")
    _features_arguments(e)
    e.set_defaults(handler=_evaluate)

    b = commands.add_parser("bench", help="DreamBench harness, MiniDreamBench, method comparison")
    b.add_argument(
        "bench",
        choices=["dreambench", "minidreambench", "methods"],
        help="dreambench: one recipe over a benchmark; minidreambench: write the miniature's; methods: the comparison table",
    )
    b.add_argument(
        "overrides",
        nargs="*",
        help="dotted overrides for every training run, right after the benchmark name, e.g. train.steps=200",
    )
    b.add_argument("--data", default=None, help="DreamBench folder (default: a MiniDreamBench under --out)")
    b.add_argument(
        "--recipe", default="configs/miniature-lora.yaml", help="YAML recipe, 'base' (class noun) or 'ceiling'"
    )
    b.add_argument("--model", default=None, help="base model (default: the miniature for MiniDreamBench)")
    b.add_argument("--out", required=True)
    b.add_argument("--subjects", default=None, help="comma-separated subset (default: all with photos)")
    b.add_argument("--seeds", type=int, default=4, help="images per prompt")
    b.add_argument("--steps", type=int, default=None, help="methods: the training step budget of every row")
    b.add_argument("--sample-steps", type=int, default=None)
    b.add_argument("--guidance-scale", type=float, default=None)
    b.add_argument("--resolution", type=int, default=None)
    _features_arguments(b)
    b.set_defaults(handler=_bench)
