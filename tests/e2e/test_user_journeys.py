"""The README's journeys as a new user walks them, with what went wrong before (issue 11)."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from dreamtune import config
from dreamtune.data.prepare import PrepareOptions, prepare
from dreamtune.errors import UserError
from dreamtune.training.run import train
from tests.conftest import make_photos, tiny_overrides

ROOT = Path(__file__).resolve().parents[2]
DEAD_HUB_IDS = (
    "runwayml/stable-diffusion-v1-5",
    "stabilityai/stable-diffusion-2-1",
    "stabilityai/stable-diffusion-2-base",
    "CompVis/stable-diffusion-v1-4",
)


def _quiet(cfg):
    return train(cfg, show_progress=False, log=lambda *_: None)


def test_no_shipped_file_names_a_hub_id_that_was_removed():
    shipped = [
        ROOT / "README.md",
        *(ROOT / "docs").glob("*.md"),
        *(ROOT / "configs").rglob("*.yaml"),
        *(ROOT / "dreamtune").rglob("*.py"),
    ]
    for path in shipped:
        text = path.read_text(encoding="utf-8")
        assert not [dead for dead in DEAD_HUB_IDS if dead in text], path


def test_fp16_on_a_machine_without_cuda_is_one_sentence_naming_bf16(tiny_models, photos, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: fp16 is valid here")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "dreamtune.cli",
            "train",
            "configs/lora-sd15.yaml",
            *tiny_overrides(tiny_models["sd1"], photos, tmp_path / "run", **{"train.mixed_precision": "fp16"}),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "train.mixed_precision=bf16" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "run" / "class_images").exists()  # refused before any work


def test_prepared_folder_at_another_resolution_is_prepared_again(tiny_models, photos, tmp_path):
    prepared = tmp_path / "prepared"
    prepare(photos, prepared, PrepareOptions(resolution=48, caption="a photo of sks dog"))
    before = hashlib.sha256((prepared / "metadata.jsonl").read_bytes()).hexdigest()
    overrides = tiny_overrides(
        tiny_models["sd1"],
        prepared,
        tmp_path / "run",
        **{"data.resolution": 32, "prior.enabled": True, "prior.class_prompt": "a photo of dog"},
    )
    messages = []
    train(config.load(None, overrides), show_progress=False, log=messages.append)
    assert any("generating 2 class image(s) of 'a photo of dog' at 32 px, 2 ddim steps each" in m for m in messages)
    sizes = {Image.open(p).size for p in (tmp_path / "run" / "data" / "images").iterdir()}
    class_sizes = {Image.open(p).size for p in (tmp_path / "run" / "class_images" / "images").iterdir()}
    assert sizes == {(32, 32)} and class_sizes == {(32, 32)}
    assert (
        hashlib.sha256((prepared / "metadata.jsonl").read_bytes()).hexdigest() == before
    )  # the user's folder untouched


def test_prepared_folder_at_another_resolution_without_its_source_is_refused(tiny_models, tmp_path):
    photos = make_photos(tmp_path / "photos")
    prepare(photos, tmp_path / "prepared", PrepareOptions(resolution=48, caption="a photo of sks dog"))
    for file in photos.iterdir():
        file.unlink()
    photos.rmdir()
    with pytest.raises(UserError, match="prepared at 48 px but data.resolution is 32"):
        _quiet(config.load(None, tiny_overrides(tiny_models["sd1"], tmp_path / "prepared", tmp_path / "run")))


def test_generated_class_images_at_another_resolution_are_refused(tiny_models, photos, tmp_path):
    overrides = tiny_overrides(
        tiny_models["sd1"],
        photos,
        tmp_path / "run",
        **{
            "prior.class_dir": str(tmp_path / "classes"),
            "prior.enabled": True,
            "prior.class_prompt": "a photo of dog",
            "data.instance_prompt": "a photo of sks dog",
        },
    )
    _quiet(config.load(None, overrides))
    with pytest.raises(UserError, match="generated at 32 px but training runs at 48 px"):
        _quiet(config.load(None, overrides + ["data.resolution=48", f"train.output_dir={tmp_path / 'run2'}"]))


def test_textual_inversion_whose_captions_lack_the_placeholder_is_refused_before_step_one(
    tiny_models, photos, tmp_path
):
    prepared = tmp_path / "prepared"
    prepare(photos, prepared, PrepareOptions(resolution=32, caption="a photo of sks dog"))  # the README's prepare step
    overrides = tiny_overrides(
        tiny_models["sd1"],
        prepared,
        tmp_path / "run",
        **{"method.kind": "textual_inversion", "data.instance_prompt": "a photo of <sks> dog"},
    )
    with pytest.raises(UserError, match="none of the captions .* contains it"):
        _quiet(config.load(None, overrides))
    assert not (tmp_path / "run" / "model").exists() and not (tmp_path / "run" / "metrics.jsonl").exists()


def test_prior_preservation_without_an_identifier_is_refused(tiny_models, photos, tmp_path):
    overrides = tiny_overrides(
        tiny_models["sd1"],
        photos,
        tmp_path / "run",
        **{"prior.enabled": True, "prior.class_prompt": "a photo of dog", "data.instance_prompt": "a photo of dog"},
    )
    with pytest.raises(UserError, match="nothing tells the subject from its class"):
        _quiet(config.load(None, overrides))


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


@pytest.mark.parametrize("prepared_first", [False, True])
def test_real_regularization_photos_are_used_and_left_untouched(tiny_models, photos, tmp_path, prepared_first):
    real = make_photos(tmp_path / "real_dogs", count=3, seed=7)
    if prepared_first:
        prepare(real, tmp_path / "real_prepared", PrepareOptions(resolution=48, caption="a photo of dog"))
        real = tmp_path / "real_prepared"
    before = {p: p.read_bytes() for p in real.rglob("*") if p.is_file()}
    overrides = tiny_overrides(
        tiny_models["sd1"],
        photos,
        tmp_path / "run",
        **{
            "prior.enabled": True,
            "prior.class_prompt": "a photo of dog",
            "prior.class_dir": str(real),
            "prior.num_class_images": 50,
            "data.instance_prompt": "a photo of sks dog",
        },
    )
    _quiet(config.load(None, overrides))
    assert {p: p.read_bytes() for p in real.rglob("*") if p.is_file()} == before  # nothing added, nothing changed
    used = tmp_path / "run" / "class_data"
    records = [json.loads(line) for line in (used / "metadata.jsonl").read_text().splitlines()]
    assert len(records) == 3 and {r["text"] for r in records} == {"a photo of dog"}
    assert {Image.open(used / r["file_name"]).size for r in records} == {(32, 32)}
    assert not (tmp_path / "run" / "class_images").exists()  # nothing generated


def test_class_dir_that_is_a_file_is_one_sentence(tiny_models, photos, tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    overrides = tiny_overrides(
        tiny_models["sd1"],
        photos,
        tmp_path / "run",
        **{
            "prior.enabled": True,
            "prior.class_prompt": "a photo of dog",
            "prior.class_dir": str(tmp_path / "notes.txt"),
            "data.instance_prompt": "a photo of sks dog",
        },
    )
    with pytest.raises(UserError, match="is a file"):
        _quiet(config.load(None, overrides))


def test_tensorboard_logs_every_log_every_steps(tiny_models, photos, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    overrides = tiny_overrides(
        tiny_models["sd1"],
        photos,
        tmp_path / "run",
        **{
            "train.steps": 6,
            "train.log_every": 3,
            "train.log_with": "tensorboard",
            "data.instance_prompt": "a photo of sks dog",
        },
    )
    _quiet(config.load(None, overrides))
    events = [p for p in (tmp_path / "run" / "logs").rglob("events.out.tfevents.*")]
    assert events
    steps = set()
    for file in events:
        accumulator = EventAccumulator(str(file))
        accumulator.Reload()
        if "loss" in accumulator.Tags()["scalars"]:
            steps |= {event.step for event in accumulator.Scalars("loss")}
    assert steps == {3, 6}


def test_recipes_are_found_by_name_from_any_folder(tiny_models, photos, tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "dreamtune.cli",
            "train",
            "lora-sd15",
            *tiny_overrides(tiny_models["sd1"], photos, tmp_path / "run", **{"prior.enabled": False}),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-1500:]
    assert (tmp_path / "run" / "model" / "pytorch_lora_weights.safetensors").is_file()
    shipped = config.load("miniature-lora")  # its model is the packaged miniature, from anywhere
    from dreamtune.models.loading import model_path

    assert (model_path(shipped.model.pretrained) / "model_index.json").is_file()


def test_model_card_and_offline_push_to_hub(tiny_models, photos, tmp_path):
    import os

    import yaml

    prepared = tmp_path / "prepared"
    prepare(photos, prepared, PrepareOptions(resolution=32, caption="a photo of sks dog"))
    overrides = tiny_overrides(
        tiny_models["sd1"],
        prepared,
        tmp_path / "run",
        **{"train.validate_every": 2, "train.validation_prompts": "[a photo of sks dog]", "train.validation_steps": 2},
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "dreamtune.cli", "train", *overrides, "--push-to-hub", "me/my-dog"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-1500:]
    assert "skipped pushing to the hub (HF_HUB_OFFLINE is set)" in result.stdout
    card = (tmp_path / "run" / "model" / "README.md").read_text()
    front = yaml.safe_load(card.split("---")[1])
    assert front["base_model"] == str(tiny_models["sd1"]) and front["instance_prompt"] == "a photo of sks dog"
    assert "lora" in front["tags"] and front["widget"][0]["output"]["url"] == "images/validation.png"
    assert (tmp_path / "run" / "model" / "images" / "validation.png").is_file()
    assert "run.safetensors" in card  # how to use the kohya file


def test_training_on_subject_masks_weighs_the_loss_and_a_full_background_weight_changes_nothing(tiny_models, tmp_path):
    photos = make_photos(tmp_path / "photos")
    for index, photo in enumerate(sorted(photos.glob("*.jpg"))):
        mask = Image.new("L", Image.open(photo).size, 0)
        mask.paste(255, (8 + index, 8, 30 + index, 30))  # the disc make_photos draws
        mask.save(photos / f"{photo.stem}.mask.png")

    def losses(name: str, *masks: str) -> list[float]:
        overrides = tiny_overrides(tiny_models["sd1"], photos, tmp_path / name, **{"train.steps": 3})
        cfg = config.load(None, [*overrides, "data.instance_prompt=a photo of sks dog", *masks])
        return [record["loss"] for record in _quiet(cfg).history]

    plain = losses("plain")
    assert losses("whole", "data.subject_masks=true", "data.background_weight=1") == pytest.approx(plain, rel=1e-5)
    subject_only = losses("subject", "data.subject_masks=true", "data.background_weight=0")
    assert all(abs(a - b) > 1e-4 * abs(b) for a, b in zip(subject_only, plain))
    assert "subject mask from photo0.mask.png" in (tmp_path / "subject" / "data" / "report.json").read_text()
