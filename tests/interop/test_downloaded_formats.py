"""What downloads look like: fp16 safetensors folders, ``variant="fp16"`` folders and
original-layout single files. Tiny models saved those ways (tests/conftest.py) must train with
every shipped recipe, and a full fine-tune must leave what it did not train byte-identical."""
from __future__ import annotations

import hashlib

import pytest
import torch

from dreamtune import config
from dreamtune.training.run import train
from tests.conftest import RECIPES, recipe_family, recipe_overrides, tiny_overrides

FORMATS = ("fp16", "variant", "single_file")


def _cpu_precision(recipe) -> str:
    """The recipe's precision, with fp16 (CUDA only) replaced by bf16 as the refusal tells CPU users."""
    precision = config.load(recipe).train.mixed_precision
    return "bf16" if precision == "fp16" else precision


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.stem)
def test_every_recipe_trains_on_each_downloaded_format(recipe, fmt, downloaded_models, tiny_models, photos, tmp_path):
    family = recipe_family(recipe)
    base = tiny_overrides(tiny_models[family], photos, tmp_path / "run", **{"train.mixed_precision": _cpu_precision(recipe)})
    cfg = config.load(recipe, recipe_overrides(recipe, base, tmp_path) + downloaded_models[family][fmt])
    result = train(cfg, show_progress=False, log=lambda *_: None)
    assert result.state.step == 2 and (result.model_dir / "dreamtune.json").is_file()
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in result.history if "loss" in r)


def _digests(folder):
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("fmt", ["fp16", "variant"])
def test_full_fine_tune_keeps_untrained_parts_byte_identical(fmt, downloaded_models, tiny_models, photos, tmp_path):
    from pathlib import Path

    from diffusers import DiffusionPipeline

    overrides = downloaded_models["sd1"][fmt]
    source = Path(overrides[0].split("=", 1)[1])
    cfg = config.load(None, tiny_overrides(tiny_models["sd1"], photos, tmp_path / "run", **{
        "method.kind": "dreambooth", "train.mixed_precision": "bf16", "data.instance_prompt": "a photo of sks dog"}) + overrides)
    model = train(cfg, show_progress=False, log=lambda *_: None).model_dir
    for part in ("vae", "text_encoder", "tokenizer", "scheduler"):
        plain = {k.replace(".fp16.", "."): v for k, v in _digests(source / part).items()}
        assert _digests(model / part) == plain, part
    unet_files = list((model / "unet").glob("*.safetensors"))
    assert unet_files and all(f.stat().st_size < 1.2 * sum(g.stat().st_size for g in (source / "unet").glob("*.safetensors"))
                              for f in unet_files)   # stored in fp16 as the base, not fp32
    pipeline = DiffusionPipeline.from_pretrained(str(model))
    assert pipeline.unet.dtype == torch.float32     # diffusers upcasts on load; the file holds fp16
    from dreamtune.models.full_export import stored_dtype
    assert stored_dtype(unet_files) == torch.float16


def test_full_fine_tune_from_a_single_file_exports_a_loadable_folder(downloaded_models, tiny_models, photos, tmp_path):
    from diffusers import DiffusionPipeline

    cfg = config.load(None, tiny_overrides(tiny_models["sdxl"], photos, tmp_path / "run", **{
        "method.kind": "dreambooth", "data.instance_prompt": "a photo of sks dog"}) + downloaded_models["sdxl"]["single_file"])
    model = train(cfg, show_progress=False, log=lambda *_: None).model_dir
    pipeline = DiffusionPipeline.from_pretrained(str(model))
    assert type(pipeline).__name__ == "StableDiffusionXLPipeline"
