"""Encode, then free (``train.free_text_encoders``): when every prompt a run will ever encode is known
before step 1 — its photos' captions, its class images' captions, the empty prompt (caption dropout and
the memory probe) — and nothing else needs the frozen text encoders (no validation sheets, monitor,
reward or discriminator), those prompts are encoded once, kept in ``Components.encoded_prompts``, and
the encoders leave memory. On the flow families this is the bulk of the model: T5-XXL (4.8 B
parameters) for SD3, Qwen3 4B for FLUX.2 klein.

Where the run's class images are already there (or prior preservation is off), this happens *before
the denoiser loads* (``early_prompts``): the text encoders and the denoiser are never in memory
together, so the peak is the larger of the two, not their sum. Otherwise (class images still to be
generated with the whole pipeline) it happens after loading (``release_text_encoders``).

The embeddings are exactly the ones the run would have computed step by step (same encoder, same
dtype, one prompt at a time), so the run's losses and weights do not change; a resumed run encodes
them again the same way.
"""

from __future__ import annotations

import torch

from dreamtune.config import Config
from dreamtune.models.adapters import text_encoders_train
from dreamtune.models.components import Components
from dreamtune.models.loading import release_freed_memory
from dreamtune.models.quantize import weight_bytes

RELEASE_ABOVE = 2**30  # auto: free text encoders holding more than 1 GiB of weights


def _users(config: Config) -> list[str]:
    """The settings that encode prompts during training (so the encoders must stay)."""
    return [
        name
        for name, on in (
            ("train.validate_every", config.train.validate_every),
            ("monitor.every", config.monitor.every),
            ("rl.algorithm", config.rl.algorithm),
            ("adversarial.weight", config.adversarial.weight),
        )
        if on
    ]


def early_prompts(config: Config, captions: list[str], class_images_ready: bool) -> list[str] | None:
    """Every prompt the run will encode, when they can all be encoded before the denoiser loads; else None."""
    if config.train.free_text_encoders is False or _users(config) or text_encoders_train(config.method):
        return None
    if not captions or (config.prior.enabled and not class_images_ready):
        return None
    classes = [config.prior.class_prompt] if config.prior.enabled else []
    return list(dict.fromkeys([*captions, *classes, ""]))


def encode_and_free(config: Config, components: Components, prompts: list[str], before: str = "step 1") -> str | None:
    """Encode ``prompts`` one at a time into ``components.encoded_prompts`` and free the text encoders,
    when ``train.free_text_encoders`` allows (auto: above RELEASE_ABOVE); the sentence the run logs."""
    encoders = components.text_encoders
    size = sum(weight_bytes(e) for e in encoders)
    if not encoders or (config.train.free_text_encoders == "auto" and size <= RELEASE_ABOVE):
        return None
    device = next(encoders[0].parameters()).device
    with torch.no_grad():
        for prompt in prompts:
            encoded = components.encode([prompt], device)
            components.encoded_prompts[prompt] = {key: value[0] for key, value in encoded.items()}
    for encoder in encoders:
        encoder.to("meta")  # weights gone; any later use fails loudly instead of silently
    release_freed_memory()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return f"encoded {len(prompts)} prompt(s) once and freed the text encoders ({size / 2**30:.2f} GiB) before {before}"


def _denoising(objective):
    """The denoising objective inside prior preservation (the only ones whose prompts are all known)."""
    from dreamtune.objectives.denoising import DenoisingObjective
    from dreamtune.objectives.prior import PriorPreservation

    if isinstance(objective, PriorPreservation):
        objective = objective.inner
    return objective if isinstance(objective, DenoisingObjective) else None


def _known_prompts(source) -> list[str] | None:
    from dreamtune.data.datasets import DatasetBatches

    if not isinstance(source, DatasetBatches):
        return None
    sets = [source.instances, *([source.classes] if source.classes else [])]
    prompts = [example.caption for images in sets for example in images.examples]
    return list(dict.fromkeys(prompts + ([""] if source.caption_dropout > 0 else [])))


def release_text_encoders(config: Config, components: Components, objective, source) -> str | None:
    """After loading: encode every prompt of the run and free the frozen text encoders when
    ``train.free_text_encoders`` allows it (and ``early_prompts`` did not already); the sentence the run logs."""
    setting = config.train.free_text_encoders
    encoders = components.text_encoders
    freed = any(p.is_meta for e in encoders for p in e.parameters())
    if (
        setting is False
        or not encoders
        or freed
        or (setting == "auto" and sum(weight_bytes(e) for e in encoders) <= RELEASE_ABOVE)
    ):
        return None
    denoising, prompts = _denoising(objective), _known_prompts(source)
    users = _users(config)
    if denoising is None or prompts is None or users or not denoising.text_frozen:
        return (
            None
            if setting == "auto"
            else (
                f"note: the text encoders stay in memory: {', '.join(users) or 'this method'} "
                "encodes prompts during training"
            )
        )
    return encode_and_free(config, components, [denoising.prompt_rewrite(p) for p in prompts])
