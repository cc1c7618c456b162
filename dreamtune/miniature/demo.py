"""``dreamtune demo --out DIR``: the whole mission offline on the miniature model.

A held-out world instance (never seen in pretraining) is photographed 5 times in 2 contexts,
personalized with LoRA DreamBooth + prior preservation, then rendered in 8 contexts it was
never shown. The same run measures three rows with the mini CLIP:
  floor        the base model prompted with the class noun ("a dog in the jungle")
  personalized the fine-tuned model prompted with the identifier ("a sks dog in the jungle")
  ceiling      ground-truth world renders of the subject in those contexts
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from PIL import Image

from dreamtune import config
from dreamtune.atomic import claim_output_dir, write_json
from dreamtune.data.ingest import IMAGE_SUFFIXES
from dreamtune.data.masks import MASK_SUFFIX, is_mask_file
from dreamtune.errors import UserError
from dreamtune.evaluation.features import load_clip
from dreamtune.evaluation.metrics import prompt_fidelity, subject_fidelity
from dreamtune.evaluation.plots import line_plot
from dreamtune.methods import method_of
from dreamtune.miniature import scenery, world
from dreamtune.miniature.assemble import MODEL_DIR
from dreamtune.recipes import RECIPES_DIR
from dreamtune.sampling.contact_sheet import contact_sheet, save_png
from dreamtune.sampling.generate import GenerateRequest, generate
from dreamtune.training.run import train

RECIPE = RECIPES_DIR / "miniature-lora.yaml"
TRAIN_CONTEXTS = (None, "wooden_floor")
EVAL_CONTEXTS = ("jungle", "snow", "beach", "cobblestone", "city", "mountain", "blue_house", "autumn_tree")
IDENTIFIER = "sks"


def photograph(
    subject: str,
    folder: Path,
    count: int = 5,
    identifier: str = IDENTIFIER,
    contexts: tuple[str | None, ...] = TRAIN_CONTEXTS,
    caption: str = "",
) -> Path:
    """``count`` renders of ``subject`` in ``contexts`` (in turn; None: the plain studio) as an imagefolder, each
    captioned ``caption`` (default "a IDENTIFIER CLASS") and its scene's phrase, with the subject's mask beside it
    (``photoN.mask.png``, what ``data.subject_masks`` reads)."""
    folder.mkdir(parents=True, exist_ok=True)
    caption = caption or world.Scene(subject, None).caption(identifier)
    records = []
    for index in range(count):
        scene = world.Scene(subject, contexts[index % len(contexts)])
        name = f"photo{index}.png"
        image, mask = world.render_with_mask(scene, 50_000 + index)
        image.save(folder / name)
        mask.save(folder / f"photo{index}{MASK_SUFFIX}.png")
        text = f"{caption} {scenery.PHRASES[scene.context]}" if scene.context else caption
        records.append({"file_name": name, "text": text})
    (folder / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return folder


def photographs(folder: Path) -> list[Image.Image]:
    """The photos ``photograph`` wrote into ``folder``, in order (their masks beside them left out)."""
    return [
        Image.open(p).convert("RGB") for p in sorted(folder.glob("photo*.png")) if not is_mask_file(p, IMAGE_SUFFIXES)
    ]


def _images(record: dict, folder: Path) -> list[Image.Image]:
    return [Image.open(folder / r["file"]).convert("RGB") for r in record["images"]]


def _measure(clip, images, real, class_prompts) -> dict:
    features = clip.images(images)
    return {"clip_i": subject_fidelity(features, real), "clip_t": prompt_fidelity(features, clip.texts(class_prompts))}


def identifier_of(recipe: config.Config) -> str:
    """The word that names the subject in prompts: textual inversion's placeholder token, else ``sks``."""
    return method_of(recipe.method).identifier(recipe.method, IDENTIFIER)


