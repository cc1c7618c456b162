"""LoRA on a quantized frozen base (model.quantize, issue 32): int8 / fp8 / nf4 weights through
torchao while loading. The run trains like the bf16 one, exports the same files (PEFT and kohya keys,
shapes), those files load on the *unquantized* base in diffusers' own loader, and a resumed run is
bit-identical to an uninterrupted one."""

import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from dreamtune import config
from dreamtune.training.run import train
from tests.conftest import ROOT, tiny_overrides, train_killed_at
from tests.e2e.test_resume_and_failures import RESUME_SETTINGS

pytest.importorskip(
    "torchao", reason="model.quantize needs torchao (pip install 'dreamtune[quantize]'; make test installs it)"
)

SETTINGS = {
    "data.instance_prompt": "a photo of sks dog",
    "train.steps": 6,
    "train.lr": 5e-3,
    "train.mixed_precision": "bf16",
    "train.memory": "manual",  # bf16 compute itself, also on CPUs without bf16 instructions
    "train.log_every": 1,
    "prior.enabled": False,
}
# bf16 activations on 32-px tiny models: the weight formats' rounding moves a step's loss by under 1 %
# for 8-bit weights (measured 0.02-0.05 %) and under 3 % for 4-bit ones (0.03 %); a LoRA that failed
# to train on the quantized layers would move it far more (the loss falls ~10 % over these 6 steps)
LOSS_TOLERANCE = {"int8": 0.01, "fp8": 0.01, "nf4": 0.03}


def _run(tiny_models, photos, out, family="sd1", **extra):
    messages = []
    cfg = config.load(None, tiny_overrides(tiny_models[family], photos, out, **{**SETTINGS, **extra}))
    return train(cfg, show_progress=False, log=messages.append), messages


@pytest.fixture(scope="module")
def bf16_run(tiny_models, tmp_path_factory):
    from tests.conftest import make_photos

    root = tmp_path_factory.mktemp("bf16")
    return _run(tiny_models, make_photos(root / "photos"), root / "run")[0]


@pytest.mark.parametrize("kind", ["int8", "fp8", "nf4"])
def test_lora_on_a_quantized_base_trains_like_bf16_and_exports_the_same_files(
    tiny_models, photos, tmp_path, bf16_run, kind
):
    from diffusers import DiffusionPipeline

    result, messages = _run(
        tiny_models, photos, tmp_path / "run", **{"model.quantize": kind, "model.quantize_text_encoders": kind}
    )
    assert f"quantized frozen weights: denoiser {kind} (100 % of its linear layers, " in "\n".join(messages)
    assert f"text encoders {kind} (100 % of its linear layers, " in "\n".join(messages)
    ours = [r["loss"] for r in result.history]
    reference = [r["loss"] for r in bf16_run.history]
    assert max(abs(a - b) / b for a, b in zip(ours, reference)) < LOSS_TOLERANCE[kind], (ours, reference)
    for name in ("pytorch_lora_weights.safetensors", "run.safetensors"):  # PEFT file and kohya file
        a, b = load_file(str(result.model_dir / name)), load_file(str(bf16_run.model_dir / name))
        assert {k: v.shape for k, v in a.items()} == {k: v.shape for k, v in b.items()}
    pipeline = DiffusionPipeline.from_pretrained(str(tiny_models["sd1"]))  # the unquantized base, as users have it
    before = pipeline(
        ["a photo of sks dog"],
        num_inference_steps=2,
        height=32,
        width=32,
        output_type="pt",
        generator=torch.Generator().manual_seed(0),
    ).images
    pipeline.load_lora_weights(str(result.model_dir), weight_name="pytorch_lora_weights.safetensors")
    after = pipeline(
        ["a photo of sks dog"],
        num_inference_steps=2,
        height=32,
        width=32,
        output_type="pt",
        generator=torch.Generator().manual_seed(0),
    ).images
    assert torch.isfinite(after).all() and (after - before).abs().mean() > 1e-4  # loaded and applied


