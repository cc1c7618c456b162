"""The in-memory parts of a model that training touches."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn


@dataclass
class Components:
    """A loaded model: its family (the object that knows how to drive it), the denoiser (UNet or
    transformer), VAE, text encoders, tokenizers, the training scheduler its files ship, and the
    noise process built from that scheduler."""

    family: "object"  # a models.families.ModelFamily
    denoiser: nn.Module
    vae: nn.Module
    text_encoders: list[nn.Module]
    tokenizers: list
    noise_scheduler: object  # the scheduler of the model folder (DDPM / flow-matching Euler)
    source: str = ""
    extra: dict = field(default_factory=dict)
    noise: object = None  # a diffusion.process noise process; built from the scheduler when None
    encoded_prompts: dict = field(
        default_factory=dict
    )  # prompt -> its embeddings, kept when the text encoders are freed

    def __post_init__(self):
        if self.noise is None:
            self.noise = self.family.noise_process(self.noise_scheduler)

    @property
    def prediction_type(self) -> str:
        return self.noise.prediction

    @property
    def vae_scale_factor(self) -> int:
        return self.family.vae_scale_factor(self.vae)

    @property
    def device(self):
        return next(self.denoiser.parameters()).device

    def encode(self, prompts: list[str], device) -> dict:
        """Per-prompt embeddings, batch first: kept ones (``encoded_prompts``, training/text_release.py) or the text encoders'."""
        if self.encoded_prompts and all(p in self.encoded_prompts for p in prompts):
            rows = [self.encoded_prompts[p] for p in prompts]
            return {key: torch.stack([row[key] for row in rows]).to(device) for key in rows[0]}
        if any(p.is_meta for e in self.text_encoders for p in e.parameters()):
            unknown = next(p for p in prompts if p not in self.encoded_prompts)
            raise RuntimeError(
                f"the text encoders were freed before step 1 and the prompt {unknown!r} was not encoded before; "
                "set train.free_text_encoders: false and report this."
            )
        return self.family.encode_prompts(self, prompts, device)

    def sampler(self, steps: int, resolution: int, start_at_noise: bool = False):
        """The process's sampler for ``steps`` steps of ``resolution``-px images (RL objectives; ``start_at_noise``:
        the first step at the schedule's top, as few-step sampling needs)."""
        schedule = self.family.sampling_schedule(self, steps, resolution)
        return self.noise.sampler(steps, start_at_noise=start_at_noise, **schedule)
