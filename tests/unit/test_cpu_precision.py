"""train.memory: auto on a CPU without bf16 instructions: fp32 where it fits, bf16 kept where it must be,
one line either way, and a resumed run keeps its first part's precision."""

import platform
from pathlib import Path

import pytest

from dreamtune import config
from dreamtune.training.cpu_precision import native_bf16, precision_for_this_cpu
from dreamtune.training.memory_auto import GIB
from dreamtune.training.outputs import save_resolved_config

ROOT = Path(__file__).resolve().parents[2]
RECIPE = ROOT / "configs" / "miniature-lora.yaml"


def miniature(tmp_path, *overrides):
    return config.load(RECIPE, [f"train.output_dir={tmp_path / 'run'}", *overrides])


def decide(cfg, tmp_path, native, free_gib=20.0, resume=None):
    lines = []
    chosen = precision_for_this_cpu(
        cfg, tmp_path / "run", resume, lines.append, native=native, free=int(free_gib * GIB)
    )
    return chosen, lines


@pytest.mark.skipif(platform.machine() != "x86_64" or not Path("/proc/cpuinfo").is_file(), reason="x86 Linux flags")
def test_the_probe_agrees_with_the_kernels_cpu_flags():
    flags = set(Path("/proc/cpuinfo").read_text().split())
    assert native_bf16() == bool({"avx512_bf16", "amx_bf16"} & flags)


def test_without_bf16_instructions_a_run_that_fits_computes_in_fp32_and_says_so(tmp_path):
    cfg = miniature(tmp_path)
    assert cfg.train.mixed_precision == "bf16"
    chosen, lines = decide(cfg, tmp_path, native=False)
    assert chosen.train.mixed_precision == "no"
    assert len(lines) == 1 and "no bf16 instructions" in lines[0] and "computing in fp32" in lines[0]


def test_with_bf16_instructions_or_in_manual_mode_the_recipe_is_kept(tmp_path):
    assert decide(miniature(tmp_path), tmp_path, native=True) == (miniature(tmp_path), [])
    manual = miniature(tmp_path, "train.memory=manual")
    assert decide(manual, tmp_path, native=False) == (manual, [])


def test_a_run_that_needs_bf16_to_fit_keeps_it_with_the_numbers(tmp_path):
    chosen, lines = decide(miniature(tmp_path), tmp_path, native=False, free_gib=0.01)
    assert chosen.train.mixed_precision == "bf16"
    assert len(lines) == 1 and "keeping bf16: in fp32 the run needs ~" in lines[0] and "GiB free" in lines[0]


@pytest.mark.parametrize(
    "setting", ["model.quantize=fp8", "model.quantize_text_encoders=fp8", "train.trainable_dtype=bf16"]
)
def test_fp8_weights_or_bf16_trained_weights_keep_bf16(tmp_path, setting):
    chosen, lines = decide(miniature(tmp_path, setting), tmp_path, native=False)
    assert chosen.train.mixed_precision == "bf16" and "keeping bf16" in lines[0]


@pytest.mark.parametrize("setting", ["model.quantize=int8", "model.quantize=nf4", "model.quantize_text_encoders=nf4"])
def test_an_int8_or_nf4_base_stays_quantized_and_computes_in_fp32(tmp_path, setting):
    chosen, lines = decide(miniature(tmp_path, setting), tmp_path, native=False)
    assert chosen.train.mixed_precision == "no" and "computing in fp32" in lines[0]
    assert (chosen.model.quantize, chosen.model.quantize_text_encoders) == (
        miniature(tmp_path, setting).model.quantize,
        miniature(tmp_path, setting).model.quantize_text_encoders,
    )


def test_a_resumed_run_keeps_the_precision_its_first_part_used(tmp_path):
    first, _ = decide(miniature(tmp_path), tmp_path, native=False)
    (tmp_path / "run").mkdir()
    save_resolved_config(first, tmp_path / "run")
    # resumed on a machine with bf16 instructions: still fp32, so the run continues as it began
    resumed, lines = decide(miniature(tmp_path), tmp_path, native=True, resume="latest")
    assert resumed.train.mixed_precision == "no" and lines == []
