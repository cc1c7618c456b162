"""Build a sampling pipeline from in-memory components (validation, class images)."""

from __future__ import annotations

import torch

from dreamtune.errors import UserError
from dreamtune.models.components import Components

SCHEDULERS = ("default", "ddim", "ddim_trailing", "euler", "euler_a", "dpm++", "pndm", "ddpm")


def scheduler_for(name: str, config):
    """The named sampler on a model's scheduler config; flow-matching models sample with their
    own flow-matching Euler scheduler (the DDPM samplers do not apply to them)."""
    from diffusers import (
        DDIMScheduler,
        DDPMScheduler,
        DPMSolverMultistepScheduler,
        EulerAncestralDiscreteScheduler,
        EulerDiscreteScheduler,
        FlowMatchEulerDiscreteScheduler,
        PNDMScheduler,
    )

    if str(config.get("_class_name", "")).startswith("FlowMatch"):
        if name not in ("euler", "default"):
            raise UserError(
                f"scheduler {name} does not sample flow-matching models (SD3, FLUX); use --scheduler euler."
            )
        return FlowMatchEulerDiscreteScheduler.from_config(config)
    if name == "ddim_trailing":  # few-step models: the first step at the schedule's top (999, 749, 499, 249)
        return DDIMScheduler.from_config(config, timestep_spacing="trailing")
    classes = {
        "ddim": DDIMScheduler,
        "euler": EulerDiscreteScheduler,
        "euler_a": EulerAncestralDiscreteScheduler,
        "dpm++": DPMSolverMultistepScheduler,
        "pndm": PNDMScheduler,
        "ddpm": DDPMScheduler,
        "default": DDIMScheduler,
    }
    return classes[name].from_config(config)


def scheduler_name(name: str, config) -> str:
    """``default`` resolved: DDIM for DDPM models, Euler for flow-matching ones."""
    if name != "default":
        return name
    return "euler" if str(config.get("_class_name", "")).startswith("FlowMatch") else "ddim"


def lora_scale_arguments(pipeline, scale: float) -> dict:
    """The pipeline keyword that scales a loaded LoRA (UNet pipelines: cross_attention_kwargs)."""
    import inspect

    accepted = inspect.signature(pipeline.__call__).parameters
    for name in ("cross_attention_kwargs", "joint_attention_kwargs", "attention_kwargs"):
        if name in accepted:
            return {name: {"scale": scale}}
    return {}


def pipeline_from_components(components: Components, scheduler: str = "default"):
    """The family's diffusers pipeline sharing the given modules (no copies, no loading);
    ``default`` samples SD models with DDIM and flow models with their Euler scheduler."""
    return components.family.pipeline(components, scheduler_for(scheduler, components.noise_scheduler.config))


def default_resolution(components: Components) -> int:
    return components.family.default_resolution(components)


def pipeline_resolution(pipeline) -> int:
    """The native resolution of a loaded pipeline (SD's UNet sample size, SD3 / FLUX's default)."""
    size = getattr(pipeline, "default_sample_size", None)
    if size is None:
        size = pipeline.unet.config.sample_size
    return int(size) * pipeline.vae_scale_factor


def _mixed_precision(pipeline):
    """Autocast when parameters disagree on dtype (a trained fp32 UNet beside a frozen bf16 VAE,
    fp32 LoRA layers inside a bf16 UNet); otherwise a no-op context."""
    import contextlib

    modules = [getattr(pipeline, name, None) for name in ("unet", "transformer", "vae", "text_encoder")]
    dtypes = {p.dtype for m in modules if m is not None for p in m.parameters()}
    reduced = [d for d in dtypes if d in (torch.float16, torch.bfloat16)]
    if len(dtypes) < 2 or not reduced:
        return contextlib.nullcontext()
    return torch.autocast(pipeline.device.type, dtype=reduced[0])


BLANK_NEGATIVE = (
    ""  # the negative prompt of true-CFG pipelines: the empty prompt training's unconditional branch encodes
)


def _true_cfg(pipeline) -> bool:
    """Whether the pipeline's family guides with ``true_cfg_scale`` and a negative prompt (Qwen-Image), not
    ``guidance_scale`` (FLUX.1's pipeline has a ``true_cfg_scale`` too, on top of its embedded guidance)."""
    from dreamtune.errors import UserError
    from dreamtune.models.families import family_for

    try:
        return family_for({"_class_name": type(pipeline).__name__}).guided_by_true_cfg
    except UserError:  # a pipeline class no family names: the usual guidance_scale
        return False


@torch.no_grad()
def sample(
    pipeline,
    prompts: list[str],
    seeds: list[int],
    steps: int,
    guidance_scale: float,
    resolution: int,
    negative_prompt: str | None = None,
    batch_size: int = 8,
    on_batch=None,
    **pipeline_kwargs,
):
    """One image per (prompt, seed) pair, each from its own seeded CPU generator (batched);
    ``on_batch(n)`` is called after every batch (progress bars)."""
    images = []
    for start in range(0, len(prompts), batch_size):
        chunk = list(prompts[start : start + batch_size])
        generators = [torch.Generator("cpu").manual_seed(s) for s in seeds[start : start + batch_size]]
        negative = {"negative_prompt": [negative_prompt] * len(chunk)} if negative_prompt else {}
        guidance = {"guidance_scale": guidance_scale}
        if _true_cfg(pipeline) and guidance_scale > 1:  # Qwen-Image: CFG only with a negative prompt
            guidance = {"true_cfg_scale": guidance_scale, "guidance_scale": None}
            negative = {"negative_prompt": [negative_prompt or BLANK_NEGATIVE] * len(chunk)}
        with _mixed_precision(pipeline):
            result = pipeline(
                prompt=chunk,
                num_inference_steps=steps,
                **guidance,
                height=resolution,
                width=resolution,
                generator=generators,
                **negative,
                **pipeline_kwargs,
            )
        images.extend(result.images)
        if on_batch:
            on_batch(len(chunk))
    return images
