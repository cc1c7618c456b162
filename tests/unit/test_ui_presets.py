"""Issue 37: a base model typed on the Train page proposes its family's recipe and resolution (picking
SDXL once trained the miniature with SDXL's settings); recipes are grouped by what they need."""

import pytest

from dreamtune.errors import UserError
from dreamtune.ui.presets import FAMILY_RECIPES, preset, recipe_groups
from dreamtune.ui.safety import Access

LOCAL = Access("127.0.0.1", 0).local_path


@pytest.mark.parametrize(
    "family, recipe, resolution",
    [
        ("sd1", "lora-sd15", 512),
        ("sd2-v", "lora-sd2-v", 768),
        ("sdxl", "lora-sdxl", 1024),
        ("flux", "lora-flux1-dev", 1024),
    ],
)
def test_a_diffusers_folder_proposes_its_familys_recipe(tiny_models, family, recipe, resolution):
    found = preset(str(tiny_models[family]), LOCAL)
    assert (found["recipe"], found["resolution"]) == (recipe, resolution)
    assert "a diffusers folder" in found["note"] and recipe in found["note"]


def test_hub_ids_the_miniature_and_what_cannot_be_told():
    assert preset("stabilityai/stable-diffusion-xl-base-1.0", LOCAL)["recipe"] == "lora-sdxl"  # a recipe names it
    assert preset("black-forest-labs/FLUX.1-schnell", LOCAL)["recipe"] == "lora-flux1-dev"  # by its family's name
    assert preset("someone/RealVisXL_V5.0", LOCAL)["recipe"] == "lora-sdxl"
    assert preset("miniature", LOCAL) | {"note": ""} == {
        "family": "miniature",
        "recipe": "miniature-lora",
        "resolution": 64,
        "note": "",
    }
    unknown = preset("someone/my-model", LOCAL)
    assert unknown["recipe"] is None and "cannot tell its family offline" in unknown["note"]


def test_a_path_that_is_no_model_and_a_remote_ui_say_so(tmp_path):
    with pytest.raises(UserError, match="neither a diffusers folder"):
        preset(str(tmp_path), LOCAL)
    with pytest.raises(UserError, match="names a path on the server"):
        preset(str(tmp_path), Access("0.0.0.0", 0, auth="a:b").local_path)


def test_recipes_are_grouped_by_what_they_need_and_every_family_has_a_recipe():
    groups = recipe_groups()
    assert {"miniature-ddpo", "miniature-draft"} == set(groups["without photos: reward fine-tuning"])
    assert "lora-sdxl" in groups["with your photos"] and "miniature-lora" in groups["with your photos"]
    shipped = {name for names in groups.values() for name in names}
    assert set(FAMILY_RECIPES.values()) <= shipped
    from dreamtune.models.families import _all

    assert {f.name for f in _all()} | {"sd2-v"} == set(FAMILY_RECIPES)  # a new family needs its preset
