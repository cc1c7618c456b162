"""Print after generation: an sRGB image made ready for a print shop's CMYK process.

The steps, in the order print people apply them (all colour transforms by LittleCMS through Pillow's
ImageCms; the profile is the shop's CMYK .icc):

1. **Size**: resampled (Lanczos) to the pixels the print needs: ``size`` (inches, the box the image
   must fit) x ``ppi``. Without a size the pixels are kept and only the resolution tag says ``ppi``.
2. **Output sharpening**: an unsharp mask whose radius is 0.1 mm on paper (``ppi`` / 254 pixels) —
   about the finest detail the eye resolves at a 30 cm reading distance (1 arc-minute is 0.087 mm),
   so the halo restores edge contrast lost to ink spread without being seen as a halo.
3. **Separation** into CMYK with the chosen rendering intent and black-point compensation (the
   source black mapped to the paper's deepest black instead of clipped: shadows keep their detail).
4. **Files**: a CMYK TIFF with the profile embedded and the resolution tags set, and a soft-proof PNG
   — the CMYK file as it will look on the paper, paper white and ink black simulated (absolute
   colorimetric from the profile back to sRGB).
5. **Check**: the CMYK file's colours against the image's, both read into CIELAB by LittleCMS from the
   8-bit data (relative colorimetric, as the eye adapted to the paper sees them): mean and 95th-percentile
   CIEDE2000, and how much of the image's colourfulness and tonal range the print keeps.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from dreamtune.errors import UserError

INTENTS = ("perceptual", "relative", "saturation", "absolute")
SHARPENING = {"none": 0, "mild": 60, "strong": 120}  # unsharp-mask amount, %
SHARPEN_RADIUS_MM = 0.1
MM_PER_INCH = 25.4
SHADOW_LIGHTNESS = 25.0
CHECKED_PIXELS = 2**20  # the check reads at most about this many pixels, evenly spread
UNITS = {"in": 1.0, "cm": 10 / MM_PER_INCH, "mm": 1 / MM_PER_INCH}


def intent_code(name: str):
    from PIL import ImageCms

    if name not in INTENTS:
        raise UserError(f"print intent {name!r} is not one of {', '.join(INTENTS)}.")
    return {
        "perceptual": ImageCms.Intent.PERCEPTUAL,
        "relative": ImageCms.Intent.RELATIVE_COLORIMETRIC,
        "saturation": ImageCms.Intent.SATURATION,
        "absolute": ImageCms.Intent.ABSOLUTE_COLORIMETRIC,
    }[name]


def open_profile(path: str | Path):
    """A CMYK output profile, or one clear sentence about what is wrong with ``path``."""
    from PIL import ImageCms

    path = Path(path)
    if not path.is_file():
        raise UserError(f"print profile {path} does not exist; pass the path of a CMYK .icc/.icm file.")
    try:
        profile = ImageCms.getOpenProfile(str(path))
    except (ImageCms.PyCMSError, OSError):
        raise UserError(
            f"print profile {path} is not an ICC profile LittleCMS can read; pass a CMYK .icc/.icm file."
        ) from None
    if profile.profile.xcolor_space.strip() != "CMYK":
        raise UserError(
            f"print profile {path} is a {profile.profile.xcolor_space.strip()} profile; a CMYK output profile is needed."
        )
    return profile


def parse_print_size(text: str) -> tuple[float, float]:
    """``"10x15cm"``, ``"4x6in"``, ``"100mm"`` (a square box) -> (width, height) in inches."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(?:x\s*(\d+(?:\.\d+)?))?\s*(in|cm|mm)\s*", text.lower())
    if not match or float(match[1]) <= 0 or (match[2] and float(match[2]) <= 0):
        raise UserError(
            f"--print-size {text!r} is not a size; give width x height and a unit, e.g. 10x15cm, 4x6in or 100mm."
        )
    width = float(match[1]) * UNITS[match[3]]
    return width, (float(match[2]) * UNITS[match[3]] if match[2] else width)


