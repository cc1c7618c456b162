"""Command line: thin. Parses arguments, builds the pieces, calls them; user errors end in
one sentence and exit status 2, never a traceback."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dreamtune.errors import UserError, os_error_sentence
from dreamtune.models.tiny_names import FAMILIES as TINY_FAMILIES


def _recipe_and_overrides(recipe: str | None, overrides: list[str]) -> tuple[str | None, list[str]]:
    """The recipe argument is optional: a first positional like ``train.lr=1e-4`` is an override."""
    if recipe and "=" in recipe and not recipe.endswith((".yaml", ".yml")):
        return None, [recipe, *overrides]
    return recipe, list(overrides)


def _prepare(args) -> None:
    from dreamtune.data.prepare import PrepareOptions, prepare, summary

    options = PrepareOptions(
        resolution=args.resolution,
        crop=args.crop,
        buckets=args.buckets,
        grayscale=args.grayscale,
        background=args.background,
        resample=args.resample,
        min_size=args.min_size,
        caption=args.instance_prompt,
        seed=args.seed,
        strict=args.strict,
    )
    report = prepare(Path(args.src), Path(args.out), options)
    print(summary(report))
    print(f"report: {Path(args.out) / 'report.json'}")


def _caption(args) -> None:
    from dreamtune.data.autocaption import caption_set
    from dreamtune.models.loading import load_captioner

    counts = caption_set(Path(args.folder), lambda: load_captioner(args.model), args.prefix, overwrite=args.overwrite)
    print(
        f"captioned {counts['captioned']} image(s) of {args.folder} ({counts['kept']} hand-written caption(s) kept); "
        f"see {Path(args.folder) / 'metadata.jsonl'}"
    )


def _train(args) -> None:
    from dreamtune import config
    from dreamtune.training.run import train

    recipe, overrides = _recipe_and_overrides(args.config, args.overrides)
    result = train(config.load(recipe, overrides), resume=args.resume)
    print(f"trained {result.state.step} steps; model written to {result.model_dir}")
    if args.push_to_hub:
        from dreamtune.models.hub import push_model

        print(push_model(result.model_dir, args.push_to_hub))


def _generate(args) -> None:
    from dreamtune.sampling.generate import GenerateRequest, generate, read_prompts

    prompts = list(args.prompt or []) + (read_prompts(Path(args.prompts_file)) if args.prompts_file else [])
    request = GenerateRequest(
        base_model=args.model or "",
        trained=args.trained or "",
        prompts=tuple(prompts),
        subject=args.subject,
        class_noun=args.class_noun,
        images_per_prompt=args.images_per_prompt,
        seed=args.seed,
        guidance_scale=args.guidance_scale,
        steps=args.steps,
        scheduler=args.scheduler,
        resolution=args.resolution,
        negative_prompt=args.negative_prompt,
        allow_pickle=args.allow_pickle,
        lora_scale=args.lora_scale,
        print_profile=args.print_profile or "",
        print_intent=args.print_intent,
        print_black_point_compensation=not args.no_black_point_compensation,
        print_size=args.print_size,
        print_ppi=args.ppi,
        print_sharpen=args.print_sharpen,
    )
    record = generate(request, Path(args.out))
    extra = ""
    if args.print_profile:
        checks = [image["print"] for image in record["images"]]
        mean = sum(c["delta_e00_mean"] for c in checks) / len(checks)
        extra = (
            f", print-ready CMYK TIFFs (NNNN.cmyk.tif, {'x'.join(map(str, checks[0]['pixels']))} px at {args.ppi} ppi), "
            f"soft proofs (NNNN.proof.png, print_sheet.png; ΔE00 on paper {mean:.1f} mean)"
        )
    print(f"wrote {len(record['images'])} image(s){extra} and contact_sheet.png to {args.out}")


def _export(args) -> None:
    import torch

    from dreamtune.models.single_file import export_single_file

    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}[args.dtype]
    print(f"wrote {export_single_file(Path(args.model), Path(args.out) if args.out else None, dtype)}")


def _recipes(args) -> None:
    from dreamtune.recipes import RECIPES_DIR, recipe_names

    for name in recipe_names():
        first = (RECIPES_DIR / f"{name}.yaml").read_text(encoding="utf-8").splitlines()[0].lstrip("# ").strip()
        print(f"{name:32s} {first}")


def _tiny_model(args) -> None:
    from dreamtune.models.tiny import build_tiny_pipeline

    print(f"tiny {args.family} pipeline written to {build_tiny_pipeline(Path(args.out), args.family, args.seed)}")


def _demo(args) -> None:
    from dreamtune.miniature.demo import run_demo

    run_demo(
        Path(args.out),
        args.subject,
        Path(args.images) if args.images else None,
        args.class_noun,
        args.seeds,
        args.overrides,
        guidance_scale=args.guidance_scale,
    )


def _pretrain(args) -> None:
    if args.recipe == "assemble":
        from dreamtune.miniature.assemble import MODEL_DIR, assemble

        print(f"miniature pipeline written to {assemble(Path(args.root), Path(args.out) if args.out else MODEL_DIR)}")
        return
    from dreamtune.miniature.pretrain import pretrain

    recipe, overrides = _recipe_and_overrides(args.recipe, args.overrides)
    print(f"stage written to {pretrain(recipe, overrides)}")


def _ui(args) -> None:
    from dreamtune.ui.safety import Limits
    from dreamtune.ui.server import serve

    serve(
        Path(args.runs),
        args.host,
        args.port,
        args.auth or "",
        Limits(args.max_upload_mb, args.max_files, args.max_jobs),
        certfile=args.certfile or "",
        keyfile=args.keyfile or "",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dreamtune", description="Personalize text-to-image diffusion models.")
    commands = parser.add_subparsers(dest="command", required=True)

    p = commands.add_parser("prepare", help="validate and standardize a folder of photos")
    p.add_argument("src")
    p.add_argument("--out", required=True)
    p.add_argument("--resolution", type=int, default=512)
    p.add_argument("--crop", choices=["center", "random", "face"], default="center")
    p.add_argument("--buckets", action="store_true", help="aspect-ratio buckets instead of square crops")
    p.add_argument("--grayscale", action="store_true")
    p.add_argument("--background", default="white", help="colour that transparent pixels are composited on")
    p.add_argument("--resample", default="lanczos", help="resize filter: lanczos, bicubic, bilinear, box, nearest")
    p.add_argument(
        "--min-size", type=int, default=None, help="shortest side below this is skipped (default: resolution/2)"
    )
    p.add_argument("--instance-prompt", default=None, help="caption for images without their own")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--strict", action="store_true", help="any skipped file is an error")
    p.set_defaults(handler=_prepare)

    c = commands.add_parser("caption", help="caption a prepared photo set with an image-captioning model")
    c.add_argument("folder", help="a folder dreamtune prepare wrote")
    c.add_argument("--model", required=True, help="an image-captioning model: a local folder or a cached hub id")
    c.add_argument("--prefix", required=True, help="the subject's words each caption starts with, e.g. 'a sks dog'")
    c.add_argument("--overwrite", action="store_true", help="replace hand-written captions too")
    c.set_defaults(handler=_caption)

    t = commands.add_parser("train", help="fine-tune a model from a YAML recipe")
    t.add_argument(
        "config", nargs="?", default=None, help="YAML recipe: a path, or a shipped recipe's name (dreamtune recipes)"
    )
    t.add_argument("overrides", nargs="*", help="dotted overrides, e.g. train.lr=1e-4")
    t.add_argument("--resume", default=None, help="'latest' or a checkpoint folder")
    t.add_argument(
        "--push-to-hub",
        default=None,
        metavar="REPO",
        help="upload model/ (with its model card) to this hub repo, private",
    )
    t.set_defaults(handler=_train)

    g = commands.add_parser("generate", help="render prompts with a base model and a trained result")
    g.add_argument("--model", help="base model folder or hub id (default: the one the run was trained on)")
    g.add_argument("--trained", help="a run's model/ folder")
    g.add_argument("--prompt", action="append", help="a prompt; may repeat; {subject} and {class} are filled in")
    g.add_argument("--prompts-file", help="one prompt per line, or DreamBench's prompt list")
    g.add_argument("--subject", default="sks", help="identifier that replaces {subject}")
    g.add_argument("--class-noun", default="", help="noun that replaces {class}")
    g.add_argument("--images-per-prompt", type=int, default=1)
    g.add_argument("--seed", type=int, default=0)
    g.add_argument(
        "--guidance-scale", type=float, default=None, help="default: the model's own (a few-step model's), else 7.5"
    )
    g.add_argument("--steps", type=int, default=None, help="default: the model's own (a few-step model's), else 30")
    g.add_argument(
        "--scheduler",
        default="default",
        help="default: the model's own, else DDIM for SD models, Euler for SD3 / FLUX; ddim_trailing for few-step models",
    )
    g.add_argument("--resolution", type=int, default=None)
    g.add_argument("--negative-prompt", default=None)
    g.add_argument("--lora-scale", type=float, default=1.0)
    g.add_argument("--allow-pickle", action="store_true")
    g.add_argument(
        "--print-profile",
        metavar="X.icc",
        help="also make every image ready for print through this CMYK ICC profile (your print shop's): "
        "a CMYK TIFF with the profile embedded, a soft proof with paper white, a ΔE00 check (docs/printing.md)",
    )
    g.add_argument(
        "--print-intent",
        default="relative",
        help="rendering intent of the separation: relative (default, with black-point compensation), perceptual, "
        "saturation, absolute",
    )
    g.add_argument(
        "--no-black-point-compensation",
        action="store_true",
        help="clip shadows darker than the paper's black instead of compressing them",
    )
    g.add_argument("--print-size", default="", help="print size to resample to, e.g. 10x15cm, 4x6in, 100mm")
    g.add_argument("--ppi", type=int, default=300, help="print resolution in pixels per inch (default 300)")
    g.add_argument(
        "--print-sharpen",
        default="mild",
        help="output sharpening sized to --ppi (0.1 mm radius on paper): none, mild (default), strong",
    )
    g.add_argument("--out", required=True)
    g.set_defaults(handler=_generate)

    r = commands.add_parser(
        "pretrain", help="build the miniature model: a stage recipe (configs/miniature/) or 'assemble'"
    )
    r.add_argument("recipe", help="configs/miniature/{clip,vae,unet}.yaml, or 'assemble'")
    r.add_argument("overrides", nargs="*", help="dotted overrides, e.g. train.steps=100")
    r.add_argument("--root", default="runs/miniature", help="assemble: where the stages were trained")
    r.add_argument("--out", default=None, help="assemble: output folder (default: the packaged model)")
    r.set_defaults(handler=_pretrain)

    d = commands.add_parser(
        "demo", help="personalize a subject on the embedded miniature model, offline; writes report.html"
    )
    d.add_argument("overrides", nargs="*", help="dotted overrides of configs/miniature-lora.yaml, e.g. train.steps=200")
    d.add_argument("--out", default="runs/demo")
    d.add_argument(
        "--subject",
        default=None,
        help="a world subject no pretraining image shows: a held-out instance (dog3 when neither this nor --images "
        "is given; cat3, ...) or a new shape (toy_pinata, dog_wolf, ...: dreamtune/miniature/new_shapes.py)",
    )
    d.add_argument("--images", default=None, help="your own photo folder instead of a world subject")
    d.add_argument("--class-noun", default=None, help="class of your own subject, e.g. dog")
    d.add_argument("--seeds", type=int, default=2, help="images per context")
    d.add_argument("--guidance-scale", type=float, default=4.0, help="classifier-free guidance of every generated row")
    d.set_defaults(handler=_demo)

    from dreamtune.bench.commands import add_commands

    add_commands(commands)

    e = commands.add_parser(
        "export", help="write a full fine-tune as one original-layout .safetensors (ComfyUI, A1111)"
    )
    e.add_argument("model", help="a run's model/ folder (DreamBooth or from scratch)")
    e.add_argument(
        "--single-file", action="store_true", required=True, help="the original (LDM/SGM) single-file layout"
    )
    e.add_argument("--out", default=None, help="output file (default: beside model/, named after the run)")
    e.add_argument("--dtype", choices=["fp16", "bf16", "fp32"], default="fp16")
    e.set_defaults(handler=_export)

    u = commands.add_parser(
        "ui", help="the web UI: photos -> training with live progress -> generations (offline on the miniature)"
    )
    u.add_argument("--host", default="127.0.0.1", help="address to listen on; anything but loopback needs --auth")
    u.add_argument("--port", type=int, default=7860)
    u.add_argument("--runs", default="runs", help="folder of the UI's uploads, photo sets, runs and generations")
    u.add_argument("--auth", default=None, metavar="USER:PASS", help="HTTP basic login (required with --host 0.0.0.0)")
    u.add_argument("--max-upload-mb", type=float, default=25.0, help="largest accepted photo")
    u.add_argument("--max-files", type=int, default=100, help="most files in one photo set")
    u.add_argument(
        "--max-jobs", type=int, default=1, help="training jobs at once (the rest wait in the queue; default 1)"
    )
    u.add_argument("--certfile", default=None, help="serve HTTPS with this PEM certificate (chain); see docs/ui.md")
    u.add_argument("--keyfile", default=None, help="the certificate's private key (PEM), unless --certfile holds it")
    u.set_defaults(handler=_ui)

    commands.add_parser(
        "recipes", help="list the shipped recipes (use them by name: dreamtune train lora-sd15 ...)"
    ).set_defaults(handler=_recipes)

    m = commands.add_parser("tiny-model", help="write a tiny random pipeline (smoke tests, no download)")
    m.add_argument(
        "--family",
        choices=TINY_FAMILIES,
        default="sd1",
    )
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--out", required=True)
    m.set_defaults(handler=_tiny_model)
    return parser


def main(argv: list[str] | None = None) -> int:
    import signal

    if hasattr(signal, "SIGXFSZ"):  # past a file-size limit, let the write fail (one sentence) instead of killing us
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    args = build_parser().parse_args(argv)
    try:
        args.handler(args)
    except UserError as exc:  # a run stopped on request is paused, not failed: no "error:" before it
        print(f"{'' if getattr(exc, 'exit_code', 2) > 128 else 'error: '}{exc}", file=sys.stderr)
        return getattr(exc, "exit_code", 2)
    except OSError as exc:  # a refusal of the file system that no nearer check named
        sentence = os_error_sentence(exc)
        if sentence is None:
            raise
        print(f"error: {sentence}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; completed checkpoints and outputs are intact.", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
