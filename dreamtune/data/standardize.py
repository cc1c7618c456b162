"""Turn any decodable image into a clean RGB (or grayscale) picture of a fixed size.

Every Pillow mode users meet is handled explicitly: alpha (LA, RGBA, PA, P with a
transparency key) is composited on a chosen background, CMYK goes through Pillow's
conversion, and high-bit-depth modes (I;16, I, F) are rescaled from their real value range
instead of being clipped to 255.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageColor, ImageOps

from dreamtune.errors import UserError

RESAMPLING = {
    "lanczos": Image.Resampling.LANCZOS,
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
    "nearest": Image.Resampling.NEAREST,
    "box": Image.Resampling.BOX,
}


def parse_color(name: str) -> tuple[int, int, int]:
    try:
        return ImageColor.getrgb(name)[:3]
    except ValueError:
        raise UserError(
            f"background colour '{name}' is not a colour Pillow knows; use a name like 'white' or a hex code like '#808080'."
        ) from None


def _high_bit_depth_to_l(image: Image.Image) -> Image.Image:
    """I;16 / I / F images: stretch the actual value range to 0..255 (no clipping)."""
    array = np.asarray(image, dtype=np.float64)
    low, high = float(array.min()), float(array.max())
    if image.mode.startswith("I;16") or (image.mode == "I" and high <= 65535 and low >= 0 and high > 255):
        low, high = 0.0, 65535.0 if high > 255 else 255.0
    scale = (high - low) or 1.0
    return Image.fromarray(np.clip((array - low) / scale * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")


def to_rgb(image: Image.Image, background: str = "white", grayscale: bool = False) -> Image.Image:
    """Convert an image of any mode to RGB (or L when ``grayscale``), compositing alpha.

    EXIF orientation is applied first so portrait phone photos stay upright.
    """
    image = ImageOps.exif_transpose(image)
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        image = _high_bit_depth_to_l(image)
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in ("LA", "PA", "La", "RGBa"):
        image = image.convert("RGBA")
    if image.mode == "RGBA":
        canvas = Image.new("RGB", image.size, parse_color(background))
        canvas.paste(image, mask=image.getchannel("A"))
        image = canvas
    elif image.mode != "RGB":  # L, 1, CMYK, YCbCr, LAB, HSV
        image = image.convert("RGB")
    return image.convert("L").convert("RGB") if grayscale else image


def resize_shortest_side(image: Image.Image, size: int, resample: str = "lanczos") -> Image.Image:
    """Scale so the shorter side equals ``size`` (aspect ratio kept)."""
    width, height = image.size
    scale = size / min(width, height)
    new_size = (max(size, round(width * scale)), max(size, round(height * scale)))
    return image.resize(new_size, RESAMPLING[resample])


def crop_box_centered(
    size: tuple[int, int], target: tuple[int, int], center: tuple[float, float]
) -> tuple[int, int, int, int]:
    """A ``target``-sized box inside ``size`` whose centre is as close to ``center`` as fits."""
    (width, height), (tw, th) = size, target
    left = int(round(min(max(center[0] - tw / 2, 0), width - tw)))
    top = int(round(min(max(center[1] - th / 2, 0), height - th)))
    return left, top, left + tw, top + th


def cover_resize(image: Image.Image, target: tuple[int, int], resample: str = "lanczos") -> Image.Image:
    """Scale so the image covers ``target`` (w, h) entirely, for a crop afterwards."""
    width, height = image.size
    scale = max(target[0] / width, target[1] / height)
    new_size = (max(target[0], round(width * scale)), max(target[1], round(height * scale)))
    return image.resize(new_size, RESAMPLING[resample])