def test_resume_on_a_quantized_base_is_bit_identical(tiny_models, photos, tmp_path, monkeypatch):
    settings = {
        **RESUME_SETTINGS,
        "model.quantize": "int8",
        "model.quantize_text_encoders": "int8",
        "train.mixed_precision": "bf16",
        "train.memory": "manual",  # bf16 compute itself, also on CPUs without bf16 instructions
    }
    full = train(
        config.load(None, tiny_overrides(tiny_models["sd1"], photos, tmp_path / "full", **settings)),
        show_progress=False,
        log=lambda *_: None,
    )
    interrupted = config.load(None, tiny_overrides(tiny_models["sd1"], photos, tmp_path / "cut", **settings))
    train_killed_at(interrupted, 5, monkeypatch)
    resumed = train(interrupted, resume="latest", show_progress=False, log=lambda *_: None)
    a = load_file(str(full.model_dir / "pytorch_lora_weights.safetensors"))
    b = load_file(str(resumed.model_dir / "pytorch_lora_weights.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_flow_family_trains_a_lora_on_an_int8_transformer(tiny_models, photos, tmp_path):
    result, messages = _run(
        tiny_models,
        photos,
        tmp_path / "run",
        family="flux",
        **{"model.quantize": "int8", "model.quantize_text_encoders": "int8"},
    )
    assert any("denoiser int8 (100 %" in m for m in messages)
    assert (result.model_dir / "pytorch_lora_weights.safetensors").is_file() and result.state.step == 6


@pytest.mark.parametrize(
    "overrides, fragment",
    [
        (
            ["method.kind=dreambooth", "model.quantize=int8"],
            "quantizes frozen weights, but method dreambooth trains the denoiser's",
        ),
        (
            ["method.kind=textual_inversion", "data.instance_prompt=a <sks> dog", "model.quantize_text_encoders=nf4"],
            "cannot be combined with textual_inversion",
        ),
        (
            ["model.quantize=fp8", "train.mixed_precision=no"],
            "fp8 weights compute in bf16, and train.mixed_precision is no",
        ),
        (["model.quantize=int4"], "model.quantize"),
    ],
)
def test_quantization_mistakes_are_one_sentence(tiny_models, photos, tmp_path, overrides, fragment):
    args = [
        *tiny_overrides(tiny_models["sd1"], photos, tmp_path / "run", **{"data.instance_prompt": "a photo of sks dog"}),
        *overrides,
    ]
    done = subprocess.run(
        [sys.executable, "-m", "dreamtune.cli", "train", *args], capture_output=True, text=True, cwd=ROOT
    )
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert done.returncode == 2 and len(errors) == 1 and fragment in errors[0] and "Traceback" not in done.stderr
    assert not (tmp_path / "run").exists()


def test_without_torchao_the_sentence_names_the_extra(tiny_models, photos, tmp_path):
    code = (
        "import sys; sys.modules['torchao'] = None; from dreamtune.cli import main; "  # as if it were not installed
        "sys.exit(main(sys.argv[1:]))"
    )
    args = tiny_overrides(
        tiny_models["sd1"],
        photos,
        tmp_path / "run",
        **{"data.instance_prompt": "a photo of sks dog", "model.quantize": "int8"},
    )
    done = subprocess.run([sys.executable, "-c", code, "train", *args], capture_output=True, text=True, cwd=ROOT)
    assert (
        done.returncode == 2 and "pip install 'dreamtune[quantize]'" in done.stderr and "Traceback" not in done.stderr
    )
    assert not (tmp_path / "run" / "model").exists()


def test_memory_auto_quantizes_a_base_that_would_not_fit_and_a_resume_keeps_that_choice(
    tiny_models, photos, tmp_path, monkeypatch
):
    """train.memory: auto on a machine too small for the bf16 base (free memory made small): the run picks int8,
    says so in one line, trains, and a resume on a roomy machine keeps int8 and ends bit-identical."""
    import json

    from dreamtune.models.families import family_for
    from dreamtune.training import memory_auto, memory_plan

    folder = tiny_models["flux"]
    index = json.loads((folder / "model_index.json").read_text())
    sizes = memory_auto.part_sizes(str(folder), index, None)
    family = family_for(index)
    plain = config.load(None, tiny_overrides(folder, photos, tmp_path / "x", **SETTINGS))
    need = lambda cfg: memory_auto.need(cfg, sizes, "transformer", list(family.text_encoder_names), True).peak
    int8 = config.replace(plain, model__quantize="int8", model__quantize_text_encoders="int8")
    free = (need(int8) + need(plain)) / 2 / memory_auto.STATIC_SHARE  # room for int8 weights, not for bf16 ones
    monkeypatch.setattr(memory_plan, "free_memory", lambda device: int(free))
    auto = {"train.checkpoint_every": 2, "train.memory": "auto"}
    whole, messages = _run(tiny_models, photos, tmp_path / "whole", "flux", **auto)
    said = [m for m in messages if m.startswith("memory auto:")]
    assert len(said) == 1 and "model.quantize=int8" in said[0]
    assert any(m.startswith("quantized frozen weights: denoiser int8") for m in messages)
    cut = config.load(None, tiny_overrides(folder, photos, tmp_path / "cut", **{**SETTINGS, **auto}))
    train_killed_at(cut, 3, monkeypatch)
    monkeypatch.setattr(memory_plan, "free_memory", lambda device: 10**12)
    resumed = train(cut, resume="latest", show_progress=False, log=lambda *_: None)
    a = load_file(str(whole.model_dir / "pytorch_lora_weights.safetensors"))
    b = load_file(str(resumed.model_dir / "pytorch_lora_weights.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