def subjects() -> tuple[str, ...]:
    """The world's subjects no pretraining image shows: the held-out instances, then the new shapes."""
    from dreamtune.miniature.new_shapes import NEW_SHAPES

    return (*world.HELD_OUT, *(s.name for s in NEW_SHAPES))


def run_demo(
    out: Path,
    subject: str | None = None,
    images: Path | None = None,
    class_noun: str | None = None,
    seeds: int = 2,
    overrides: list[str] = (),
    model_dir: Path = MODEL_DIR,
    guidance_scale: float = 4.0,
    recipe: Path = RECIPE,
    photo_contexts: tuple[str | None, ...] = TRAIN_CONTEXTS,
) -> dict:
    """Personalize the miniature on a subject (a world subject photographed in ``photo_contexts``, or ``images``)
    and judge it against the base model and ground truth in the held-out EVAL_CONTEXTS."""
    started = time.perf_counter()
    if set(photo_contexts) & set(EVAL_CONTEXTS):
        raise ValueError(f"photo contexts {photo_contexts} include held-out evaluation contexts {EVAL_CONTEXTS}")
    out, model_dir = Path(out), Path(model_dir)
    claim_output_dir(out, "--out")
    if not (model_dir / "model_index.json").is_file():
        raise UserError(
            f"the miniature model is missing from {model_dir}; build it with bash benchmarks/pretrain_miniature.sh."
        )
    if images is not None and subject is not None:
        raise UserError(f"--subject {subject} and --images {images} name two subjects; give one of them.")
    subject = subject or ("dog3" if images is None else None)
    if images is None and subject not in subjects():
        raise UserError(
            f"--subject {subject} is not a held-out instance; choose one of {', '.join(world.HELD_OUT)} "
            f"(recolours of pretraining shapes) or of {', '.join(subjects()[len(world.HELD_OUT) :])} (new shapes)."
        )
    noun = class_noun or (world.instance(subject).class_noun if images is None else "object")
    identifier = identifier_of(config.load(recipe, list(overrides)))
    photos = Path(images) if images else out / "photos"
    rewards = (
        [f"rl.subject={identifier}", f"rl.class_noun={noun}"]
        if any(o.startswith("rl.algorithm=") for o in overrides)
        else []
    )
    recipe_config = config.load(
        recipe,
        [
            f"model.pretrained={model_dir}",
            f"data.instance_dir={photos}",
            f"data.instance_prompt=a {identifier} {noun}",
            f"train.output_dir={out / 'run'}",
            f"prior.class_prompt=a {noun}",
            *rewards,
            *overrides,
        ],
    )
    # the personalized model is trained and asked in the same words: the run's instance prompt (an override of
    # data.instance_prompt, e.g. "a sks" without the class noun, changes both), then each scene's phrase
    instance = recipe_config.data.instance_prompt
    if images is None:
        photograph(subject, photos, identifier=identifier, contexts=photo_contexts, caption=instance)
    run = train(recipe_config, replace=True)
    phrases = [scenery.PHRASES[c] for c in EVAL_CONTEXTS]
    pairs = [(p, s) for p in phrases for s in range(seeds)]
    common = dict(images_per_prompt=seeds, steps=25, guidance_scale=guidance_scale, resolution=64)
    tuned = generate(
        GenerateRequest(trained=str(run.model_dir), prompts=tuple(f"{instance} {p}" for p in phrases), **common),
        out / "personalized",
    )
    base = generate(
        GenerateRequest(base_model=str(model_dir), prompts=tuple(f"a {noun} {p}" for p in phrases), **common),
        out / "floor",
    )
    clip = load_clip(model_dir / "clip", name="mini-CLIP")
    real = clip.images([Image.open(p).convert("RGB") for p in sorted((out / "run" / "data" / "images").glob("*.png"))])
    class_prompts = [f"a {noun} {p}" for p, _ in pairs]
    rows = {
        "floor": _measure(clip, _images(base, out / "floor"), real, class_prompts),
        "personalized": _measure(clip, _images(tuned, out / "personalized"), real, class_prompts),
    }
    truth = []
    if images is None:
        truth = [world.render(world.Scene(subject, c), 90_000 + s) for c in EVAL_CONTEXTS for s in range(seeds)]
        rows["ceiling"] = _measure(clip, truth, real, class_prompts)
        _judge_rows(rows, model_dir, subject, base, tuned, truth, out, seeds)
    metrics = summarize(rows, time.perf_counter() - started, subject or f"your photos in {images}", noun)
    write_json(out / "metrics.json", metrics)
    _report(out, run, base, tuned, truth, metrics, noun)
    print(f"demo finished in {metrics['wall_seconds']:.0f} s: {headline(metrics)}report {out / 'report.html'}")
    return metrics


