"""A colour term beside the judge's shape similarity (issue 34; measured, not wired into the judge —
experiments/new-shape-judge, "A colour term").

The judge's embedding sees shape well and weighs colour too little: a subject's outline in another colour
stays near its photos. This term looks at colour alone. An image's colour histogram in CIELAB — 4 lightness
levels × (8 hue sectors of a*b*, or grey where chroma < 10) — each bin a share of *all* its pixels, is
compared with the subject's **signature**: the bin-wise minimum over the subject's photos, the colours every
photo holds, which is the subject itself (the photos' backgrounds differ, so theirs drop out). The match is
the share of the signature an image holds, Σ min(image, signature) / Σ signature, in [0, 1].
(Lab, not HSV: a dark navy pixel has a clear a*b* hue where HSV's value threshold calls it dark grey — with
HSV bins a grey wolf and its navy twin matched alike.)"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from dreamtune.rewards.colour import srgb_to_lab

HUE_SECTORS = 8
LIGHTNESS_LEVELS = 4
ACHROMATIC = 10.0  # CIELAB chroma below which a pixel counts as grey


def colour_histogram(pixels: Tensor) -> Tensor:
    """(N, 3, H, W) in [-1, 1] -> (N, LIGHTNESS_LEVELS * (HUE_SECTORS + 1)), shares of all pixels."""
    lightness, a, b = srgb_to_lab((pixels.float().clamp(-1, 1) + 1) / 2).unbind(1)
    hue = (torch.atan2(b, a) / (2 * math.pi)) % 1.0
    sector = (hue * HUE_SECTORS).long().clamp(0, HUE_SECTORS - 1)
    sector = torch.where((a * a + b * b).sqrt() < ACHROMATIC, torch.full_like(sector, HUE_SECTORS), sector)
    level = (lightness / 100 * LIGHTNESS_LEVELS).long().clamp(0, LIGHTNESS_LEVELS - 1)
    bins = (level * (HUE_SECTORS + 1) + sector).flatten(1)
    counts = torch.zeros(len(bins), LIGHTNESS_LEVELS * (HUE_SECTORS + 1))
    counts.scatter_add_(1, bins, torch.ones_like(bins, dtype=torch.float))
    return counts / bins.shape[1]


def colour_signature(photos: Tensor) -> Tensor:
    """The colours every one of the subject's photos holds (bin-wise minimum of their histograms)."""
    return colour_histogram(photos).min(dim=0).values


def colour_match(pixels: Tensor, signature: Tensor) -> Tensor:
    """Per image, the share of the subject's signature it holds, in [0, 1]."""
    return torch.minimum(colour_histogram(pixels), signature).sum(dim=1) / signature.sum().clamp_min(1e-8)
