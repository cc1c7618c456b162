"""``dreamtune generate``: a base model plus any dreamtune output -> images, sheet, record.

Prompts may use ``{subject}`` and ``{class}`` placeholders; the DreamBench prompt templates
(``'a {0} {1} in the jungle'``) work as they are, with {0} = subject token, {1} = class noun.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from dreamtune.atomic import atomic_file, check_output_dir, claim_output_dir, write_json
from dreamtune.config import ModelConfig
from dreamtune.errors import UserError
from dreamtune.models.loading import load_base_pipeline, quiet_libraries
from dreamtune.sampling.contact_sheet import contact_sheet, save_png
from dreamtune.sampling.pipeline import (
    SCHEDULERS,
    lora_scale_arguments,
    pipeline_resolution,
    sample,
    scheduler_for,
    scheduler_name,
)
from dreamtune.sampling.print_ready import PrintSettings, print_sheet, write_print


@dataclass(frozen=True)
class GenerateRequest:
    base_model: str = ""
    trained: str = ""  # a run's model/ folder (LoRA, TI or full pipeline); "" = base only
    prompts: tuple[str, ...] = ()
    subject: str = "sks"
    class_noun: str = ""
    images_per_prompt: int = 1
    seed: int = 0
    guidance_scale: float | None = None  # None: the model's own (a few-step model records it), else 7.5
    steps: int | None = None  # None: the model's own, else 30
    scheduler: str = "default"  # the model's own, else DDIM for SD models, Euler for flow-matching ones
    resolution: int | None = None
    negative_prompt: str | None = None
    allow_pickle: bool = False
    lora_scale: float = 1.0
    print_profile: str = ""  # a CMYK .icc: also make every image ready for print (sampling/print_ready.py)
    print_intent: str = "relative"
    print_black_point_compensation: bool = True
    print_size: str = ""  # e.g. 10x15cm: resample to fit it at print_ppi ("" keeps the pixels)
    print_ppi: int = 300
    print_sharpen: str = "mild"
    extra: dict = field(default_factory=dict)


MAX_LORA_SCALE = 10.0  # past this a LoRA's update swamps the base weights (1e30 renders black)


DEFAULT_SAMPLING = {"steps": 30, "guidance_scale": 7.5, "scheduler": "default"}


def with_model_sampling(request: GenerateRequest, description: dict) -> GenerateRequest:
    """What the request leaves open (steps, guidance, the default scheduler) from the model's own ``sampling``
    (dreamtune.json; a few-step model records its steps, scheduler and guidance), else the usual defaults."""
    own = {**DEFAULT_SAMPLING, **(description.get("sampling") or {})}
    return dataclasses.replace(
        request,
        steps=request.steps if request.steps is not None else int(own["steps"]),
        guidance_scale=request.guidance_scale if request.guidance_scale is not None else float(own["guidance_scale"]),
        scheduler=own["scheduler"] if request.scheduler == "default" else request.scheduler,
    )


def check_request(request: GenerateRequest) -> None:
    """Every setting checked before a model is loaded: one sentence naming it and the fix."""
    if request.steps is not None and request.steps < 1:
        raise UserError(f"--steps {request.steps} must be at least 1 (30 is a good default; 4 for a few-step model).")
    if request.images_per_prompt < 1:
        raise UserError(f"--images-per-prompt {request.images_per_prompt} must be at least 1.")
    if request.resolution is not None and (request.resolution < 8 or request.resolution % 8):
        raise UserError(
            f"--resolution {request.resolution} must be a positive multiple of 8 (the VAE downsamples by 8), "
            "e.g. 512, or leave it out for the model's own size."
        )
    if request.guidance_scale is not None and (not math.isfinite(request.guidance_scale) or request.guidance_scale < 0):
        raise UserError(
            f"--guidance-scale {request.guidance_scale} must be a number of 0 or more (7.5 is usual; 1 turns guidance off)."
        )
    if not math.isfinite(request.lora_scale) or abs(request.lora_scale) > MAX_LORA_SCALE:
        raise UserError(
            f"--lora-scale {request.lora_scale} must lie between -{MAX_LORA_SCALE:g} and {MAX_LORA_SCALE:g} "
            "(1 applies the LoRA as trained, 0 switches it off)."
        )
    if request.trained:
        _check_trained(Path(request.trained))


def _check_trained(trained: Path) -> None:
    if not trained.exists():
        raise UserError(f"--trained {trained} does not exist; pass a run's model/ folder (e.g. runs/my-dog/model).")
    known = ("dreamtune.json", "model_index.json", "pytorch_lora_weights.safetensors", "learned_embeds.safetensors")
    if not trained.is_dir() or not any((trained / name).is_file() for name in known):
        raise UserError(
            f"--trained {trained} is not a trained model folder (it holds none of {', '.join(known)}); "
            "pass a run's model/ folder."
        )


def read_prompts(path: Path) -> list[str]:
    """One prompt per line; a DreamBench-style Python list of quoted templates is accepted too."""
    if not Path(path).is_file():
        raise UserError(f"prompt file {path} does not exist; pass a text file with one prompt per line.")
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise UserError(f"prompt file {path} is not UTF-8 text; save it as UTF-8 (one prompt per line).") from None
    except OSError as exc:
        raise UserError(f"prompt file {path} cannot be read ({exc.strerror}); check its permissions.") from None
    quoted = re.findall(r"^\s*'(.*?)'\.format", text, flags=re.M)
    if quoted:
        return quoted
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def fill_prompt(template: str, subject: str, class_noun: str) -> str:
    filled = template.replace("{subject}", subject).replace("{class}", class_noun)
    return " ".join(filled.replace("{0}", subject).replace("{1}", class_noun).split())  # an empty subject leaves no gap


def _describe(trained: Path) -> dict:
    info = trained / "dreamtune.json"
    if not info.is_file():
        return {}
    try:
        return json.loads(info.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise UserError(f"{info} is damaged (not JSON); train the run again or restore the file.") from None


def load_pipeline(request: GenerateRequest):
    """The base pipeline with the trained LoRA / textual inversion applied, or a full fine-tune."""
    import torch

    quiet_libraries()
    trained = Path(request.trained) if request.trained else None
    description = _describe(trained) if trained else {}
    base = request.base_model or description.get("base_model", "")
    if description.get("kind") in ("full", "dreambooth", "scratch") or (
        trained and (trained / "model_index.json").is_file()
    ):
        base = str(trained)
    elif trained and not base:
        raise UserError(
            f"--trained {trained} does not say which base model it was trained on; pass that model with --model."
        )
    dtype = torch.float16 if torch.cuda.is_available() else torch.float32
    base_config = description.get("base_config", "") if base == description.get("base_model") else ""
    pipeline = load_base_pipeline(
        ModelConfig(pretrained=base, config=base_config, allow_pickle=request.allow_pickle), dtype
    )
    # the scheduler the request names, or the model's own (a few-step model's trailing DDIM)
    pipeline.scheduler = scheduler_for(with_model_sampling(request, description).scheduler, pipeline.scheduler.config)
    try:
        with _quiet_diffusers_errors():  # diffusers logs the error it raises; we say it once, below
            _apply_trained(pipeline, trained, description)
    except (RuntimeError, ValueError, KeyError) as exc:
        raise _mismatch(trained, base, description, exc) from None
    if trained and request.base_model and description.get("base_model") not in ("", None, request.base_model):
        print(
            f"note: {trained} was trained on {description['base_model']}; applying it to {request.base_model}",
            file=sys.stderr,
        )
    pipeline.to("cuda" if torch.cuda.is_available() else "cpu")
    pipeline.set_progress_bar_config(disable=True)
    return pipeline, description


def _apply_trained(pipeline, trained: Path | None, description: dict) -> None:
    if trained and (trained / "pytorch_lora_weights.safetensors").is_file():
        pipeline.load_lora_weights(str(trained), weight_name="pytorch_lora_weights.safetensors")
    if trained and (trained / "learned_embeds.safetensors").is_file():
        _load_textual_inversion(pipeline, trained / "learned_embeds.safetensors", description)


@contextlib.contextmanager
def _quiet_diffusers_errors():
    from diffusers.utils import logging

    before = logging.get_verbosity()
    logging.set_verbosity(logging.CRITICAL)
    try:
        yield
    finally:
        logging.set_verbosity(before)


def _mismatch(trained: Path, base: str, description: dict, exc: Exception) -> UserError:
    """A LoRA or embedding that does not fit the base it is loaded on: name both bases."""
    own = description.get("base_model", "")
    trained_on = f"was trained on {own}" if own else "was trained on another base model"
    fix = (
        f"pass --model {own} (or leave --model out)"
        if own and own != base
        else "pass the base model it was trained on with --model"
    )
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()] or [type(exc).__name__]
    detail = next((line for line in lines if line.startswith("size mismatch")), lines[0])
    detail = re.sub(r"torch\.Size\((\[[^\]]*\])\)", r"\1", detail)[:200]
    return UserError(f"{trained} {trained_on} and does not fit {base} ({detail}); {fix}.")


def _load_textual_inversion(pipeline, path: Path, description: dict) -> None:
    from safetensors.torch import load_file

    token = description.get("placeholder_token") or "<sks>"
    tensors = load_file(str(path))
    if "clip_l" in tensors:  # SDXL: one embedding per text encoder
        pipeline.load_textual_inversion(
            tensors["clip_l"], token=token, text_encoder=pipeline.text_encoder, tokenizer=pipeline.tokenizer
        )
        pipeline.load_textual_inversion(
            tensors["clip_g"], token=token, text_encoder=pipeline.text_encoder_2, tokenizer=pipeline.tokenizer_2
        )
    else:
        pipeline.load_textual_inversion(str(path))


def png_parameters(request: GenerateRequest, record: dict, description: dict, resolution: int):
    """PNG text chunks: ``parameters`` in the A1111 layout (its PNG Info tab, ComfyUI and most image
    sites read it) and ``dreamtune`` with the same facts as JSON."""
    from PIL.PngImagePlugin import PngInfo

    base = request.base_model or description.get("base_model", "")
    trained = request.trained or ""
    facts = {
        "prompt": record["prompt"],
        "negative_prompt": request.negative_prompt or "",
        "seed": record["seed"],
        "steps": request.steps,
        "guidance_scale": request.guidance_scale,
        "scheduler": request.scheduler,
        "size": [resolution, resolution],
        "base_model": base,
        "trained": trained,
        "kind": description.get("kind", ""),
        "lora_scale": request.lora_scale,
    }
    lines = [record["prompt"]]
    if request.negative_prompt:
        lines.append(f"Negative prompt: {request.negative_prompt}")
    extra = (
        f", Lora: {trained} ({request.lora_scale})"
        if description.get("kind") == "lora"
        else (f", Trained: {trained}" if trained else "")
    )
    lines.append(
        f"Steps: {request.steps}, Sampler: {request.scheduler}, CFG scale: {request.guidance_scale}, Seed: {record['seed']}, "
        f"Size: {resolution}x{resolution}, Model: {base}{extra}"
    )
    info = PngInfo()
    info.add_text("parameters", "\n".join(lines))
    info.add_text("dreamtune", json.dumps(facts))
    return info


def print_settings(request: GenerateRequest) -> PrintSettings | None:
    if not request.print_profile:
        return None
    return PrintSettings(
        request.print_profile,
        request.print_intent,
        request.print_black_point_compensation,
        request.print_size,
        request.print_ppi,
        request.print_sharpen,
    )


def generate(request: GenerateRequest, out_dir: Path, show_progress: bool = True) -> dict:
    """Render every prompt ``images_per_prompt`` times; writes PNGs, contact_sheet.png, generations.json."""
    from tqdm.auto import tqdm

    check_request(request)
    if request.scheduler not in SCHEDULERS:
        raise UserError(f"scheduler '{request.scheduler}' is unknown; choose one of {', '.join(SCHEDULERS)}.")
    if not request.prompts:
        raise UserError("no prompt given; pass --prompt TEXT or --prompts-file FILE.")
    printing = print_settings(request)
    if printing:  # a bad profile or print setting is reported before any work
        printing.check()
    check_output_dir(Path(out_dir), "--out")
    pipeline, description = load_pipeline(request)
    request = with_model_sampling(request, description)
    request = dataclasses.replace(request, scheduler=scheduler_name(request.scheduler, pipeline.scheduler.config))
    subject = description.get("placeholder_token") or request.subject
    resolution = request.resolution or pipeline_resolution(pipeline)
    multiple = pipeline.vae_scale_factor * (2 if hasattr(pipeline, "transformer") else 1)  # SD3 / FLUX pack 2x2 latents
    if resolution % multiple:
        raise UserError(
            f"--resolution {resolution} must be a multiple of {multiple} for "
            f"this model; try {resolution // multiple * multiple or multiple}."
        )
    claim_output_dir(Path(out_dir), "--out")
    out_dir = Path(out_dir)
    records = []
    kwargs = lora_scale_arguments(pipeline, request.lora_scale) if request.lora_scale != 1.0 else {}
    seeds = [request.seed + i for i in range(request.images_per_prompt)]
    pairs = [(template, seed) for template in request.prompts for seed in seeds]
    filled = [fill_prompt(template, subject, request.class_noun) for template, _ in pairs]
    progress = tqdm(total=len(pairs), desc="generating", unit="img", disable=not show_progress)
    # batches of 8 (prompt, seed) pairs across prompts; every image keeps its own seeded generator
    images = sample(
        pipeline,
        filled,
        [seed for _, seed in pairs],
        request.steps,
        request.guidance_scale,
        resolution,
        request.negative_prompt,
        on_batch=progress.update,
        **kwargs,
    )
    for (template, seed), prompt, image in zip(pairs, filled, images):
        name = f"{len(records):04d}.png"
        record = {"file": name, "prompt": prompt, "template": template, "seed": seed}
        with atomic_file(out_dir / name) as temp:
            image.save(temp, format="PNG", pnginfo=png_parameters(request, record, description, resolution))
        if printing:
            record["print"] = write_print(image, printing, out_dir, name)
        records.append(record)
    progress.close()
    if printing:
        pairs_per_row = max(1, request.images_per_prompt) if len(request.prompts) > 1 else 2
        save_png(print_sheet(images, records, printing, out_dir, pairs_per_row), out_dir / "print_sheet.png")
    sheet = contact_sheet(
        images,
        [f"{r['prompt']} #{r['seed']}" for r in records],
        columns=max(1, request.images_per_prompt) if len(request.prompts) > 1 else 4,
    )
    save_png(sheet, out_dir / "contact_sheet.png")
    record = {
        "request": {k: v for k, v in request.__dict__.items() if k != "extra"},
        "resolution": resolution,
        "trained": description,
        "images": records,
    }
    write_json(out_dir / "generations.json", record)
    return record
