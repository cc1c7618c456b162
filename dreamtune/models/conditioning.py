"""Text conditioning for SD 1.x/2.x and SDXL: prompts -> UNet keyword arguments.

SDXL concatenates the penultimate hidden states of its two CLIP text encoders, adds the
second encoder's pooled projection and the size/crop "time ids" (Podell et al. 2023, sec. 2.2).
"""
from __future__ import annotations

import torch

from dreamtune.models.loading import Components


def tokenize(tokenizer, prompts: list[str]) -> torch.Tensor:
    return tokenizer(prompts, padding="max_length", max_length=tokenizer.model_max_length,
                     truncation=True, return_tensors="pt").input_ids


def encode_prompts(components: Components, prompts: list[str], device: torch.device) -> dict[str, torch.Tensor]:
    """{"encoder_hidden_states": (B,L,D)} and, for SDXL, {"pooled": (B,P)}."""
    if components.family == "sd":
        ids = tokenize(components.tokenizers[0], prompts).to(device)
        return {"encoder_hidden_states": components.text_encoders[0](ids)[0]}
    hidden, pooled = [], None
    for tokenizer, encoder in zip(components.tokenizers, components.text_encoders):
        output = encoder(tokenize(tokenizer, prompts).to(device), output_hidden_states=True)
        hidden.append(output.hidden_states[-2])
        pooled = output[0]  # the last encoder's pooled projection (text_embeds)
    return {"encoder_hidden_states": torch.cat(hidden, dim=-1), "pooled": pooled}


def unet_kwargs(components: Components, encoded: dict[str, torch.Tensor], sizes: torch.Tensor) -> dict:
    """UNet keyword arguments; ``sizes``: (B,2) image (height, width) used for SDXL time ids."""
    kwargs = {"encoder_hidden_states": encoded["encoder_hidden_states"]}
    if components.family == "sdxl":
        sizes = sizes.to(encoded["pooled"].device, encoded["pooled"].dtype)
        crops = torch.zeros_like(sizes)  # images are cropped in prepare; the kept region starts at 0,0
        time_ids = torch.cat([sizes, crops, sizes], dim=1)
        kwargs["added_cond_kwargs"] = {"text_embeds": encoded["pooled"], "time_ids": time_ids}
    return kwargs
