"""``dreamtune evaluate``: the DreamBooth paper's metrics for one folder of generations.

Inputs are what dreamtune already writes: a ``generate`` output folder (generations.json +
PNGs), the subject's real photos, and optionally a second ``generate`` folder of class-prompt
generations of the personalized model (for PRES).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from dreamtune.errors import UserError
from dreamtune.evaluation.features import ClipFeatures, DinoFeatures
from dreamtune.evaluation.metrics import diversity, preservation, prompt_fidelity, subject_fidelity

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp"}


@dataclass
class FeatureSet:
    clip: ClipFeatures
    dino: DinoFeatures | None = None
    note: str = ""  # e.g. "mini-CLIP stands in for OpenAI CLIP; no DINO model available"

    def describe(self) -> str:
        parts = [
            f"CLIP-I/CLIP-T: {self.clip.name}",
            f"DINO: {self.dino.name}" if self.dino else "DINO: not reported (no DINO model)",
            f"DIV on {'DINO' if self.dino else 'CLIP'} features (1 - cosine; the paper uses LPIPS)",
        ]
        return "; ".join(parts + ([self.note] if self.note else []))


def strip_identifier(prompt: str, identifier: str) -> str:
    """'a sks dog on the beach' -> 'a dog on the beach' (CLIP-T is scored without the identifier)."""
    if not identifier:
        return prompt
    return re.sub(r"\s+", " ", re.sub(rf"(?<!\S){re.escape(identifier)}(?!\S)", " ", prompt)).strip()


def read_generations(folder: Path) -> tuple[list[Image.Image], list[dict]]:
    record_path = Path(folder) / "generations.json"
    if not record_path.is_file():
        raise UserError(f"{folder} has no generations.json; pass a folder written by dreamtune generate.")
    records = json.loads(record_path.read_text())["images"]
    return [Image.open(Path(folder) / r["file"]).convert("RGB") for r in records], records


def read_photos(folder: Path) -> list[Image.Image]:
    paths = (
        sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if Path(folder).is_dir()
        else []
    )
    if not paths:
        raise UserError(f"no subject photos found in {folder}; pass the folder of the subject's real images.")
    return [Image.open(p).convert("RGB") for p in paths]


def score(
    images: list[Image.Image],
    prompts: list[str],
    real: list[Image.Image],
    features: FeatureSet,
    class_images: list[Image.Image] | None = None,
) -> dict:
    """CLIP-I, CLIP-T (against ``prompts``, already without identifier), DINO, DIV, PRES."""
    clip_generated, clip_real = features.clip.images(images), features.clip.images(real)
    result = {
        "images": len(images),
        "clip_i": subject_fidelity(clip_generated, clip_real),
        "clip_t": prompt_fidelity(clip_generated, features.clip.texts(prompts)),
    }
    diversity_features = clip_generated
    if features.dino is not None:
        dino_generated, dino_real = features.dino.images(images), features.dino.images(real)
        result["dino"] = subject_fidelity(dino_generated, dino_real)
        diversity_features = dino_generated
    result["div"] = diversity(diversity_features, prompts)
    if class_images:
        pres_features = features.dino or features.clip
        result["pres"] = preservation(pres_features.images(class_images), pres_features.images(real))
    return result


def evaluate(
    generated: Path, real: Path, features: FeatureSet, identifier: str = "sks", class_generated: Path | None = None
) -> dict:
    images, records = read_generations(generated)
    prompts = [strip_identifier(r["prompt"], identifier) for r in records]
    class_images = read_generations(class_generated)[0] if class_generated else None
    result = score(images, prompts, read_photos(real), features, class_images)
    result["features"] = features.describe()
    # what was compared with what, so a metrics file names the subject it measured
    result.update(generated=str(generated), subject_photos=str(real), identifier=identifier)
    if class_generated:
        result["class_generated"] = str(class_generated)
    return result


def load_features(clip: str | None = None, dino: str | None = None, model_dir: str | Path | None = None) -> FeatureSet:
    """CLIP: ``clip``, else the model's own clip/ (the miniature's), else OpenAI's ViT-B/32.
    DINO: ``dino`` ('none' disables), else facebook/dino-vits16 when it is available; never on
    the miniature (its 64 px world is outside DINO's domain; the mini CLIP stands in)."""
    from dreamtune.evaluation.features import DEFAULT_CLIP, DEFAULT_DINO, load_clip, load_dino

    own = Path(model_dir) / "clip" if model_dir else None
    note = ""
    if clip:
        clip_features = load_clip(clip, name=str(clip))
    elif own is not None and (own / "config.json").is_file():
        clip_features = load_clip(own, name="mini-CLIP")
        note = "the miniature's own CLIP stands in for OpenAI CLIP (offline)"
    else:
        clip_features = load_clip(DEFAULT_CLIP, name=DEFAULT_CLIP)
    dino_features = None
    if dino and dino.lower() != "none":
        dino_features = load_dino(dino, name=str(dino))
    elif dino is None and not note:
        try:
            dino_features = load_dino(DEFAULT_DINO, name=DEFAULT_DINO)
        except UserError as exc:
            note = f"DINO skipped: {exc}"
    return FeatureSet(clip_features, dino_features, note)
