"""The print as a viewer will see it, differentiably: what the print_in_context reward judges.

1. **Soft proof** through the CMYK profile (LittleCMS sampled into lookup tables, ``print_proof``), with
   black-point compensation in the separation (as ``generate --print-profile`` separates) and the paper
   simulated: the proof comes back absolute colorimetric, so the paper's white and the ink's black are
   what they are on paper, not the screen's.
2. **Seen at a stated size and distance**: a spatial filter in the spirit of S-CIELAB (Zhang & Wandell,
   "A spatial extension of CIELAB for digital color-image reproduction", 1997): the image goes to an
   opponent colour space (luminance, red-green, blue-yellow; Poirson & Wandell's matrix), each channel is
   blurred by a sum of Gaussians whose spreads are given in degrees of visual angle, and it comes back.
   The eye resolves luminance far more finely than colour, so colour fringes and fine chroma noise that
   the screen shows vanish on the print; what is left is what the viewer can see. The spreads are the
   published S-CIELAB ones; the pixels per degree come from the print's width and the viewing distance.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from dreamtune.rewards.colour import srgb_to_xyz, xyz_to_srgb
from dreamtune.rewards.print_proof import apply_table, default_profile, lookup_tables

# XYZ -> opponent (luminance, red-green, blue-yellow), Poirson & Wandell as used by S-CIELAB
OPPONENT = torch.tensor([[0.279, 0.72, -0.107], [-0.449, 0.29, -0.077], [0.086, -0.59, 0.501]])
# per opponent channel: (weight, spread in degrees of visual angle) of each Gaussian, S-CIELAB's values
SPREADS = (
    ((0.921, 0.0283), (0.105, 0.133), (-0.108, 4.336)),
    ((0.531, 0.0392), (0.330, 0.494)),
    ((0.488, 0.0536), (0.371, 0.386)),
)


@dataclass(frozen=True)
class Viewing:
    """A print ``width_cm`` wide seen from ``distance_cm``."""

    width_cm: float = 15.0
    distance_cm: float = 40.0

    def pixels_per_degree(self, width_pixels: int) -> float:
        return width_pixels / self.width_cm * self.distance_cm * math.tan(math.radians(1))


@functools.lru_cache(maxsize=64)
def _kernel(channel: int, pixels_per_degree: float, longest: int) -> Tensor:
    """The channel's 1-D sum-of-Gaussians kernel, cut at 3 spreads (at most the image's size) and
    normalised to sum 1 (a flat field keeps its colour)."""
    widest = max(spread for _, spread in SPREADS[channel]) * pixels_per_degree
    half = max(1, min(math.ceil(3 * widest), longest - 1))
    x = torch.arange(-half, half + 1, dtype=torch.float32)
    kernel = torch.zeros_like(x)
    for weight, spread in SPREADS[channel]:
        sigma = max(spread * pixels_per_degree, 1e-3)
        gaussian = torch.exp(-0.5 * (x / sigma) ** 2)
        kernel += weight * gaussian / gaussian.sum()
    return kernel / kernel.sum()


def seen_at(images: Tensor, pixels_per_degree: float) -> Tensor:
    """(B,3,H,W) sRGB in [0,1] as seen at ``pixels_per_degree`` (module doc, step 2)."""
    batch, _, height, width = images.shape
    opponent = torch.einsum("ij,bjhw->bihw", OPPONENT.to(images.device), srgb_to_xyz(images))
    out = []
    for channel in range(3):
        plane = opponent[:, channel : channel + 1]
        for dim, size in ((3, width), (2, height)):  # separable: rows, then columns
            kernel = _kernel(channel, pixels_per_degree, size).to(images.device)
            half = kernel.numel() // 2
            pad = (half, half, 0, 0) if dim == 3 else (0, 0, half, half)
            shape = (1, 1, 1, -1) if dim == 3 else (1, 1, -1, 1)
            plane = F.conv2d(F.pad(plane, pad, mode="reflect"), kernel.view(shape))
        out.append(plane)
    opponent = torch.cat(out, dim=1)
    return xyz_to_srgb(torch.einsum("ij,bjhw->bihw", torch.linalg.inv(OPPONENT).to(images.device), opponent))


class SimulatedPrint:
    """``profile`` (a CMYK .icc; default Ghostscript's), the separation's rendering ``intent``, ``viewing``.
    Call: (B,3,H,W) sRGB -> the print as seen; ``ink``: total ink coverage in % per pixel."""

    def __init__(self, profile: str | Path | None = None, intent: str = "perceptual", viewing: Viewing = Viewing()):
        self.profile, self.intent, self.viewing = Path(profile) if profile else default_profile(), intent, viewing
        self.proof_table, self.ink_table = lookup_tables(
            str(self.profile), intent, black_point_compensation=True, paper_white=True
        )

    def proof(self, images: Tensor) -> Tensor:
        return apply_table(self.proof_table, images)

    def __call__(self, images: Tensor) -> Tensor:
        return seen_at(self.proof(images), self.viewing.pixels_per_degree(images.shape[-1]))

    def ink(self, images: Tensor) -> Tensor:
        return apply_table(self.ink_table, images)[:, 0]
