"""Print the way print shops do: a real CMYK ICC profile (LittleCMS through Pillow's ImageCms)
soft-proofs each image, and the reward scores what printing will do to it.

The profile is sampled once into 3-D lookup tables — sRGB -> proof (sRGB -> CMYK -> sRGB, the
print as it will look) and sRGB -> total ink coverage — applied with trilinear interpolation in
torch, so the reward stays differentiable (DRaFT) and runs on the GPU.

"What the image is meant to look like" is the anchor ``meta["reference"]``: the same-seed image of
the model before reward fine-tuning (or, when absent, the image itself, detached). Parts, each in
[0, 1], higher is better:

  fidelity   exp(-mean CIEDE2000(reference, proof(image)) / 10): the print looks like what was
             meant. Greyscale, desaturation, lifted blacks all move the print away from it.
  colour     colourfulness (Hasler & Süsstrunk) of the print over that of the reference's print,
             capped at 1: paler images cannot win by fitting the gamut.
  ink        1 - share of pixels over the total-ink limit (``ink_limit``, % of CMYK coverage).
  detail     gradient energy of the print's shadows and highlights over the reference print's,
             capped at 1: blocked shadows and blown highlights lose.
  sharpness  exp(-|log(Laplacian energy of the print / the reference print's)|): blur loses, and
             so does added noise or grain.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from dreamtune.errors import UserError
from dreamtune.rewards.colour import ciede2000, colourfulness, luminance, srgb_to_lab
from dreamtune.sampling.print_ready import intent_code, open_profile

# Ghostscript's default CMYK output profile (Debian: libgs-common; AGPL-3+, read where it is
# installed, never shipped with dreamtune).
DEFAULT_PROFILES = ("/usr/share/color/icc/ghostscript/default_cmyk.icc",)
GRID = 52  # 255 / 51 = 5: every grid point is an exact 8-bit value


def default_profile() -> Path:
    for candidate in DEFAULT_PROFILES:
        if Path(candidate).is_file():
            return Path(candidate)
    raise UserError(
        "no CMYK ICC profile was given and Ghostscript's default_cmyk.icc is not installed; pass your print "
        "shop's profile (rl.print_profile / --print-profile X.icc) or install it with: apt-get install libgs-common."
    )


def _grid_image():
    from PIL import Image

    steps = torch.linspace(0, 255, GRID).round().to(torch.uint8)
    r, g, b = torch.meshgrid(steps, steps, steps, indexing="ij")
    pixels = torch.stack([r, g, b], dim=-1).reshape(1, -1, 3)
    return Image.fromarray(pixels.numpy(), "RGB")


@functools.lru_cache(maxsize=8)
def lookup_tables(
    profile_path: str, intent: str = "perceptual", black_point_compensation: bool = False, paper_white: bool = False
) -> tuple[Tensor, Tensor]:
    """(proof, ink): (3, G, G, G) sRGB of the soft proof and (1, G, G, G) total ink in %, indexed
    [channel, r, g, b] over a G³ grid of sRGB values. ``black_point_compensation``: the separation maps
    the image's black to the paper's deepest black (LittleCMS's BPC); ``paper_white``: the proof comes back
    absolute colorimetric, so it shows the paper's white and the ink's black as they are (a print held
    beside the screen), not relative to the paper (the eye adapted to it)."""
    import numpy as np
    from PIL import ImageCms

    cmyk = open_profile(profile_path)
    srgb = ImageCms.createProfile("sRGB")
    grid = _grid_image()
    flags = ImageCms.Flags.BLACKPOINTCOMPENSATION if black_point_compensation else ImageCms.Flags.NONE
    to_cmyk = ImageCms.buildTransform(srgb, cmyk, "RGB", "CMYK", renderingIntent=intent_code(intent), flags=flags)
    separated = ImageCms.applyTransform(grid, to_cmyk)
    seen = ImageCms.Intent.ABSOLUTE_COLORIMETRIC if paper_white else ImageCms.Intent.RELATIVE_COLORIMETRIC
    back = ImageCms.buildTransform(cmyk, srgb, "CMYK", "RGB", renderingIntent=seen)
    proof = np.asarray(ImageCms.applyTransform(separated, back), dtype=np.float32).reshape(GRID, GRID, GRID, 3) / 255
    ink = np.asarray(separated, dtype=np.float32).reshape(GRID, GRID, GRID, 4).sum(-1, keepdims=True) / 255 * 100
    return torch.from_numpy(proof).permute(3, 0, 1, 2).contiguous(), torch.from_numpy(ink).permute(
        3, 0, 1, 2
    ).contiguous()


def apply_table(table: Tensor, images: Tensor) -> Tensor:
    """Trilinear lookup of (C, G, G, G) ``table`` at (B,3,H,W) sRGB ``images`` in [0,1] -> (B,C,H,W)."""
    batch, _, height, width = images.shape
    coords = images.float().clamp(0, 1).permute(0, 2, 3, 1).reshape(1, -1, 1, 1, 3) * 2 - 1
    coords = coords.flip(-1)  # grid_sample's (x, y, z) index (W, H, D) = (b, g, r)
    out = F.grid_sample(table.to(images.device).unsqueeze(0), coords, mode="bilinear", align_corners=True)
    return out.reshape(table.shape[0], batch, height, width).permute(1, 0, 2, 3)


def _gradient_energy(y: Tensor, mask: Tensor) -> Tensor:
    dx, dy = y[:, :, 1:] - y[:, :, :-1], y[:, 1:, :] - y[:, :-1, :]
    energy = dx[:, :-1, :] ** 2 + dy[:, :, :-1] ** 2
    weight = mask[:, :-1, :-1]
    return (energy * weight).flatten(1).sum(1) / (weight.flatten(1).sum(1) + 1.0)


def _laplacian_energy(y: Tensor) -> Tensor:
    kernel = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]], device=y.device).view(1, 1, 3, 3)
    return F.conv2d(y.unsqueeze(1), kernel).flatten(1).pow(2).mean(1)


class PrintProof:
    """The print reward (module doc). ``profile``: a CMYK ICC file (default: Ghostscript's);
    ``intent``: the rendering intent of the separation."""

    name, differentiable, needs_reference = "print_proof", True, True
    PARTS = ("fidelity", "colour", "ink", "detail", "sharpness")

    def __init__(
        self,
        profile: str | Path | None = None,
        intent: str = "perceptual",
        ink_limit: float = 300.0,
        weights: Mapping[str, float] | None = None,
    ):
        self.profile = Path(profile) if profile else default_profile()
        self.intent, self.ink_limit = intent, ink_limit
        self.proof_table, self.ink_table = lookup_tables(str(self.profile), intent)
        self.weights = {part: 1.0 for part in self.PARTS} | dict(weights or {})

    def proof(self, images: Tensor) -> Tensor:
        """The soft proof: how ``images`` (B,3,H,W, sRGB in [0,1]) will look printed."""
        return apply_table(self.proof_table, images)

    def ink(self, images: Tensor) -> Tensor:
        """Total ink coverage in % per pixel, (B,H,W)."""
        return apply_table(self.ink_table, images)[:, 0]

    def parts(self, images: Tensor, prompts: Sequence[str], meta: Mapping) -> dict[str, Tensor]:
        images = images.float()
        reference = meta.get("reference") if meta else None
        reference = (images if reference is None else reference.to(images.device).float()).detach()
        printed, meant_printed = self.proof(images), self.proof(reference)
        fidelity = torch.exp(-ciede2000(srgb_to_lab(reference), srgb_to_lab(printed)).flatten(1).mean(1) / 10)
        colour = ((colourfulness(printed) + 1) / (colourfulness(meant_printed) + 1)).clamp(max=1)
        ink = 1 - torch.sigmoid((self.ink(images) - self.ink_limit) / 2).flatten(1).mean(1)
        y, y_meant = luminance(printed), luminance(meant_printed)
        ends = ((y_meant < 0.2) | (y_meant > 0.85)).float()
        detail = ((_gradient_energy(y, ends) + 1e-5) / (_gradient_energy(y_meant, ends) + 1e-5)).clamp(max=1)
        sharp = torch.exp(-torch.log((_laplacian_energy(y) + 1e-6) / (_laplacian_energy(y_meant) + 1e-6)).abs())
        return {"fidelity": fidelity, "colour": colour, "ink": ink, "detail": detail, "sharpness": sharp}

    def __call__(self, images: Tensor, prompts: Sequence[str], meta: Mapping) -> Tensor:
        parts = self.parts(images, prompts, meta)
        return sum(self.weights[k] * v for k, v in parts.items()) / sum(self.weights.values())


def littlecms_proof(
    images: Tensor,
    profile: str | Path,
    intent: str = "perceptual",
    black_point_compensation: bool = False,
    paper_white: bool = False,
) -> Tensor:
    """The soft proof computed by LittleCMS itself, image by image (8-bit, not differentiable): the
    reference the lookup tables are checked against (the same two transforms, on the 8-bit image)."""
    import numpy as np
    from PIL import Image, ImageCms

    cmyk, srgb = open_profile(profile), ImageCms.createProfile("sRGB")
    flags = ImageCms.Flags.BLACKPOINTCOMPENSATION if black_point_compensation else ImageCms.Flags.NONE
    to_cmyk = ImageCms.buildTransform(srgb, cmyk, "RGB", "CMYK", renderingIntent=intent_code(intent), flags=flags)
    seen = ImageCms.Intent.ABSOLUTE_COLORIMETRIC if paper_white else ImageCms.Intent.RELATIVE_COLORIMETRIC
    back = ImageCms.buildTransform(cmyk, srgb, "CMYK", "RGB", renderingIntent=seen)
    out = []
    for image in images.float().clamp(0, 1):
        pil = Image.fromarray((image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8), "RGB")
        printed = ImageCms.applyTransform(ImageCms.applyTransform(pil, to_cmyk), back)
        out.append(np.asarray(printed, dtype=np.float32) / 255)
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2)
