"""Differentiable augmentation for a discriminator with ~5 real images (DiffAugment, Zhao et al.
2020): colour (brightness, saturation, contrast), translation (1/8 of the side), cutout (a square
of half the side). Applied to real and fake alike; seeded by a torch generator."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def diff_augment(
    images: Tensor, generator: torch.Generator, policy: tuple[str, ...] = ("color", "translation", "cutout")
) -> Tensor:
    """(B,3,H,W) in [0,1] -> augmented, differentiable with respect to ``images``."""
    b, _, h, w = images.shape
    rand = lambda *shape: torch.rand(*shape, generator=generator).to(images.device)
    x = images
    if "color" in policy:
        x = x + (rand(b, 1, 1, 1) - 0.5) * 0.4
        mean = x.mean(dim=1, keepdim=True)
        x = (x - mean) * (rand(b, 1, 1, 1) * 2) + mean
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        x = (x - mean) * (rand(b, 1, 1, 1) + 0.5) + mean
    if "translation" in policy:
        shift_y, shift_x = max(1, h // 8), max(1, w // 8)
        dy = (rand(b) * (2 * shift_y + 1)).long() - shift_y
        dx = (rand(b) * (2 * shift_x + 1)).long() - shift_x
        padded = F.pad(x, (shift_x, shift_x, shift_y, shift_y), mode="replicate")
        x = torch.stack(
            [
                padded[i, :, shift_y + dy[i] : shift_y + dy[i] + h, shift_x + dx[i] : shift_x + dx[i] + w]
                for i in range(b)
            ]
        )
    if "cutout" in policy:
        size_y, size_x = h // 2, w // 2
        cy = (rand(b) * (h - size_y + 1)).long()
        cx = (rand(b) * (w - size_x + 1)).long()
        mask = torch.ones_like(x[:, :1])
        for i in range(b):
            mask[i, :, cy[i] : cy[i] + size_y, cx[i] : cx[i] + size_x] = 0
        x = x * mask
    return x
