"""Subject masks: which pixels of a photo are the subject (``data.subject_masks``).

A photo's mask is a grey-scale picture of the same size, white where the subject is, read from
``NAME.mask.png`` (any image suffix) beside ``NAME.jpg``, or else from the photo's own alpha
channel when it has one that is not fully opaque (a cut-out PNG). With ``data.subject_masks`` the
denoising loss counts the background at ``data.background_weight`` only, so the photos'
backgrounds are not learned as part of the subject (kohya's "masked loss", OneTrainer's "masked
training").
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageOps

MASK_SUFFIX = ".mask"


def is_mask_file(path: Path, image_suffixes: set[str]) -> bool:
    """``photo.mask.png``: a mask, never a training photo of its own."""
    return path.suffix.lower() in image_suffixes and Path(path.stem).suffix.lower() == MASK_SUFFIX


def mask_file_for(photo: Path, image_suffixes: set[str]) -> Path | None:
    """The mask file beside ``photo`` (``photo-stem.mask.*``), if there is one."""
    for candidate in sorted(photo.parent.glob(f"{_glob_escape(photo.stem)}{MASK_SUFFIX}.*")):
        if candidate.suffix.lower() in image_suffixes and candidate.is_file():
            return candidate
    return None


def _glob_escape(text: str) -> str:
    return "".join(f"[{c}]" if c in "*?[]" else c for c in text)


def alpha_mask(image: Image.Image) -> Image.Image | None:
    """The upright photo's alpha channel as a mask, when it has one that hides something."""
    if image.mode not in ("RGBA", "LA", "PA", "La", "RGBa") and "transparency" not in image.info:
        return None
    alpha = ImageOps.exif_transpose(image).convert("RGBA").getchannel("A")
    return alpha if alpha.getextrema()[0] < 255 else None


def read_mask_file(path: Path, photo: Image.Image) -> Image.Image:
    """The mask in ``path`` as L, checked against the upright photo; ValueError names what is wrong."""
    try:
        with Image.open(path) as opened:
            opened.load()
            mask = opened.convert("L")
    except (OSError, SyntaxError, ValueError) as exc:
        raise ValueError(f"its mask {path.name} cannot be read ({exc}); save it again as a grey-scale PNG") from None
    upright = ImageOps.exif_transpose(photo).size
    if mask.size != upright:
        raise ValueError(
            f"its mask {path.name} is {mask.width}x{mask.height} but the photo is {upright[0]}x{upright[1]}; "
            "save the mask at the photo's size"
        )
    return mask


def subject_mask(photo_path: Path, photo: Image.Image, image_suffixes: set[str]) -> tuple[Image.Image | None, str]:
    """(mask or None, where it came from); ValueError when a mask is there but unusable."""
    side_file = mask_file_for(photo_path, image_suffixes)
    if side_file is not None:
        mask, source = read_mask_file(side_file, photo), side_file.name
    else:
        mask, source = alpha_mask(photo), "alpha channel"
        if mask is None:
            return None, ""
    if mask.getextrema()[1] == 0:
        raise ValueError(f"its mask ({source}) is empty (all black); paint the subject white")
    return mask, source
