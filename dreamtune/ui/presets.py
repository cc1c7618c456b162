"""Presets: from the base model a user types (the miniature, a local diffusers folder or single file, a hub
id) to the family it belongs to and the shipped recipe made for that family, with its resolution — so
choosing SDXL proposes the SDXL recipe at 1024 px instead of training with the miniature's settings.

Folders and single files are detected the way loading detects them (``model_index.json``'s pipeline
class; the single file's key layout). A hub id cannot be opened offline: it is matched to the recipe that
names it, else by the family's usual name in the id, else the page says it cannot tell."""

from __future__ import annotations

import json
import re
from pathlib import Path

from dreamtune import config
from dreamtune.errors import UserError
from dreamtune.recipes import recipe_names

MINIATURE_RECIPE = "miniature-lora"
FAMILY_RECIPES = {  # a model family's name (models/families) -> the shipped LoRA recipe made for it
    "sd": "lora-sd15",
    "sd2-v": "lora-sd2-v",
    "sdxl": "lora-sdxl",
    "sd3": "lora-sd35",
    "flux": "lora-flux1-dev",
    "flux2-klein": "lora-flux2-klein",
    "z-image": "lora-z-image",
    "qwen-image": "lora-qwen-image",
}
V_PREDICTION_PRESETS = {"sd": "sd2-v"}  # a family whose v-prediction models have a recipe of their own
HUB_NAMES = (  # words in a hub id -> family, most specific first
    (re.compile(r"flux\.?2", re.I), "flux2-klein"),
    (re.compile(r"flux", re.I), "flux"),
    (re.compile(r"qwen-image", re.I), "qwen-image"),
    (re.compile(r"z-image", re.I), "z-image"),
    (re.compile(r"stable-diffusion-3|sd3", re.I), "sd3"),
    (re.compile(r"xl", re.I), "sdxl"),
    (re.compile(r"stable-diffusion-2|sd2", re.I), "sd2-v"),
    (re.compile(r"stable-diffusion|v1-5|sd15|sd-1", re.I), "sd"),
)


def recipe_groups() -> dict[str, list[str]]:
    """The shipped recipes grouped by what they need: photos of a subject, or none (reward fine-tuning)."""
    groups: dict[str, list[str]] = {"with your photos": [], "without photos: reward fine-tuning": []}
    for name in (n for n in recipe_names() if "/" not in n):  # not the miniature's pretraining stages
        rewarded = bool(config.load(name).rl.algorithm)
        groups["without photos: reward fine-tuning" if rewarded else "with your photos"].append(name)
    return groups


def _folder_family(folder: Path) -> str:
    from dreamtune.models.families import family_for

    index = json.loads((folder / "model_index.json").read_text(encoding="utf-8"))
    family = family_for(index).name
    scheduler = folder / "scheduler" / "scheduler_config.json"
    predicts = json.loads(scheduler.read_text(encoding="utf-8")).get("prediction_type") if scheduler.is_file() else None
    return V_PREDICTION_PRESETS.get(family, family) if str(predicts).startswith("v_") else family


def _hub_family(hub_id: str) -> str | None:
    for family, recipe in FAMILY_RECIPES.items():
        if config.load(recipe).model.pretrained == hub_id:
            return family
    return next((family for pattern, family in HUB_NAMES if pattern.search(hub_id)), None)


def preset(text: str, local_path) -> dict:
    """What the Train page proposes for base model ``text``: family, recipe, resolution and a note in words.
    ``local_path(text, what)`` resolves a path typed by the user (refused off loopback)."""
    from dreamtune.models.single_file import is_single_file, single_file_family
    from dreamtune.ui.safety import HUB_ID

    text = (text or "").strip()
    if text in ("", "miniature"):
        family, source = "miniature", "the embedded miniature"
    elif HUB_ID.match(text) and not Path(text).expanduser().exists():
        family, source = _hub_family(text), "a hub id (named, not opened: offline)"
    else:
        path = local_path(text, "the base model")
        if path.is_dir() and (path / "model_index.json").is_file():
            family, source = _folder_family(path), "a diffusers folder"
        elif path.is_file() and is_single_file(path):
            family, source = single_file_family(path).name, "a single file"
        else:
            raise UserError(
                f"the base model {path} is neither a diffusers folder (with model_index.json) nor a "
                ".safetensors single file; pick one of those, or type a hub id."
            )
    if family is None:
        return {
            "family": None,
            "recipe": None,
            "resolution": None,
            "note": f"{text}: cannot tell its family offline; pick the recipe.",
        }
    recipe = {**FAMILY_RECIPES, "miniature": MINIATURE_RECIPE}[family]
    resolution = config.load(recipe).data.resolution
    return {
        "family": family,
        "recipe": recipe,
        "resolution": resolution,
        "note": f"{source}, family {family}: recipe {recipe} at {resolution} px proposed",
    }