def _judge_rows(
    rows: dict, model_dir: Path, subject: str, base: dict, tuned: dict, truth: list, out: Path, seeds: int
) -> None:
    """The miniature judge's verdicts for each row, when the model ships a judge (``judge/``)."""
    if not (model_dir / "judge" / "judge.safetensors").is_file():
        return
    from dreamtune.miniature.judge import reference_photos

    photos = reference_photos(subject)  # the subject's references, the same whatever photos the run trained on
    images = {
        "floor": _images(base, out / "floor"),
        "personalized": _images(tuned, out / "personalized"),
        "ceiling": truth,
    }
    judge_rows(rows, model_dir / "judge", model_dir, subject, images, photos, seeds)


def judge_rows(
    rows: dict,
    judge_dir: Path,
    model_dir: Path,
    subject: str,
    images: dict[str, list],
    photos: list,
    seeds: int,
    cache: dict | None = None,
) -> None:
    """Add the judge's verdicts (identity among the class's instances and among all, context, class,
    the judge's CLIP-I) to each row of ``rows`` whose ``images`` are given. ``cache`` (a dict kept
    by the caller) keeps the loaded judge and each subject's references across calls with the
    same judge and the same photos per subject."""
    from dreamtune.miniature import judge

    cache = {} if cache is None else cache
    if "net" not in cache:
        cache["net"], cache["vae"] = judge.load_judge(judge_dir), judge.load_vae(model_dir)
    net, vae = cache["net"], cache["vae"]
    contexts = [c for c in EVAL_CONTEXTS for _ in range(seeds)]
    if ("references", subject) not in cache:
        cache["references", subject] = judge.instance_references(net, subject, photos, vae)
    for row, row_images in images.items():
        verdicts = judge.verdicts(net, row_images, subject, contexts, references=cache["references", subject])
        rows.setdefault(row, {}).update({f"judge_{k}": round(v, 4) for k, v in verdicts.items()})


def headline(metrics: dict) -> str:
    """The judge's verdicts on the personalized images, identity among all instances beside identity in
    the class ("" where nothing was judged: your own photos have no ground truth in the miniature's world)."""
    judged = metrics.get("personalized", {})
    if "judge_identity" not in judged:
        return ""
    return (
        f"identity {judged['judge_identity']:.0%} in its class, {judged['judge_identity_all']:.0%} among all "
        f"instances (ground truth {metrics['ceiling']['judge_identity_all']:.0%}), context {judged['judge_context']:.0%}; "
    )


UNMEASURED = (
    "These photos are yours, so the miniature's world has no ground truth of them: there is no ceiling row and no "
    "judge, only CLIP-I and CLIP-T from the miniature's own small CLIP. The miniature draws 64-px scenes of glyphs, "
    "not photographs, so its images cannot look like real photos and CLIP-I to them can fall below the base "
    "model's: read the pictures below, not the table. Real models (SDXL, FLUX, SD3.5) are the place for photos."
)


