"""``model/README.md``: a Hugging Face model card (YAML front matter the Hub reads: base_model,
instance_prompt, tags, license, widget images) and how to use the result in diffusers,
ComfyUI and A1111."""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

USE_WITH_DIFFUSERS = {
    "lora": """```python
from diffusers import DiffusionPipeline
pipe = DiffusionPipeline.from_pretrained("{base}")
pipe.load_lora_weights("{where}", weight_name="pytorch_lora_weights.safetensors")
image = pipe("{prompt} on the beach").images[0]
```""",
    "textual_inversion": """```python
from diffusers import DiffusionPipeline
pipe = DiffusionPipeline.from_pretrained("{base}")
pipe.load_textual_inversion("{where}", weight_name="learned_embeds.safetensors", token="{token}")
image = pipe("{prompt} on the beach").images[0]
```""",
    "full": """```python
from diffusers import DiffusionPipeline
pipe = DiffusionPipeline.from_pretrained("{where}")
image = pipe("{prompt} on the beach").images[0]
```""",
}


KIND_NAMES = {"lora": "LoRA", "textual_inversion": "textual-inversion embedding", "full": "full fine-tune (DreamBooth)"}


def _base_license(base: str) -> str:
    """The base model's licence from its own card when it is a local folder, else "other"."""
    card = Path(base) / "README.md"
    if card.is_file():
        text = card.read_text(encoding="utf-8", errors="replace")
        if text.startswith("---"):
            try:
                front = yaml.safe_load(text.split("---", 2)[1]) or {}
                if isinstance(front, dict) and front.get("license"):
                    return str(front["license"])
            except yaml.YAMLError:
                pass
    return "other"


def _family_tags(name: str) -> tuple[str, ...]:
    from dreamtune.models.families import family_named

    try:
        return family_named(name).hub_tags
    except KeyError:  # a family this version does not know (a newer dreamtune.json)
        return ()


def few_step_lines(sampling: dict, prompt: str) -> list[str]:
    """The model card's few-step section: how the distilled model must be sampled (dreamtune.json ``sampling``)."""
    steps, guidance = sampling["steps"], sampling["guidance_scale"]
    scheduler = (
        'pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config, timestep_spacing="trailing")'
        if sampling["scheduler"] == "ddim_trailing"
        else "# the pipeline's own flow-matching Euler scheduler"
    )
    return [
        "## Few-step sampling",
        "",
        f"A **few-step** model, distilled from `{sampling.get('distilled_from', '')}`: sample it in 1 to {steps} "
        f"steps with guidance {guidance:g} (classifier-free guidance is baked in) and a scheduler whose first step "
        "starts at full noise (trailing timesteps). `dreamtune generate` does so by itself. In diffusers, after "
        "loading it as below:",
        "",
        "```python",
        "from diffusers import DDIMScheduler",
        scheduler,
        f'image = pipe("{prompt} on the beach", num_inference_steps={steps}, guidance_scale={guidance:g}).images[0]',
        "```",
        "",
        f"In ComfyUI / A1111: {steps} steps, CFG {guidance:g}, DDIM with trailing (sgm_uniform) timesteps.",
        "",
    ]


def write_model_card(model_dir: Path, description: dict, validation_sheet: Path | None, kohya_file: str | None) -> Path:
    """Write ``model_dir/README.md`` (and ``images/validation.png`` for the widget)."""
    kind = description["kind"]
    base, prompt = description.get("base_model", ""), description.get("instance_prompt") or "a photo of sks dog"
    tags = [
        "text-to-image",
        "diffusers",
        "dreamtune",
        "dreambooth",
        *_family_tags(description.get("family", "sd")),
    ]
    tags += {"lora": ["lora", "template:sd-lora"], "textual_inversion": ["textual_inversion"]}.get(kind, [])
    front = {
        "base_model": base,
        "library_name": "diffusers",
        "license": _base_license(base),
        "instance_prompt": prompt,
        "tags": tags,
    }
    if validation_sheet and validation_sheet.is_file():
        (model_dir / "images").mkdir(exist_ok=True)
        shutil.copy2(validation_sheet, model_dir / "images" / "validation.png")
        front["widget"] = [{"text": prompt, "output": {"url": "images/validation.png"}}]
    usage = USE_WITH_DIFFUSERS.get(kind, USE_WITH_DIFFUSERS["full"]).format(
        base=base, where="path/to/this/folder", prompt=prompt, token=description.get("placeholder_token") or ""
    )
    lines = [
        "---",
        yaml.safe_dump(front, sort_keys=False).strip(),
        "---",
        "",
        f"# {description.get('title') or 'dreamtune model'}",
        "",
        f"A {KIND_NAMES.get(kind, kind)} of `{base}` trained with dreamtune "
        f"for {description.get('steps', 0)} steps. Prompt with **{prompt}**.",
        "",
    ]
    if validation_sheet and validation_sheet.is_file():
        lines += ["![validation images](images/validation.png)", ""]
    sampling = description.get("sampling")
    if sampling:
        lines += few_step_lines(sampling, prompt)
    lines += ["## Use it with diffusers", "", usage, ""]
    if kohya_file:
        lines += [
            "## Use it with ComfyUI, A1111 / Forge",
            "",
            f"Copy `{kohya_file}` (kohya format, fp16) into `ComfyUI/models/loras/` (load it with a *LoraLoader* node) "
            f"or `stable-diffusion-webui/models/Lora/` (prompt `<lora:{Path(kohya_file).stem}:1>`).",
            "",
        ]
    if description.get("selected"):
        lines += [
            "## Which step",
            "",
            f"The overfitting monitor selected step {description['selected'].get('step')}: "
            f"{description['selected'].get('reason', '')}",
            "",
        ]
    path = model_dir / "README.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path