@dataclass(frozen=True)
class PrintSettings:
    """How an image is made ready for print (module doc)."""

    profile: str
    intent: str = "relative"
    black_point_compensation: bool = True
    size: str = ""  # "" keeps the pixels; else a box such as 10x15cm
    ppi: int = 300
    sharpen: str = "mild"

    def check(self) -> None:
        """Every setting checked before any work: one sentence naming it and the fix."""
        open_profile(self.profile)
        intent_code(self.intent)
        if self.sharpen not in SHARPENING:
            raise UserError(f"--print-sharpen {self.sharpen} is not one of {', '.join(SHARPENING)}.")
        if not 72 <= self.ppi <= 2400:
            raise UserError(f"--ppi {self.ppi} is outside 72-2400; print shops ask for 240-360 (300 is usual).")
        if self.size:
            parse_print_size(self.size)

    def pixels(self, width: int, height: int) -> tuple[int, int]:
        """The pixel size of the print: the image's aspect ratio fitted in the size box at ``ppi``."""
        if not self.size:
            return width, height
        box_w, box_h = parse_print_size(self.size)
        scale = min(box_w * self.ppi / width, box_h * self.ppi / height)
        return max(1, round(width * scale)), max(1, round(height * scale))

    def sharpen_radius(self) -> float:
        return SHARPEN_RADIUS_MM * self.ppi / MM_PER_INCH


@dataclass
class Print:
    """One image made ready: the CMYK separation, its soft proof and the measured check."""

    cmyk: object  # PIL CMYK image, info["icc_profile"] the shop's profile
    proof: object  # PIL RGB: how the CMYK file looks on the paper (paper white simulated)
    check: dict


def _srgb():
    from PIL import ImageCms

    return ImageCms.createProfile("sRGB")


@functools.lru_cache(maxsize=8)
def _lab_transform(profile_path: str, mode: str):
    """LittleCMS transform from ``mode`` data through ``profile_path`` ("" for sRGB) to CIELAB (D50),
    relative colorimetric: the colours as the eye adapted to the medium's white sees them."""
    from PIL import ImageCms

    source = open_profile(profile_path) if profile_path else _srgb()
    return ImageCms.buildTransform(
        source, ImageCms.createProfile("LAB"), mode, "LAB", ImageCms.Intent.RELATIVE_COLORIMETRIC
    )


def _to_lab(image, profile_path: str = "") -> torch.Tensor:
    """(3,H,W) CIELAB of a PIL image (RGB: sRGB; CMYK: through ``profile_path``), converted by LittleCMS."""
    from PIL import ImageCms

    raw = np.asarray(ImageCms.applyTransform(image, _lab_transform(profile_path, image.mode)))
    # Pillow's 8-bit LAB: L in 0..255 for 0..100; a and b signed bytes (-128..127) in the unsigned channels
    lightness, ab = raw[..., 0].astype(np.float32) * 100 / 255, raw[..., 1:].view(np.int8).astype(np.float32)
    return torch.from_numpy(np.stack([lightness, ab[..., 0], ab[..., 1]])).contiguous()


def _tonal_range(lab: torch.Tensor) -> float:
    lightness = lab[0].flatten()
    return float(torch.quantile(lightness, 0.99) - torch.quantile(lightness, 0.01))


def _chroma(lab: torch.Tensor) -> float:
    return float(torch.sqrt(lab[1] ** 2 + lab[2] ** 2).mean())


def _shadow_detail(meant: torch.Tensor, printed: torch.Tensor) -> float | None:
    """How much of the lightness variation among the image's shadows (L* < 25) the print keeps: clipped
    shadows print as one flat black (0), compressed ones keep most of it; None without shadows."""
    shadows = meant[0] < SHADOW_LIGHTNESS
    if int(shadows.sum()) < 0.01 * shadows.numel() or float(meant[0][shadows].std()) < 1.0:
        return None
    return round(float(printed[0][shadows].std()) / float(meant[0][shadows].std()), 3)


def measure(image, cmyk_image, profile_path: str) -> dict:
    """The check of step 5: ``image`` (PIL, sRGB) against ``cmyk_image`` (8-bit CMYK through the profile)."""
    from dreamtune.rewards.colour import ciede2000

    meant, printed = _to_lab(image.convert("RGB")), _to_lab(cmyk_image, profile_path)
    # a poster's 17 M pixels would not fit the colour difference's working memory (nor torch.quantile):
    # every k-th row and column of the file itself, so no pixel is averaged into another
    step = max(1, math.ceil(math.sqrt(meant[0].numel() / CHECKED_PIXELS)))
    meant, printed = meant[:, ::step, ::step], printed[:, ::step, ::step]
    delta = ciede2000(meant.unsqueeze(0), printed.unsqueeze(0)).flatten()
    return {
        "delta_e00_mean": round(float(delta.mean()), 2),
        "delta_e00_p95": round(float(torch.quantile(delta, 0.95)), 2),
        "chroma_kept": round(_chroma(printed) / max(_chroma(meant), 1e-6), 3),
        "tonal_range_kept": round(_tonal_range(printed) / max(_tonal_range(meant), 1e-6), 3),
        "shadow_detail_kept": _shadow_detail(meant, printed),
    }


