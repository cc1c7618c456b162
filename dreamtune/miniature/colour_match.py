"""The judge's colour term: does an image hold the subject's colours, in about the subject's amount?

The judge's embedding sees shape well and weighs colour too little (experiments/new-shape-judge): a
subject's outline in another colour stays near its photos. This term looks at colour alone. An image's
colour histogram — 12 hue bins of its saturated pixels and 3 grey levels (dark / mid / light) of the rest,
each as a share of *all* its pixels — is compared with the subject's **signature**: the bin-wise minimum
over the subject's photos, i.e. the colours every photo holds, which is the subject itself (the photos'
backgrounds differ, so their colours drop out). The match is the share of the signature the image holds,
Σ min(image, signature) / Σ signature, in [0, 1]: 1 when the subject's colours are there in at least the
subject's amount, near 0 when they are absent (another colour, or a drawing without the subject)."""

from __future__ import annotations

import torch
from torch import Tensor

HUE_BINS = 12
GREY_LEVELS = 3
SATURATED = 0.3  # HSV saturation above which a pixel has a hue
LIT = 0.2  # and value above which (darker pixels read as dark grey)


def _hsv(pixels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(N, 3, H, W) in [-1, 1] -> hue in [0, 1), saturation, value, each (N, H, W)."""
    rgb = ((pixels.float().clamp(-1, 1) + 1) / 2).permute(0, 2, 3, 1)
    top, argmax = rgb.max(dim=-1)
    low = rgb.min(dim=-1).values
    span = top - low
    r, g, b = rgb.unbind(-1)
    safe = span.clamp_min(1e-8)
    hue = torch.where(argmax == 0, (g - b) / safe, torch.where(argmax == 1, 2 + (b - r) / safe, 4 + (r - g) / safe))
    hue = torch.where(span > 0, (hue / 6) % 1.0, torch.zeros_like(hue))
    saturation = torch.where(top > 0, span / top.clamp_min(1e-8), torch.zeros_like(top))
    return hue, saturation, top


def colour_histogram(pixels: Tensor) -> Tensor:
    """(N, 3, H, W) in [-1, 1] -> (N, HUE_BINS + GREY_LEVELS), shares of all pixels."""
    hue, saturation, value = _hsv(pixels)
    coloured = (saturation > SATURATED) & (value > LIT)
    hue_bin = (hue * HUE_BINS).long().clamp(0, HUE_BINS - 1)
    grey_bin = HUE_BINS + (value * GREY_LEVELS).long().clamp(0, GREY_LEVELS - 1)
    bins = torch.where(coloured, hue_bin, grey_bin).flatten(1)
    counts = torch.zeros(len(bins), HUE_BINS + GREY_LEVELS).scatter_add_(
        1, bins, torch.ones_like(bins, dtype=torch.float)
    )
    return counts / bins.shape[1]


def colour_signature(photos: Tensor) -> Tensor:
    """The colours every one of the subject's photos holds (bin-wise minimum of their histograms)."""
    return colour_histogram(photos).min(dim=0).values


def colour_match(pixels: Tensor, signature: Tensor) -> Tensor:
    """Per image, the share of the subject's signature it holds, in [0, 1]."""
    held = torch.minimum(colour_histogram(pixels), signature).sum(dim=1)
    return held / signature.sum().clamp_min(1e-8)
