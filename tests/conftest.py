"""Shared fixtures: tiny pipelines built in-process (nothing downloaded), photo folders."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from dreamtune.models.tiny import FAMILIES, FLOW_FAMILIES, build_tiny_pipeline

SHARED = Path(__file__).resolve().parents[2] / "shared"
DREAMBENCH = SHARED / "dreambench"

# The fast tier (make test-fast: pytest -m "not slow") leaves out what trains, samples or launches:
# these folders and files whole, and single slow tests marked @pytest.mark.slow where they are.
SLOW_FOLDERS = ("e2e", "interop", "failures")
SLOW_FILES = ("test_objective_contract.py",)


def pytest_collection_modifyitems(config, items):
    for item in items:
        parts = Path(str(item.fspath)).parts
        if any(folder in parts for folder in SLOW_FOLDERS) or parts[-1] in SLOW_FILES:
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session", autouse=True)
def shared_cache(tmp_path_factory):
    """The cross-run cache (generated class images) in a folder of this test session, never ~/.cache."""
    import os

    folder = tmp_path_factory.mktemp("dreamtune-cache")
    previous = os.environ.get("DREAMTUNE_CACHE")
    os.environ["DREAMTUNE_CACHE"] = str(folder)
    yield folder
    if previous is None:
        os.environ.pop("DREAMTUNE_CACHE", None)
    else:
        os.environ["DREAMTUNE_CACHE"] = previous


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny-models")
    return {family: build_tiny_pipeline(root / family, family) for family in FAMILIES}


def _save_as_downloads(source: Path, root: Path, family: str) -> dict[str, list[str]]:
    """``source`` saved the ways downloaded models come: an fp16 safetensors folder, an fp16
    ``variant`` folder (``*.fp16.safetensors``), and an original-layout fp16 single file with a
    weightless config folder (configs + tokenizers) beside it."""
    import shutil

    import torch
    from diffusers import DiffusionPipeline

    from dreamtune.models.single_file import save_single_file

    pipeline = DiffusionPipeline.from_pretrained(str(source))
    pipeline.to(torch.float16)
    pipeline.save_pretrained(root / "fp16", safe_serialization=True)
    pipeline.save_pretrained(root / "variant", safe_serialization=True, variant="fp16")
    formats = {
        "fp16": [f"model.pretrained={root / 'fp16'}"],
        "variant": [f"model.pretrained={root / 'variant'}", "model.variant=fp16"],
    }
    if (
        family in FLOW_FAMILIES
    ):  # their single files hold the transformer alone; refused with a sentence (test_flow_families)
        return formats
    single = save_single_file(pipeline, root / "model.safetensors")
    configs = shutil.copytree(source, root / "configs", ignore=shutil.ignore_patterns("*.safetensors"))
    return {**formats, "single_file": [f"model.pretrained={single}", f"model.config={configs}"]}


@pytest.fixture(scope="session")
def downloaded_models(tiny_models, tmp_path_factory) -> dict[str, dict[str, list[str]]]:
    """family -> format -> the model.* overrides that point at it (see ``_save_as_downloads``)."""
    root = tmp_path_factory.mktemp("downloaded")
    return {family: _save_as_downloads(path, root / family, family) for family, path in tiny_models.items()}


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


def settings_of(cls, *sections: str, **explicit):
    """A settings dataclass filled from the default config's ``sections`` (e.g. "rl", "data") the way the
    assembly fills it (training/assembly.settings_from), with ``explicit`` values on top."""
    from dreamtune.config import Config
    from dreamtune.training.assembly import settings_from

    defaults = Config()
    return settings_from(cls, *(getattr(defaults, name) for name in sections), **explicit)


def print_quality_rollouts(components, **explicit):
    """A DDPO rollout source scoring print quality, its settings from the default config plus ``explicit``."""
    from dreamtune.rewards.base import WeightedRewards
    from dreamtune.rewards.print_quality import PrintQuality
    from dreamtune.training.rollouts import RolloutSettings, RolloutSource

    settings = settings_of(RolloutSettings, "rl", "train", "data", **explicit)
    return RolloutSource(components, WeightedRewards([(1.0, PrintQuality())]), settings)


def tiny_overrides(model: Path, photos: Path, output: Path, **extra) -> list[str]:
    """Dotted overrides that make any recipe run on a tiny model in a second or two."""
    values = {
        "model.pretrained": str(model),
        "data.instance_dir": str(photos),
        "data.resolution": 32,
        "train.output_dir": str(output),
        "train.steps": 2,
        "prior.num_class_images": 2,
        "prior.sample_steps": 2,
        "train.validation_steps": 2,
        "train.mixed_precision": "no",
        "train.gradient_checkpointing": False,
    }
    values.update(extra)
    return [f"{key}={value}" for key, value in values.items()]


ROOT = Path(__file__).resolve().parents[1]
RECIPES = sorted((ROOT / "configs").glob("*.yaml"))


def recipe_family(recipe: Path) -> str:
    for marker, family in (
        ("sdxl", "sdxl"),
        ("sd2", "sd2-v"),
        ("sd3", "sd3"),
        ("flux2-klein", "flux2-klein"),
        ("flux", "flux"),
        ("z-image", "z-image"),
        ("qwen-image", "qwen-image"),
    ):
        if marker in recipe.stem:
            return family
    return "sd1"


def recipe_overrides(recipe: Path, overrides: list[str], tmp_path: Path) -> list[str]:
    """Overrides that make a shipped recipe run 2 steps on a tiny model: tiny feature models
    (the shipped CLIPs are not tiny), 2-step monitor and rollouts."""
    from dreamtune import config
    from dreamtune.models.tiny import build_tiny_feature_models

    shipped = config.load(recipe, overrides)
    overrides = list(overrides)
    clip = build_tiny_feature_models(tmp_path / "features")["clip"]
    if shipped.adversarial.weight:
        overrides.append(f"adversarial.features={clip}")
    if shipped.monitor.every:
        overrides += [f"monitor.clip={clip}", "monitor.every=2", "monitor.sample_steps=2", "monitor.seeds=[0]"]
    if shipped.distill.steps:
        overrides += ["distill.pool=4", "distill.teacher_steps=6"]
    if shipped.rl.algorithm:
        overrides += ["rl.sample_steps=2", "rl.samples_per_round=4", "rl.images_per_prompt=2", "train.batch_size=4"]
    return overrides


def train_killed_at(cfg, step: int, monkeypatch) -> None:
    """Run ``train(cfg)`` until it is about to take ``step`` (0-based), then kill it as a dying machine
    would (KeyboardInterrupt out of the loop, no checkpoint of its own)."""
    from dreamtune.training import loop
    from dreamtune.training.run import train

    real_step = loop.run_step

    def crash(objective, source, state, accelerator, settings):
        if state.step == step:
            raise KeyboardInterrupt
        return real_step(objective, source, state, accelerator, settings)

    monkeypatch.setattr(loop, "run_step", crash)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, show_progress=False, log=lambda *_: None)
    monkeypatch.setattr(loop, "run_step", real_step)
