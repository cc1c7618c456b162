"""train.memory: auto (issue 32): the cheapest savings that make weights, gradients and optimizer state fit,
decided from the files' headers before loading; a refusal with the numbers when nothing fits."""

import subprocess
import sys
from pathlib import Path

import pytest

from dreamtune import config
from dreamtune.errors import UserError
from dreamtune.training import memory_auto
from dreamtune.training.memory_auto import GIB, PartSize, choose

ROOT = Path(__file__).resolve().parents[2]

B = 10**9


def flux_like(transformer=12 * B, text=4.8 * B):
    """FLUX.1-dev's proportions: a 12 B transformer of 3072-wide attention, T5-XXL, CLIP-L, the VAE."""
    matrices = [
        (f"blocks.{i}.attn.{m}.weight", 3072, 3072) for i in range(57) for m in ("to_q", "to_k", "to_v", "to_out.0")
    ]
    return {
        "transformer": PartSize(int(transformer), matrices),
        "text_encoder": PartSize(int(0.12 * B)),
        "text_encoder_2": PartSize(int(text)),
        "vae": PartSize(int(0.08 * B)),
    }


def decide(overrides, free_gib, sizes=None, early=True, cuda=False):
    cfg = config.load(None, ["model.pretrained=x", "train.mixed_precision=bf16", *overrides])
    return choose(
        cfg,
        sizes or flux_like(),
        "transformer",
        ["text_encoder", "text_encoder_2"],
        early,
        int(free_gib * GIB),
        "cuda:0" if cuda else "this machine",
        cuda=cuda,
    )


def test_a_run_that_fits_is_left_as_written():
    cfg, sentence = decide(["method.kind=lora"], free_gib=80)
    assert cfg.model.quantize == "none" and not cfg.train.fused_update
    assert (
        sentence.startswith("memory auto: weights, gradients and optimizer state ~") and "no saving needed" in sentence
    )


@pytest.mark.parametrize("free_gib, quantize", [(24, "int8"), (12, "nf4")])
def test_a_lora_too_big_for_the_machine_gets_the_cheapest_quantization_that_fits(free_gib, quantize):
    cfg, sentence = decide(["method.kind=lora"], free_gib=free_gib)
    assert cfg.model.quantize == quantize and cfg.model.quantize_text_encoders == "int8"
    assert f"model.quantize={quantize}" in sentence and "would not leave room" in sentence
    assert sentence.count("model.quantize=") == 1  # nf4 replaces int8: the line names what the run uses
    assert ("int8 frozen denoiser" in sentence) == (quantize == "int8")
    assert (
        memory_auto.need(cfg, flux_like(), "transformer", ["text_encoder", "text_encoder_2"], True).peak
        <= 0.7 * free_gib * GIB
    )


def test_on_a_cpu_a_quantized_base_counts_its_heap_fragments_and_may_return_them():
    """FLUX.1-dev int8 on a 24 GiB CPU machine: 11.5 GiB of weights plus ~7.8 GiB of heap fragments do not fit
    16.8 GiB; returning freed buffers at once (0.1 byte per weight) fits without going to nf4."""
    cfg, sentence = decide(["method.kind=lora"], free_gib=24)
    assert cfg.model.quantize == "int8" and cfg.train.release_freed_memory
    assert "train.release_freed_memory=True" in sentence and "slower steps" in sentence
    sizes, names = flux_like(), ["text_encoder", "text_encoder_2"]
    kept = memory_auto.need(cfg, sizes, "transformer", names, True).training
    piled = memory_auto.need(config.replace(cfg, train__release_freed_memory=False), sizes, "transformer", names, True)
    assert piled.training - kept == pytest.approx(0.6 * 12 * B, rel=1e-6)
    plain = config.load(None, ["model.pretrained=x", "train.mixed_precision=bf16", "method.kind=lora"])
    released = config.replace(plain, train__release_freed_memory=True)
    assert memory_auto.need(plain, sizes, "transformer", names, True) == memory_auto.need(
        released, sizes, "transformer", names, True
    )  # an unquantized base makes no per-layer copies to pile up


