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


FLOOR_SEED = 2_000_000_000  # the floors' images: seeds FLOOR_SEED + i, far from any training draw


@torch.no_grad()
def set_floors(rewards, prompts, per_prompt: int, sample, batch_size: int = 8) -> None:
    """Rewards with floors (``needs_floors``: print_in_context) get them from the starting model before
    step 1: ``per_prompt`` images of each of ``prompts``, drawn by ``sample(prompts, seeds) -> images``
    with fixed seeds, so a resumed run sets the same floors (the weights are the start's: objectives are
    built before a checkpoint loads)."""
    if not getattr(rewards, "needs_floors", False):
        return
    pairs = [(p, FLOOR_SEED + i) for p in dict.fromkeys(prompts) for i in range(per_prompt)]
    images = []
    for first in range(0, len(pairs), batch_size):
        chunk = pairs[first : first + batch_size]
        images.append(sample([p for p, _ in chunk], [s for _, s in chunk]).float().cpu())
    rewards.set_floors(torch.cat(images), [p for p, _ in pairs])
