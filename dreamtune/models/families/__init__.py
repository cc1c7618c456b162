"""Model families: the objects that know how to load, condition, run and export each kind of
model (see ``base.ModelFamily``). ``family_for(index)`` picks one from ``model_index.json``."""

from __future__ import annotations

from dreamtune.errors import UserError
from dreamtune.models.families.base import ModelFamily
from dreamtune.models.families.stable_diffusion import StableDiffusion, StableDiffusionXL


def _all() -> list[ModelFamily]:
    from dreamtune.models.families.flow import Flux, Flux2Klein, StableDiffusion3
    from dreamtune.models.families.qwen_image import QwenImage
    from dreamtune.models.families.z_image import ZImage

    return [StableDiffusion(), StableDiffusionXL(), StableDiffusion3(), Flux(), Flux2Klein(), ZImage(), QwenImage()]


def family_named(name: str) -> ModelFamily:
    for family in _all():
        if family.name == name:
            return family
    raise KeyError(name)


def family_for(index: dict) -> ModelFamily:
    """The family of a model folder from its ``model_index.json`` contents."""
    class_name = index.get("_class_name", "")
    for family in _all():
        if class_name in family.pipeline_classes:
            return family
    if "text_encoder_2" in index and "unet" in index:
        return StableDiffusionXL()
    if "unet" in index or not class_name:
        return StableDiffusion()
    names = ", ".join(c for f in _all() for c in f.pipeline_classes[:1])
    raise UserError(f"the model is a {class_name}, which dreamtune does not train; it trains {names}.")


__all__ = ["ModelFamily", "family_for", "family_named", "StableDiffusion", "StableDiffusionXL"]