def test_a_full_fine_tune_fuses_the_update_before_it_lowers_precision():
    unet = {
        "unet": PartSize(int(2.6 * B), [("down.attn.to_q.weight", 1280, 1280)] * 10),
        "vae": PartSize(int(0.08 * B)),
        "text_encoder": PartSize(int(0.12 * B)),
    }
    roomy, said = choose(
        config.load(None, ["model.pretrained=x", "train.mixed_precision=bf16", "method.kind=dreambooth"]),
        unet,
        "unet",
        ["text_encoder"],
        True,
        int(50 * GIB),
        "this machine",
    )
    assert roomy.train.fused_update and roomy.train.trainable_dtype == "fp32" and "fused" in said
    tight, _ = choose(
        config.load(None, ["model.pretrained=x", "train.mixed_precision=bf16", "method.kind=dreambooth"]),
        unet,
        "unet",
        ["text_encoder"],
        True,
        int(16 * GIB),
        "this machine",
    )
    assert tight.train.fused_update and tight.train.trainable_dtype == "bf16" and tight.train.optimizer == "adamw8bit"


def test_when_nothing_fits_the_run_is_refused_with_the_numbers():
    with pytest.raises(UserError) as refused:
        decide(["method.kind=lora"], free_gib=6)
    text = str(refused.value)
    assert "even with" in text and "6.0 GiB free" in text and "train.memory: manual" in text
    # the settings to try by hand are the ones auto would have taken: with them a run can go ahead
    assert "train.memory: manual with model.quantize_text_encoders=int8" in text and "model.quantize=nf4" in text


def test_on_a_small_gpu_the_last_resort_is_weights_in_host_memory():
    """8 GiB (5.6 for weights) cannot hold FLUX.1-dev's nf4 transformer (~6.3 GiB): on CUDA its frozen weights
    then stay in host memory (train.offload); on a CPU, where host memory is the memory, the run is refused."""
    cfg, sentence = decide(["method.kind=lora"], free_gib=8, cuda=True)
    assert cfg.model.quantize == "nf4" and cfg.train.offload
    assert "train.offload=True" in sentence and "host memory" in sentence
    assert (
        memory_auto.need(cfg, flux_like(), "transformer", ["text_encoder", "text_encoder_2"], True, cuda=True).peak
        <= 0.7 * 8 * GIB
    )
    assert not cfg.train.release_freed_memory  # a CPU heap's trouble, not a GPU's
    with pytest.raises(UserError, match="lower data.resolution"):
        decide(["method.kind=lora"], free_gib=8)
    roomy, _ = decide(["method.kind=lora"], free_gib=12, cuda=True)
    assert not roomy.train.offload  # quantizing is cheaper than crossing the bus every step
    with pytest.raises(UserError):
        decide(["method.kind=lora", "train.gradient_checkpointing=false"], free_gib=8, cuda=True)


def test_a_resumed_run_keeps_the_choices_of_its_first_part(tmp_path):
    saved = tmp_path / "config.yaml"
    saved.write_text("model:\n  quantize: int8\ntrain:\n  fused_update: false\n  optimizer: adamw\n")
    kept = memory_auto.kept_choices(config.load(None, ["model.pretrained=x", "method.kind=lora"]), saved)
    assert kept.model.quantize == "int8"


def test_sizes_come_from_the_headers_alone(tiny_models):
    import json

    folder = tiny_models["flux"]
    sizes = memory_auto.part_sizes(str(folder), json.loads((folder / "model_index.json").read_text()), None)
    from diffusers import FluxTransformer2DModel

    model = FluxTransformer2DModel.from_pretrained(str(folder), subfolder="transformer")
    assert sizes["transformer"].parameters == sum(p.numel() for p in model.parameters())
    assert memory_auto.part_sizes(str(folder / "missing.safetensors"), {}, None) is None


FRAGMENTS_PROBE = """
import sys, torch
from dreamtune.models.loading import return_large_buffers_at_once
rss = lambda: int(next(x for x in open("/proc/self/status") if x.startswith("VmRSS")).split()[1]) // 1024
if sys.argv[1] == "release":
    assert return_large_buffers_at_once()
torch.ones(6 * 2**18).sum()  # one 6 MiB buffer freed: glibc's own threshold rises above it, later ones come from the heap
big, small = [], []
for _ in range(64):  # what a quantized layer's dequantized copies do: big buffers between small ones that stay
    big.append(torch.ones(6 * 2**18))
    small.append(torch.ones(1000))
before = rss()
big.clear()
print(before - rss())
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the resident set from /proc (Linux)")
@pytest.mark.parametrize("mode, returned", [("default", (0, 64)), ("release", (320, 448))])
def test_release_freed_memory_gives_freed_buffers_back(mode, returned):
    """64 freed 6 MiB buffers: glibc's heap keeps them (no RSS returned); with the release they go back (384 MiB)."""
    done = subprocess.run([sys.executable, "-c", FRAGMENTS_PROBE, mode], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-400:]
    assert returned[0] <= int(done.stdout.split()[-1]) <= returned[1]
