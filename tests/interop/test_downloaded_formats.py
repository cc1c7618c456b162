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
    if fmt not in downloaded_models[family]:
        pytest.skip(f"{family} is not distributed as a whole-pipeline single file")
    base = tiny_overrides(
        tiny_models[family], photos, tmp_path / "run", **{"train.mixed_precision": _cpu_precision(recipe)}
    )
    cfg = config.load(recipe, recipe_overrides(recipe, base, tmp_path) + downloaded_models[family][fmt])
    result = train(cfg, show_progress=False, log=lambda *_: None)
    assert result.state.step == 2 and (result.model_dir / "dreamtune.json").is_file()
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in result.history if "loss" in r)


def _digests(folder):
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.mark.parametrize("fmt", ["fp16", "variant"])
def test_full_fine_tune_keeps_untrained_parts_byte_identical(fmt, downloaded_models, tiny_models, photos, tmp_path):
    from pathlib import Path

    from diffusers import DiffusionPipeline

    overrides = downloaded_models["sd1"][fmt]
    source = Path(overrides[0].split("=", 1)[1])
    cfg = config.load(
        None,
        tiny_overrides(
            tiny_models["sd1"],
            photos,
            tmp_path / "run",
            **{
                "method.kind": "dreambooth",
                "train.mixed_precision": "bf16",
                "train.memory": "manual",  # bf16 compute itself, also on CPUs without bf16 instructions
                "data.instance_prompt": "a photo of sks dog",
            },
        )
        + overrides,
    )
    model = train(cfg, show_progress=False, log=lambda *_: None).model_dir
    for part in ("vae", "text_encoder", "tokenizer", "scheduler"):
        plain = {k.replace(".fp16.", "."): v for k, v in _digests(source / part).items()}
        assert _digests(model / part) == plain, part
    unet_files = list((model / "unet").glob("*.safetensors"))
    assert unet_files and all(
        f.stat().st_size < 1.2 * sum(g.stat().st_size for g in (source / "unet").glob("*.safetensors"))
        for f in unet_files
    )  # stored in fp16 as the base, not fp32
    pipeline = DiffusionPipeline.from_pretrained(str(model))
    assert pipeline.unet.dtype == torch.float32  # diffusers upcasts on load; the file holds fp16
    from dreamtune.models.full_export import stored_dtype

    assert stored_dtype(unet_files) == torch.float16


def test_full_fine_tune_from_a_single_file_exports_a_loadable_folder(downloaded_models, tiny_models, photos, tmp_path):
    from diffusers import DiffusionPipeline

    cfg = config.load(
        None,
        tiny_overrides(
            tiny_models["sdxl"],
            photos,
            tmp_path / "run",
            **{"method.kind": "dreambooth", "data.instance_prompt": "a photo of sks dog"},
        )
        + downloaded_models["sdxl"]["single_file"],
    )
    model = train(cfg, show_progress=False, log=lambda *_: None).model_dir
    pipeline = DiffusionPipeline.from_pretrained(str(model))
    assert type(pipeline).__name__ == "StableDiffusionXLPipeline"


@pytest.mark.parametrize("family", ["sd1", "sdxl"])
def test_export_single_file_loads_back_in_diffusers(family, tiny_models, photos, tmp_path):
    import subprocess
    import sys

    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

    cfg = config.load(
        None,
        tiny_overrides(
            tiny_models[family],
            photos,
            tmp_path / "run",
            **{"method.kind": "dreambooth", "data.instance_prompt": "a photo of sks dog"},
        ),
    )
    result = train(cfg, show_progress=False, log=lambda *_: None)
    command = [
        sys.executable,
        "-m",
        "dreamtune.cli",
        "export",
        str(result.model_dir),
        "--single-file",
        "--dtype",
        "fp32",
    ]
    done = subprocess.run(command, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-1500:]
    single = tmp_path / "run" / "run.safetensors"
    cls = StableDiffusionXLPipeline if family == "sdxl" else StableDiffusionPipeline
    loaded = cls.from_single_file(str(single), config=str(result.model_dir), local_files_only=True)
    trained = result.components.denoiser.state_dict()
    assert all(torch.equal(trained[k].float(), v.float()) for k, v in loaded.unet.state_dict().items())
    again = subprocess.run(command, capture_output=True, text=True)  # never overwrites
    assert again.returncode == 2 and "already exists" in again.stderr


