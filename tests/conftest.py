"""Shared fixtures: tiny pipelines built in-process (nothing downloaded), photo folders."""
from __future__ import annotations

import random
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from dreamtune.models.tiny import build_tiny_pipeline

SHARED = Path(__file__).resolve().parents[2] / "shared"
DREAMBENCH = SHARED / "dreambench"


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny-models")
    return {family: build_tiny_pipeline(root / family, family) for family in ("sd1", "sd2-v", "sdxl")}


def make_photos(folder: Path, count: int = 4, size=(48, 40), seed: int = 0) -> Path:
    """Small distinct JPEG 'photos' of a green disc on coloured backgrounds."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        image = Image.new("RGB", size, (rng.randint(0, 255), rng.randint(0, 255), rng.randint(0, 255)))
        ImageDraw.Draw(image).ellipse((8 + index, 8, 30 + index, 30), fill=(20, 200, 20))
        image.save(folder / f"photo{index}.jpg", quality=95)
    return folder


@pytest.fixture
def photos(tmp_path) -> Path:
    return make_photos(tmp_path / "photos")


def tiny_overrides(model: Path, photos: Path, output: Path, **extra) -> list[str]:
    """Dotted overrides that make any recipe run on a tiny model in a second or two."""
    values = {"model.pretrained": str(model), "data.instance_dir": str(photos), "data.resolution": 32,
              "train.output_dir": str(output), "train.steps": 2, "prior.num_class_images": 2,
              "prior.sample_steps": 2, "train.validation_steps": 2, "train.mixed_precision": "no",
              "train.gradient_checkpointing": False}
    values.update(extra)
    return [f"{key}={value}" for key, value in values.items()]
