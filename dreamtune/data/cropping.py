"""Where to crop: centre, seeded random, face-aware, and aspect-ratio buckets."""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
from PIL import Image

from dreamtune.errors import UserError


@dataclass(frozen=True)
class CropDecision:
    box: tuple[int, int, int, int]  # left, top, right, bottom in the resized image
    note: str = ""  # e.g. "no face found, centre crop used"


def bucket_sizes(resolution: int, step: int = 64, max_ratio: float = 2.0) -> list[tuple[int, int]]:
    """(w, h) pairs with area close to resolution² and sides multiples of ``step``."""
    step = min(step, max(8, resolution // 8))
    area = resolution * resolution
    sizes = set()
    width = step
    while width <= resolution * max_ratio:
        height = int(area / width) // step * step
        if height >= step and max(width / height, height / width) <= max_ratio:
            sizes.add((width, height))
        width += step
    return sorted(sizes)


def nearest_bucket(size: tuple[int, int], buckets: list[tuple[int, int]]) -> tuple[int, int]:
    """Bucket with the closest log aspect ratio to the image's."""
    ratio = np.log(size[0] / size[1])
    return min(buckets, key=lambda wh: abs(np.log(wh[0] / wh[1]) - ratio))


def _largest_face_center(image: Image.Image) -> tuple[float, float] | None:
    try:
        import cv2
    except ImportError:
        raise UserError(
            "data.crop is 'face' but OpenCV is not installed; run pip install 'dreamtune[face]' or use crop=center."
        ) from None
    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
    gray = np.asarray(image.convert("L"))
    faces = cascade.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5, minSize=(24, 24))
    if len(faces) == 0:
        return None
    x, y, w, h = max(faces, key=lambda f: f[2] * f[3])
    return (x + w / 2, y + h / 2)


def choose_crop(image: Image.Image, target: tuple[int, int], mode: str, rng: random.Random) -> CropDecision:
    """Pick a ``target``-sized crop box in an image already resized to cover ``target``."""
    from dreamtune.data.standardize import crop_box_centered

    width, height = image.size
    if mode == "random":
        left = rng.randint(0, width - target[0])
        top = rng.randint(0, height - target[1])
        return CropDecision((left, top, left + target[0], top + target[1]))
    if mode == "face":
        center = _largest_face_center(image)
        if center is not None:
            return CropDecision(crop_box_centered(image.size, target, center), "face-centred crop")
        return CropDecision(
            crop_box_centered(image.size, target, (width / 2, height / 2)), "no face found, centre crop used"
        )
    return CropDecision(crop_box_centered(image.size, target, (width / 2, height / 2)))
