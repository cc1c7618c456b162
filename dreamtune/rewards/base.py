"""The reward interface and weighted composition (the rewards' parts are logged one by one)."""

from __future__ import annotations

from typing import Mapping, Protocol, Sequence

import torch
from torch import Tensor


class Reward(Protocol):
    name: str
    differentiable: bool

    def __call__(self, images: Tensor, prompts: Sequence[str], meta: Mapping) -> Tensor:
        """(B,3,H,W) in [0,1] -> (B,) higher is better."""

    def parts(self, images: Tensor, prompts: Sequence[str], meta: Mapping) -> dict[str, Tensor]:
        """Named (B,) components (a single-part reward returns {name: value})."""


class SinglePart:
    """Mixin: a reward with no sub-parts reports itself as its only part."""

    def parts(self, images: Tensor, prompts: Sequence[str], meta: Mapping) -> dict[str, Tensor]:
        return {self.name: self(images, prompts, meta)}


class WeightedRewards:
    """sum_i w_i * reward_i; ``evaluate`` also returns every reward's and part's batch mean."""

    def __init__(self, terms: list[tuple[float, Reward]]):
        if not terms:
            raise ValueError("at least one reward with a non-zero weight is needed")
        self.terms = terms
        self.differentiable = all(r.differentiable for _, r in terms)
        self.needs_reference = any(
            getattr(r, "needs_reference", False) for _, r in terms
        )  # meta["reference"]: see print_proof
        self.needs_floors = any(getattr(r, "needs_floors", False) for _, r in terms)  # see print_in_context
        self.name = "+".join(f"{w:g}*{r.name}" for w, r in terms)

    def set_floors(self, images: Tensor, prompts: Sequence[str]) -> None:
        """Hands the starting model's images to every term that sets floors from them."""
        for _, reward in self.terms:
            if getattr(reward, "needs_floors", False):
                reward.set_floors(images, prompts)

    def without_reference(self) -> WeightedRewards | None:
        """The terms that score an image on its own, without ``meta["reference"]`` (the starting model's
        same-seed image): what a monitor, which has no such image, can log honestly (scored against
        itself, print_proof rises for any image that pales). None when every term needs a reference."""
        kept = [(w, r) for w, r in self.terms if not getattr(r, "needs_reference", False)]
        return WeightedRewards(kept) if kept else None

    def evaluate(self, images: Tensor, prompts: Sequence[str], meta: Mapping) -> tuple[Tensor, dict[str, float]]:
        with torch.autocast(images.device.type, enabled=False):  # rewards in fp32, also under mixed precision
            return self._evaluate(images.float(), prompts, meta)

    def _evaluate(self, images: Tensor, prompts: Sequence[str], meta: Mapping) -> tuple[Tensor, dict[str, float]]:
        total = torch.zeros(images.shape[0], device=images.device)
        logged: dict[str, float] = {}
        for weight, reward in self.terms:
            parts = reward.parts(images, prompts, meta)
            if reward.name in parts or len(parts) == 1:  # the total is one of the parts: computed once
                value = parts.get(reward.name, next(iter(parts.values())))
            else:
                value = reward(images, prompts, meta)
            total = total + weight * value
            logged[f"reward/{reward.name}"] = float(value.detach().float().mean())
            if len(parts) > 1:
                logged.update(
                    {
                        f"reward/{reward.name}/{k}": float(v.detach().float().mean())
                        for k, v in parts.items()
                        if k != reward.name
                    }
                )
        logged["reward"] = float(total.detach().float().mean())
        return total, logged

    def __call__(self, images: Tensor, prompts: Sequence[str], meta: Mapping) -> Tensor:
        return self.evaluate(images, prompts, meta)[0]
