"""Train-time augmentation, seeded and reproducible.

Every random choice for sample ``slot`` of training step ``step`` comes from a generator
seeded by (seed, step, slot): a resumed run draws exactly what an uninterrupted one drew.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class AugmentPlan:
    flip_p: float = 0.5
    rotate_degrees: float = 0.0
    rotate_p: float = 0.0
    color_jitter: float = 0.0
    color_jitter_p: float = 0.0

    @property
    def pixel_only(self) -> bool:
        """True when some augmentation cannot be applied to cached latents."""
        return (self.rotate_p > 0 and self.rotate_degrees > 0) or (self.color_jitter_p > 0 and self.color_jitter > 0)


def sample_generator(seed: int, step: int, slot: int, stream: int = 0) -> torch.Generator:
    """A CPU generator unique to (seed, step, slot, stream)."""
    mixed = (seed * 1_000_003 + step * 7_919 + slot * 104_729 + stream * 15_485_863) % (2**63 - 1)
    return torch.Generator().manual_seed(mixed)


def rotate(image: torch.Tensor, degrees: float) -> torch.Tensor:
    """Rotate (C,H,W) about its centre; corners are filled by reflection."""
    angle = math.radians(degrees)
    cos, sin = math.cos(angle), math.sin(angle)
    theta = torch.tensor([[cos, -sin, 0.0], [sin, cos, 0.0]], dtype=image.dtype).unsqueeze(0)
    grid = F.affine_grid(theta, [1, *image.shape], align_corners=False)
    return F.grid_sample(image.unsqueeze(0), grid, mode="bilinear", padding_mode="reflection", align_corners=False)[0]


def jitter_colors(image: torch.Tensor, strength: float, generator: torch.Generator) -> torch.Tensor:
    """Random brightness, contrast and saturation change, each by up to ±strength; image in [-1,1]."""
    factors = 1.0 + (torch.rand(3, generator=generator) * 2 - 1) * strength
    unit = (image + 1) / 2
    unit = unit * factors[0]
    mean = unit.mean()
    unit = (unit - mean) * factors[1] + mean
    gray = unit.mean(dim=0, keepdim=True)
    unit = (unit - gray) * factors[2] + gray
    return unit.clamp(0, 1) * 2 - 1


def decide_flip(plan: AugmentPlan, generator: torch.Generator) -> bool:
    return bool(torch.rand((), generator=generator) < plan.flip_p)


def apply_pixels(image: torch.Tensor, plan: AugmentPlan, flip: bool, generator: torch.Generator) -> torch.Tensor:
    """Augment one (C,H,W) image in [-1,1]; ``flip`` is decided beforehand (see decide_flip)."""
    return apply_pixels_and_mask(image, None, plan, flip, generator)[0]


def apply_pixels_and_mask(
    image: torch.Tensor, mask: torch.Tensor | None, plan: AugmentPlan, flip: bool, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``apply_pixels``, with a (1,H,W) ``mask`` that follows the flip and the rotation (not the colours)."""
    channels = image.shape[0]
    stack = image if mask is None else torch.cat([image, mask])
    if flip:
        stack = stack.flip(-1)
    if plan.rotate_p > 0 and torch.rand((), generator=generator) < plan.rotate_p:
        degrees = float((torch.rand((), generator=generator) * 2 - 1) * plan.rotate_degrees)
        stack = rotate(stack, degrees)
    image, mask = stack[:channels], (None if mask is None else stack[channels:])
    if plan.color_jitter_p > 0 and torch.rand((), generator=generator) < plan.color_jitter_p:
        image = jitter_colors(image, plan.color_jitter, generator)
    return image, mask