def summarize(rows: dict, wall_seconds: float, subject: str, noun: str) -> dict:
    result = {
        "subject": subject,
        "class": noun,
        "features": "mini-CLIP (stands in for OpenAI CLIP offline)",
        **rows,
        "wall_seconds": round(wall_seconds, 1),
    }
    if "ceiling" in rows:
        gap = rows["ceiling"]["clip_i"] - rows["floor"]["clip_i"]
        result["clip_i_gap_closed"] = (rows["personalized"]["clip_i"] - rows["floor"]["clip_i"]) / gap if gap else None
        result["clip_t_vs_ceiling"] = rows["personalized"]["clip_t"] / rows["ceiling"]["clip_t"]
        if "judge_similarity" in rows["ceiling"]:
            judged = rows["ceiling"]["judge_similarity"] - rows["floor"]["judge_similarity"]
            result["judge_gap_closed"] = (
                (rows["personalized"]["judge_similarity"] - rows["floor"]["judge_similarity"]) / judged
                if judged
                else None
            )
    return result


def _report(out: Path, run, base: dict, tuned: dict, truth: list, metrics: dict, noun: str) -> None:
    from dreamtune.evaluation.report import Report

    inputs = [Image.open(p) for p in sorted((out / "run" / "data" / "images").glob("*.png"))]
    save_png(contact_sheet(inputs, [f"input {i}" for i in range(len(inputs))], columns=5, cell=128), out / "inputs.png")
    triples, captions = [], []
    for index, (b, t) in enumerate(zip(base["images"], tuned["images"])):
        triples += [Image.open(out / "floor" / b["file"]), Image.open(out / "personalized" / t["file"])]
        captions += [f"base: {b['prompt']}", f"personalized: {t['prompt']}"]
        if truth:
            triples.append(truth[index])
            captions.append("ground truth")
    save_png(contact_sheet(triples, captions, columns=3 if truth else 2, cell=128), out / "side_by_side.png")
    curve = [(r["step"], r["loss"]) for r in run.history]
    line_plot({"loss": curve}, "training loss (moving average of 20 steps)", smooth=20).save(out / "loss.png")
    report = Report(f"dreamtune demo — personalizing {metrics['subject']} (a {noun}) on the miniature model")
    report.heading("Input photos")
    report.image("inputs.png")
    report.heading("Metrics")
    report.text(
        f"Features: {metrics['features']}. CLIP-I: mean cosine to the input photos; CLIP-T: to the prompt without the identifier."
    )
    judged = "judge_identity" in metrics.get("ceiling", {})
    columns = ["row", "clip_i", "clip_t"] + (
        ["judge_identity", "judge_identity_all", "judge_context", "judge_class", "judge_similarity"] if judged else []
    )
    report.table([{"row": k, **metrics[k]} for k in ("floor", "personalized", "ceiling") if k in metrics], columns)
    if not truth:
        report.text(UNMEASURED)
    if judged and metrics.get("judge_gap_closed") is not None:
        report.text(
            "Judge (the miniature's own, validated on ground truth of held-out instances): identity = the subject is the "
            "nearest of its class's 4 instances (chance 25 %); identity_all = the nearest of all "
            "instances, every class's; class = the nearest of all instances is of its class; "
            "context = the prompted context recognised; "
            f"similarity = to the input photos. Personalization closes {metrics['judge_gap_closed']:.0%} of the judge's "
            "floor→ceiling similarity gap."
        )
    if "clip_i_gap_closed" in metrics:
        report.text(
            f"Personalized CLIP-I closes {metrics['clip_i_gap_closed']:.0%} of the floor→ceiling gap; "
            f"CLIP-T is {metrics['clip_t_vs_ceiling']:.0%} of the ceiling's. Wall time {metrics['wall_seconds']:.0f} s."
        )
    report.heading("Generations in contexts never shown")
    report.image("personalized/contact_sheet.png")
    report.heading("Base model vs personalized" + (" vs ground truth" if truth else ""))
    report.image("side_by_side.png")
    report.heading("Training loss")
    report.image("loss.png")
    report.write(out / "report.html")
