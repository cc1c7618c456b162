"""Colour science in torch, differentiable: sRGB -> CIELAB (D65), CIEDE2000 colour difference,
Hasler & Süsstrunk colourfulness.

CIEDE2000 follows Sharma, Wu & Dalal, "The CIEDE2000 color-difference formula: implementation
notes, supplementary test data, and mathematical observations" (Color Res. Appl. 30, 2005); the
tests check it against that paper's test pairs.
"""

from __future__ import annotations

import torch
from torch import Tensor

SRGB_TO_XYZ = torch.tensor(
    [[0.4124564, 0.3575761, 0.1804375], [0.2126729, 0.7151522, 0.0721750], [0.0193339, 0.1191920, 0.9503041]]
)
D65 = torch.tensor([0.95047, 1.0, 1.08883])


def srgb_to_xyz(images: Tensor) -> Tensor:
    """(B,3,H,W) sRGB in [0,1] -> (B,3,H,W) CIE XYZ (D65, Y of white = 1)."""
    c = images.float().clamp(0, 1)
    linear = torch.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055).clamp(min=1e-6) ** 2.4)
    return torch.einsum("ij,bjhw->bihw", SRGB_TO_XYZ.to(c.device), linear)


def xyz_to_srgb(xyz: Tensor) -> Tensor:
    """The inverse of ``srgb_to_xyz``, clipped to [0,1]."""
    linear = torch.einsum("ij,bjhw->bihw", torch.linalg.inv(SRGB_TO_XYZ).to(xyz.device), xyz.float()).clamp(0, 1)
    return torch.where(linear <= 0.0031308, 12.92 * linear, 1.055 * linear.clamp(min=1e-8) ** (1 / 2.4) - 0.055)


def srgb_to_lab(images: Tensor) -> Tensor:
    """(B,3,H,W) sRGB in [0,1] -> (B,3,H,W) CIELAB (D65)."""
    xyz = srgb_to_xyz(images) / D65.to(images.device).view(1, 3, 1, 1)
    delta = 6 / 29
    f = torch.where(xyz > delta**3, xyz.clamp(min=1e-6) ** (1 / 3), xyz / (3 * delta**2) + 4 / 29)
    return torch.stack([116 * f[:, 1] - 16, 500 * (f[:, 0] - f[:, 1]), 200 * (f[:, 1] - f[:, 2])], dim=1)


def _hue_degrees(b: Tensor, a: Tensor) -> Tensor:
    """Hue angle in [0, 360); 0 for (near-)achromatic pixels, with finite gradients there."""
    grey = (a * a + b * b) < 1e-8
    return (
        torch.rad2deg(torch.atan2(torch.where(grey, torch.zeros_like(b), b), torch.where(grey, torch.ones_like(a), a)))
        % 360
    )


def ciede2000(lab1: Tensor, lab2: Tensor) -> Tensor:
    """CIEDE2000 ΔE between CIELAB tensors with the channel in dim 1 (k_L = k_C = k_H = 1)."""
    l1, a1, b1 = lab1.unbind(1)
    l2, a2, b2 = lab2.unbind(1)
    c_mean = (torch.sqrt(a1**2 + b1**2 + 1e-12) + torch.sqrt(a2**2 + b2**2 + 1e-12)) / 2
    g = 0.5 * (1 - torch.sqrt(c_mean**7 / (c_mean**7 + 25.0**7) + 1e-12))
    a1p, a2p = (1 + g) * a1, (1 + g) * a2
    c1p, c2p = torch.sqrt(a1p**2 + b1**2 + 1e-12), torch.sqrt(a2p**2 + b2**2 + 1e-12)
    h1p, h2p = _hue_degrees(b1, a1p), _hue_degrees(b2, a2p)
    chromatic = (c1p * c2p) > 1e-6
    dh = h2p - h1p
    dh = torch.where(dh > 180, dh - 360, torch.where(dh < -180, dh + 360, dh))
    dh = torch.where(chromatic, dh, torch.zeros_like(dh))
    d_l, d_c = l2 - l1, c2p - c1p
    d_h = 2 * torch.sqrt(c1p * c2p + 1e-12) * torch.sin(torch.deg2rad(dh) / 2)
    l_mean, cp_mean = (l1 + l2) / 2, (c1p + c2p) / 2
    h_sum = h1p + h2p
    h_mean = torch.where(
        (h1p - h2p).abs() <= 180, h_sum / 2, torch.where(h_sum < 360, (h_sum + 360) / 2, (h_sum - 360) / 2)
    )
    h_mean = torch.where(chromatic, h_mean, h_sum)
    t = (
        1
        - 0.17 * torch.cos(torch.deg2rad(h_mean - 30))
        + 0.24 * torch.cos(torch.deg2rad(2 * h_mean))
        + 0.32 * torch.cos(torch.deg2rad(3 * h_mean + 6))
        - 0.20 * torch.cos(torch.deg2rad(4 * h_mean - 63))
    )
    d_theta = 30 * torch.exp(-(((h_mean - 275) / 25) ** 2))
    r_c = 2 * torch.sqrt(cp_mean**7 / (cp_mean**7 + 25.0**7) + 1e-12)
    s_l = 1 + 0.015 * (l_mean - 50) ** 2 / torch.sqrt(20 + (l_mean - 50) ** 2)
    s_c = 1 + 0.045 * cp_mean
    s_h = 1 + 0.015 * cp_mean * t
    r_t = -torch.sin(torch.deg2rad(2 * d_theta)) * r_c
    terms = (d_l / s_l) ** 2 + (d_c / s_c) ** 2 + (d_h / s_h) ** 2 + r_t * (d_c / s_c) * (d_h / s_h)
    return torch.sqrt(terms.clamp(min=0) + 1e-12)


def colourfulness(images: Tensor) -> Tensor:
    """Hasler & Süsstrunk's colourfulness M (2003) of (B,3,H,W) sRGB in [0,1], on the 0-255 scale
    (greyscale 0; 'quite colourful' ≈ 60)."""
    r, g, b = (255 * images.float()).unbind(1)
    rg, yb = (r - g).flatten(1), (0.5 * (r + g) - b).flatten(1)
    spread = torch.sqrt(rg.var(1, unbiased=False) + yb.var(1, unbiased=False) + 1e-6)
    mean = torch.sqrt(rg.mean(1) ** 2 + yb.mean(1) ** 2 + 1e-6)
    return spread + 0.3 * mean


def luminance(images: Tensor) -> Tensor:
    return 0.2126 * images[:, 0] + 0.7152 * images[:, 1] + 0.0722 * images[:, 2]
