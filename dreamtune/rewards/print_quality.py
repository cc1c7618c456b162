"""Print quality: how well an image will survive printing on coated paper. Three parts in
[0, 1], each logged, averaged with weights:

  gamut      share of pixels inside the printable gamut of coated offset paper. No CMYK ICC
             profile is available offline here, so this is a *stated approximation*: in CIELAB
             (D65), a pixel is printable when its lightness lies between the paper's black and
             white (L* 16–95) and its chroma is under a hull with triangular lightness profile
             through the six primary/secondary cusps of ISO Coated v2 (FOGRA39), interpolated
             by hue (values below, approximate). Saturated sRGB blues, greens and reds fall outside.
  sharpness  1 - exp(-var(Laplacian of luminance) / 0.01): soft, blurry prints score low.
             (Rewarding it alone invites noise: that is reward hacking, watch the grids.)
  tonal      (95th - 5th percentile of luminance) x (1 - share of clipped pixels, luminance
             under 2 % or over 98 %): full tonal range without blocked shadows or blown highlights.

Everything is written in torch with soft thresholds, so the reward is differentiable (DRaFT).
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from dreamtune.rewards.colour import luminance, srgb_to_lab

# (hue in degrees, L*, C*) of the gamut cusps: red, yellow, green, cyan, blue, magenta
CUSPS = (
    (35.2, 47.0, 83.2),
    (93.1, 89.0, 93.1),
    (157.4, 50.0, 70.4),
    (233.5, 55.0, 62.2),
    (295.6, 24.0, 51.0),
    (357.7, 48.0, 74.1),
)
PAPER_BLACK, PAPER_WHITE = 16.0, 95.0


def max_chroma(lightness: Tensor, hue_degrees: Tensor) -> Tensor:
    """Chroma limit of the approximate coated-paper gamut at (L*, hue)."""
    hues = torch.tensor([c[0] for c in CUSPS], device=lightness.device)
    cusp_l = torch.tensor([c[1] for c in CUSPS], device=lightness.device)
    cusp_c = torch.tensor([c[2] for c in CUSPS], device=lightness.device)
    h = hue_degrees % 360
    upper = torch.searchsorted(hues, h.contiguous()) % len(CUSPS)  # next cusp (cyclic)
    lower = (upper - 1) % len(CUSPS)
    span = (hues[upper] - hues[lower]) % 360
    t = ((h - hues[lower]) % 360) / span
    l_cusp = cusp_l[lower] * (1 - t) + cusp_l[upper] * t
    c_cusp = cusp_c[lower] * (1 - t) + cusp_c[upper] * t
    below = c_cusp * (lightness - PAPER_BLACK) / (l_cusp - PAPER_BLACK)
    above = c_cusp * (PAPER_WHITE - lightness) / (PAPER_WHITE - l_cusp)
    return torch.where(lightness <= l_cusp, below, above).clamp(min=0)


def gamut_share(images: Tensor, softness: float = 2.0) -> Tensor:
    lab = srgb_to_lab(images)
    lightness, a, b = lab[:, 0], lab[:, 1], lab[:, 2]
    chroma = torch.sqrt(a * a + b * b + 1e-6)
    hue = torch.rad2deg(torch.atan2(b, a + 1e-6))
    inside = torch.sigmoid((max_chroma(lightness, hue) - chroma) / softness)
    inside = (
        inside
        * torch.sigmoid((lightness - PAPER_BLACK) / softness)
        * torch.sigmoid((PAPER_WHITE - lightness) / softness)
    )
    return inside.flatten(1).mean(1)


def sharpness(images: Tensor, scale: float = 0.01) -> Tensor:
    kernel = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]], device=images.device).view(1, 1, 3, 3)
    laplacian = F.conv2d(luminance(images.float()).unsqueeze(1), kernel)
    return 1 - torch.exp(-laplacian.flatten(1).var(1) / scale)


def tonal_range(images: Tensor, softness: float = 0.005) -> Tensor:
    y = luminance(images.float()).flatten(1)
    spread = torch.quantile(y, 0.95, dim=1) - torch.quantile(y, 0.05, dim=1)
    clipped = (torch.sigmoid((y - 0.98) / softness) + torch.sigmoid((0.02 - y) / softness)).mean(1)
    return spread * (1 - clipped)


class PrintQuality:
    name, differentiable = "print_quality", True

    def __init__(self, gamut: float = 1.0, sharpness: float = 1.0, tonal: float = 1.0):
        self.weights = {"gamut": gamut, "sharpness": sharpness, "tonal": tonal}
        if not math.isclose(sum(self.weights.values()), 0.0) and min(self.weights.values()) < 0:
            raise ValueError("print-quality part weights must not be negative")

    def parts(self, images: Tensor, prompts: Sequence[str], meta: Mapping) -> dict[str, Tensor]:
        return {"gamut": gamut_share(images), "sharpness": sharpness(images), "tonal": tonal_range(images)}

    def __call__(self, images: Tensor, prompts: Sequence[str], meta: Mapping) -> Tensor:
        parts = self.parts(images, prompts, meta)
        return sum(self.weights[k] * v for k, v in parts.items()) / sum(self.weights.values())
