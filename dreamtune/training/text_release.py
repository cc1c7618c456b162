"""Encode, then free (``train.free_text_encoders``): when every prompt a run will ever encode is known
before step 1 — its photos' captions, its class images' captions, the empty prompt under caption
dropout — and nothing else needs the frozen text encoders (no validation sheets, monitor, reward or
discriminator), those prompts are encoded once and the encoders leave memory. On the flow families
this is the bulk of the model: T5-XXL (4.8 B parameters) for SD3, Qwen3 4B for FLUX.2 klein.

The embeddings are exactly the ones the run would have computed step by step (same encoder, same
dtype), so the run's losses and weights do not change; a resumed run encodes them again the same way.
"""
from __future__ import annotations

import torch

from dreamtune.config import Config
from dreamtune.models.components import Components
from dreamtune.models.loading import release_freed_memory
from dreamtune.models.quantize import weight_bytes

RELEASE_ABOVE = 2**30        # auto: free text encoders holding more than 1 GiB of weights


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
    """Encode every prompt of the run and free the frozen text encoders when ``train.free_text_encoders``
    allows it; returns the sentence the run logs, or None when they stay."""
    setting = config.train.free_text_encoders
    encoders = components.text_encoders
    size = sum(weight_bytes(e) for e in encoders)
    if setting is False or not encoders or (setting == "auto" and size <= RELEASE_ABOVE):
        return None
    denoising, prompts = _denoising(objective), _known_prompts(source)
    users = [name for name, on in (("train.validate_every", config.train.validate_every), ("monitor.every", config.monitor.every),
                                   ("rl.algorithm", config.rl.algorithm), ("adversarial.weight", config.adversarial.weight)) if on]
    if denoising is None or prompts is None or users or not denoising.text_frozen:
        return None if setting == "auto" else (f"note: the text encoders stay in memory: {', '.join(users) or 'this method'} "
                                                "encodes prompts during training")
    denoising.encode_text(prompts)                   # kept by the objective for every later step
    for encoder in encoders:
        encoder.to("meta")                           # weights gone; any later use fails loudly instead of silently
    release_freed_memory()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return f"encoded {len(prompts)} prompt(s) once and freed the text encoders ({size / 2**30:.2f} GiB) before step 1"