@functools.lru_cache(maxsize=16)
def _transforms(profile_path: str, intent: str, black_point_compensation: bool):
    """(separation, on-paper proof) LittleCMS transforms; building one takes a good part of a second."""
    from PIL import ImageCms

    profile = open_profile(profile_path)
    flags = ImageCms.Flags.BLACKPOINTCOMPENSATION if black_point_compensation else ImageCms.Flags.NONE
    separate = ImageCms.buildTransform(
        _srgb(), profile, "RGB", "CMYK", renderingIntent=intent_code(intent), flags=flags
    )
    on_paper = ImageCms.buildTransform(profile, _srgb(), "CMYK", "RGB", ImageCms.Intent.ABSOLUTE_COLORIMETRIC)
    return separate, on_paper


def prepare(image, settings: PrintSettings) -> Print:
    """``image`` (PIL, sRGB) sized, sharpened, separated and proofed as ``settings`` say (module doc)."""
    from PIL import Image, ImageCms, ImageFilter

    separate, on_paper = _transforms(str(settings.profile), settings.intent, settings.black_point_compensation)
    rgb = image.convert("RGB")
    size = settings.pixels(*rgb.size)
    if size != rgb.size:
        rgb = rgb.resize(size, Image.Resampling.LANCZOS)
    amount = SHARPENING[settings.sharpen]
    ready = rgb.filter(ImageFilter.UnsharpMask(settings.sharpen_radius(), amount, 2)) if amount else rgb
    cmyk = ImageCms.applyTransform(ready, separate)
    cmyk.info["icc_profile"] = Path(settings.profile).read_bytes()  # the shop's file as it is, not re-serialised
    proof = ImageCms.applyTransform(cmyk, on_paper)
    check = measure(rgb, cmyk, str(settings.profile))
    return Print(cmyk=cmyk, proof=proof, check=check | {"pixels": list(size)})


def save_cmyk_tiff(cmyk, path: Path, ppi: int) -> None:
    """The print-ready file: LZW-compressed CMYK TIFF, the profile embedded, ``ppi`` in its resolution tags."""
    cmyk.save(path, format="TIFF", compression="tiff_lzw", icc_profile=cmyk.info["icc_profile"], dpi=(ppi, ppi))


def write_print(image, settings: PrintSettings, out_dir: Path, name: str) -> dict:
    """NNNN.cmyk.tif and NNNN.proof.png beside image ``name`` (written atomically); returns their record
    with the check."""
    from dreamtune.atomic import atomic_file
    from dreamtune.sampling.contact_sheet import save_png

    ready = prepare(image, settings)
    record = {"file": name.replace(".png", ".cmyk.tif"), "proof": name.replace(".png", ".proof.png")}
    with atomic_file(out_dir / record["file"]) as temp:
        save_cmyk_tiff(ready.cmyk, temp, settings.ppi)
    save_png(ready.proof, out_dir / record["proof"])
    return record | ready.check


def print_sheet(images, records: list[dict], settings: PrintSettings, out_dir: Path, pairs_per_row: int):
    """Each generated image beside its soft proof, captioned with the print check: the picture to look at."""
    from PIL import Image

    from dreamtune.sampling.contact_sheet import contact_sheet

    cells, captions = [], []
    for image, record in zip(images, records):
        printed = record["print"]
        with Image.open(out_dir / printed["proof"]) as proof:
            cells += [image, proof.copy()]
        captions += [
            f"#{record['seed']} on screen",
            f"on paper: dE00 {printed['delta_e00_mean']:.1f} mean, {printed['delta_e00_p95']:.1f} p95",
        ]
    return contact_sheet(
        cells,
        captions,
        columns=2 * pairs_per_row,
        title=f"on screen | on paper through {Path(settings.profile).name} (soft proof, paper white simulated)",
    )
