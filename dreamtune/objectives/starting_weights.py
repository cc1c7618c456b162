"""The run's starting weights: a copy of the denoiser's trainable parameters taken when an
objective is built — before a resumed run loads its checkpoint, so a resumed run rebuilds the same
start — and the denoiser called with them (torch.func.functional_call; the live weights are
untouched). DDPO's KL term compares the policy with it; rewards that need "what the image was
meant to look like" (``needs_reference``) get the same-seed image it samples."""

from __future__ import annotations

import torch
from torch import nn


class StartingWeights:
    def __init__(self, module: nn.Module):
        self.module = module
        self.retake()

    def retake(self) -> None:
        """Copy the trainable parameters as they are now (objectives/late_start.py)."""
        self.values = {name: p.detach().clone() for name, p in self.module.named_parameters() if p.requires_grad}

    def __call__(self, *args, **kwargs):
        return torch.func.functional_call(self.module, self.values, args, kwargs)


def needs_reference(rewards) -> bool:
    """Whether a reward (or any term of a WeightedRewards) scores images against the starting model's."""
    return bool(getattr(rewards, "needs_reference", False))
