"""Build a sampling pipeline from in-memory components (validation, class images)."""
from __future__ import annotations

import torch

from dreamtune.models.loading import Components

SCHEDULERS = ("ddim", "euler", "euler_a", "dpm++", "pndm", "ddpm")


def scheduler_for(name: str, config):
    from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler, EulerAncestralDiscreteScheduler, EulerDiscreteScheduler, PNDMScheduler

    classes = {"ddim": DDIMScheduler, "euler": EulerDiscreteScheduler, "euler_a": EulerAncestralDiscreteScheduler,
               "dpm++": DPMSolverMultistepScheduler, "pndm": PNDMScheduler, "ddpm": DDPMScheduler}
    return classes[name].from_config(config)


def pipeline_from_components(components: Components, scheduler: str = "ddim"):
    """A StableDiffusion(XL)Pipeline sharing the given modules (no copies, no loading)."""
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

    parts = dict(unet=components.unet, vae=components.vae, text_encoder=components.text_encoders[0],
                 tokenizer=components.tokenizers[0], scheduler=scheduler_for(scheduler, components.noise_scheduler.config))
    if components.family == "sdxl":
        pipeline = StableDiffusionXLPipeline(**parts, text_encoder_2=components.text_encoders[1], tokenizer_2=components.tokenizers[1])
    else:
        pipeline = StableDiffusionPipeline(**parts, safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def default_resolution(components: Components) -> int:
    return components.unet.config.sample_size * components.vae_scale_factor


def _mixed_precision(pipeline):
    """Autocast when parameters disagree on dtype (a trained fp32 UNet beside a frozen bf16 VAE,
    fp32 LoRA layers inside a bf16 UNet); otherwise a no-op context."""
    import contextlib

    modules = [getattr(pipeline, name, None) for name in ("unet", "vae", "text_encoder")]
    dtypes = {p.dtype for m in modules if m is not None for p in m.parameters()}
    reduced = [d for d in dtypes if d in (torch.float16, torch.bfloat16)]
    if len(dtypes) < 2 or not reduced:
        return contextlib.nullcontext()
    return torch.autocast(pipeline.device.type, dtype=reduced[0])


@torch.no_grad()
def sample(pipeline, prompts: list[str], seeds: list[int], steps: int, guidance_scale: float, resolution: int,
           negative_prompt: str | None = None, batch_size: int = 8, on_batch=None, **pipeline_kwargs):
    """One image per (prompt, seed) pair, each from its own seeded CPU generator (batched);
    ``on_batch(n)`` is called after every batch (progress bars)."""
    images = []
    for start in range(0, len(prompts), batch_size):
        chunk = list(prompts[start:start + batch_size])
        generators = [torch.Generator("cpu").manual_seed(s) for s in seeds[start:start + batch_size]]
        negative = [negative_prompt] * len(chunk) if negative_prompt else None
        with _mixed_precision(pipeline):
            result = pipeline(chunk, num_inference_steps=steps, guidance_scale=guidance_scale, height=resolution,
                              width=resolution, generator=generators, negative_prompt=negative, **pipeline_kwargs)
        images.extend(result.images)
        if on_batch:
            on_batch(len(chunk))
    return images