def test_single_file_mistakes_are_one_sentence(downloaded_models, tiny_models, photos, tmp_path):
    import os
    import subprocess
    import sys

    from safetensors.torch import save_file

    single = downloaded_models["sd1"]["single_file"][0]
    save_file({"lora_unet_x.lora_down.weight": torch.zeros(2, 2)}, str(tmp_path / "a_lora.safetensors"))
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    cases = [
        ([single], "pass model.config=FOLDER"),  # a tiny model: the inferred SD 1.5 configs do not fit
        (
            [f"model.pretrained={tmp_path / 'a_lora.safetensors'}"],
            "not a Stable Diffusion 1.x/2.x/SDXL single-file checkpoint",
        ),
    ]
    for model, fragment in cases:
        overrides = tiny_overrides(
            tiny_models["sd1"], photos, tmp_path / "run", **{"data.instance_prompt": "a photo of sks dog"}
        )
        done = subprocess.run(
            [sys.executable, "-m", "dreamtune.cli", "train", *overrides, *model],
            capture_output=True,
            text=True,
            env=env,
        )
        assert done.returncode == 2 and fragment in done.stderr and "Traceback" not in done.stderr, done.stderr[-800:]
        assert len(done.stderr.strip().splitlines()) == 1


def test_offline_clip_tokenizer_gives_openai_token_ids(tmp_path):
    """Reference ids of OpenAI's CLIP tokenizer (as SD 1.x/2.x/SDXL use it), e.g. Apple's
    ml-stable-diffusion tokenizer tests and open_clip's SimpleTokenizer docs."""
    from transformers import CLIPTokenizer

    from dreamtune.models.known_configs import clip_bpe_files

    tokenizer = CLIPTokenizer.from_pretrained(str(clip_bpe_files(tmp_path / "tok", "<|endoftext|>")))
    assert len(tokenizer) == 49408
    assert tokenizer("a photo of an astronaut riding a horse on mars").input_ids == [
        49406,
        320,
        1125,
        539,
        550,
        18376,
        6765,
        320,
        4558,
        525,
        7496,
        49407,
    ]
    assert tokenizer("the black dog").input_ids == [49406, 518, 1449, 1929, 49407]
    assert tokenizer("Apple CoreML developer tools on a Macbook Air are fast").input_ids == [
        49406,
        3055,
        19622,
        5780,
        10929,
        5771,
        525,
        320,
        20617,
        1922,
        631,
        1953,
        49407,
    ]


def test_sd2_single_file_without_configs_is_refused_not_guessed(downloaded_models, tiny_models, photos, tmp_path):
    single = downloaded_models["sd2-v"]["single_file"][0]
    cfg = config.load(
        None,
        tiny_overrides(tiny_models["sd2-v"], photos, tmp_path / "run", **{"data.instance_prompt": "a photo of sks dog"})
        + [single],
    )
    from dreamtune.errors import UserError

    with pytest.raises(UserError, match="same weight shapes"):
        train(cfg, show_progress=False, log=lambda *_: None)


@pytest.mark.parametrize("method", ["lora", "textual_inversion"])
def test_generate_with_a_result_trained_on_a_single_file(method, downloaded_models, tiny_models, photos, tmp_path):
    import numpy as np
    from PIL import Image

    from dreamtune.sampling.generate import GenerateRequest, generate

    prompt = "a photo of <sks> dog" if method == "textual_inversion" else "a photo of sks dog"
    cfg = config.load(
        None,
        tiny_overrides(
            tiny_models["sd1"],
            photos,
            tmp_path / "run",
            **{"method.kind": method, "data.instance_prompt": prompt, "train.lr": 1e-2, "train.steps": 3},
        )
        + downloaded_models["sd1"]["single_file"],
    )
    result = train(cfg, show_progress=False, log=lambda *_: None)
    common = dict(prompts=(prompt,), steps=3, guidance_scale=3.0, resolution=32, seed=1)
    tuned = generate(GenerateRequest(trained=str(result.model_dir), **common), tmp_path / "tuned", show_progress=False)
    assert (
        tuned["trained"]["base_model"] == cfg.model.pretrained and tuned["trained"]["base_config"] == cfg.model.config
    )
    # the same base as a diffusers folder, with the same trained result: the same picture
    folder = generate(
        GenerateRequest(trained=str(result.model_dir), base_model=str(tiny_models["sd1"]), **common),
        tmp_path / "folder",
        show_progress=False,
    )
    image = lambda out, record: np.asarray(Image.open(out / record["images"][0]["file"]), dtype=np.float32)
    assert (
        np.abs(image(tmp_path / "tuned", tuned) - image(tmp_path / "folder", folder)).mean() < 2.0
    )  # fp16 file vs fp32 folder
