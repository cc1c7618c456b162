"""train.offload (training/offload.py, issue 32): frozen weights in host memory, copied at each use.

The memory it saves is a GPU's (benchmarks/memory_rows_device.sh measures it); what this machine can
check is that the mechanism is exact and complete: the blocks a family names are exactly the ones
diffusers' gradient checkpointing recomputes, a run whose weights are read through the host copies
trains bit for bit the weights of a run without them, and nothing of the model is lost on the way."""

import contextlib

import pytest
import torch
from safetensors.torch import load_file

from dreamtune import config
from dreamtune.errors import UserError
from dreamtune.models.loading import load_components
from dreamtune.models.tiny_names import FAMILIES
from dreamtune.training import memory_plan, offload, run_steps
from dreamtune.training.run import train
from tests.conftest import tiny_overrides

SETTINGS = {
    "method.kind": "lora",
    "data.instance_prompt": "a photo of sks dog",
    "train.steps": 3,
    "train.lr": 5e-3,
    "train.gradient_checkpointing": True,
    "prior.enabled": False,
}


@pytest.mark.parametrize("family", FAMILIES)
def test_offloaded_blocks_are_exactly_the_checkpointed_ones(tiny_models, family):
    """If diffusers checkpointed a module the family does not name, its weights would stay on the GPU;
    if the family named one diffusers does not recompute, autograd would keep its copies for the backward."""
    components = load_components(config.load(None, [f"model.pretrained={tiny_models[family]}"]).model)
    denoiser = components.denoiser
    denoiser.enable_gradient_checkpointing()
    recomputed = []

    def record(function, *args, **kwargs):
        recomputed.append(function)
        return function(*args, **kwargs)

    for module in denoiser.modules():
        if hasattr(module, "_gradient_checkpointing_func"):
            module._gradient_checkpointing_func = record
    side = 64 if family == "sdxl" else 32
    memory_plan.saved_activation_bytes(components, side, contextlib.nullcontext)  # one forward that records a graph
    named = offload.offload_blocks(denoiser, components.family.offload_blocks)
    assert recomputed and {id(m) for m in recomputed} == {id(m) for m in named}


def _lora(out):
    return load_file(next((out / "model").rglob("pytorch_lora_weights.safetensors")))


@pytest.mark.parametrize("family,extra", [("sd1", {}), ("flux", {}), ("sd1", {"model.quantize": "int8"})])
def test_a_run_reading_weights_from_host_copies_trains_the_same_weights(
    tiny_models, photos, tmp_path, monkeypatch, family, extra
):
    if extra.get("model.quantize"):
        pytest.importorskip("torchao")
    settings = {**SETTINGS, **extra}
    plain = tmp_path / "plain"
    train(config.load(None, tiny_overrides(tiny_models[family], photos, plain, **settings)), show_progress=False)
    # on a CPU nothing needs moving, so the run would skip it; here the mechanism runs as it does on CUDA
    monkeypatch.setattr(run_steps, "offload_applies", lambda cfg, device: cfg.train.offload)
    moved, messages = tmp_path / "offloaded", []
    result = train(
        config.load(None, tiny_overrides(tiny_models[family], photos, moved, **settings, **{"train.offload": True})),
        show_progress=False,
        log=messages.append,
    )
    said = next(m for m in messages if m.startswith("offload:"))
    assert "GiB of frozen denoiser weights" in said and "gradient checkpointing on" in said
    held = [m for m in result.components.denoiser.modules() if hasattr(m, "_host_weights")]
    assert held and all(not p.requires_grad for m in held for p in m._host_weights.values())
    trained = [n for n, p in result.components.denoiser.named_parameters() if p.requires_grad]
    assert trained and all("lora_" in n for n in trained)  # the LoRA stays a parameter the optimizer steps
    a, b = _lora(plain), _lora(moved)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_restore_gives_back_every_weight(tiny_models):
    components = load_components(config.load(None, [f"model.pretrained={tiny_models['sd1']}"]).model)
    for module in (components.denoiser, components.vae):
        module.requires_grad_(False)
    before = {k: v.clone() for k, v in components.denoiser.state_dict().items()}
    vae_before = len(components.vae.state_dict())
    denoiser_bytes, vae_bytes = offload.offload_frozen(components, torch.device("cpu"))
    assert denoiser_bytes > 0 and vae_bytes > 0
    assert len(components.denoiser.state_dict()) < len(before)  # the held weights are no longer parameters
    assert next(components.vae.parameters()).device.type == "cpu"  # vae.device still answers
    offload.restore(components.denoiser)
    offload.restore(components.vae)
    after = components.denoiser.state_dict()
    assert after.keys() == before.keys() and all(torch.equal(after[k], before[k]) for k in before)
    assert len(components.vae.state_dict()) == vae_before
    assert not any(type(m).__name__.startswith("HostResident") for m in components.denoiser.modules())


def test_on_cpu_offload_is_one_line_and_nothing_moves(tiny_models, photos, tmp_path):
    messages = []
    result = train(
        config.load(
            None, tiny_overrides(tiny_models["sd1"], photos, tmp_path / "run", **SETTINGS, **{"train.offload": True})
        ),
        show_progress=False,
        log=messages.append,
    )
    assert offload.sentence(None, torch.device("cpu")) in messages
    assert not any(hasattr(m, "_host_weights") for m in result.components.denoiser.modules())


@pytest.mark.parametrize(
    "overrides,fragment",
    [
        ({"method.kind": "dreambooth"}, "trains the denoiser's weights themselves"),
        ({"train.gradient_checkpointing": False}, "needs gradient checkpointing"),
    ],
)
def test_offload_mistakes_are_one_sentence(tiny_models, photos, tmp_path, overrides, fragment):
    settings = {**SETTINGS, "train.offload": True, **overrides}
    with pytest.raises(UserError, match=fragment):
        config.load(None, tiny_overrides(tiny_models["sd1"], photos, tmp_path / "run", **settings))
    assert not (tmp_path / "run").exists()


def test_release_freed_memory_is_said_once_and_trains(tiny_models, photos, tmp_path):
    messages = []
    train(
        config.load(
            None,
            tiny_overrides(
                tiny_models["sd1"], photos, tmp_path / "run", **SETTINGS, **{"train.release_freed_memory": True}
            ),
        ),
        show_progress=False,
        log=messages.append,
    )
    said = [m for m in messages if "go back to the system at once" in m]
    assert len(said) == 1 and "4 MiB" in said[0]
    assert (tmp_path / "run" / "model").is_dir()
