"""train.compile: the compiled denoiser trains the same LoRA as the eager one, and the run saves and
exports as usual (parameter names unchanged by the in-place compile)."""

import torch
from safetensors.torch import load_file

from dreamtune import config
from dreamtune.training.run import train
from tests.conftest import tiny_overrides


def test_compiled_training_matches_eager(tiny_models, photos, tmp_path):
    results = {}
    for compiled in (False, True):
        out = tmp_path / f"compile-{compiled}"
        train(
            config.load(
                None,
                tiny_overrides(
                    tiny_models["sd1"],
                    photos,
                    out,
                    **{
                        "method.kind": "lora",
                        "train.steps": 3,
                        "train.compile": compiled,
                        "train.lr": 1e-3,
                        "data.instance_prompt": "a photo of sks dog",
                    },
                ),
            )
        )
        results[compiled] = load_file(next((out / "model").rglob("pytorch_lora_weights.safetensors")))
    eager, compiled = results[False], results[True]
    assert eager.keys() == compiled.keys() and eager
    assert all(torch.allclose(eager[k], compiled[k], atol=1e-4) for k in eager)
    assert any(not torch.equal(eager[k], torch.zeros_like(eager[k])) for k in eager)


def test_bf16_lora_with_gradient_checkpointing_trains_on_cpu(tiny_models, photos, tmp_path):
    """Checkpointing recomputes the forward inside the backward: the CPU attention policy must
    choose the same kernels there (it once did not, and the recomputation failed its dtype check)."""
    out = tmp_path / "run"
    train(
        config.load(
            None,
            tiny_overrides(
                tiny_models["sd1"],
                photos,
                out,
                **{
                    "method.kind": "lora",
                    "train.steps": 2,
                    "train.mixed_precision": "bf16",
                    "train.memory": "manual",  # bf16 compute itself, also on CPUs without bf16 instructions
                    "train.gradient_checkpointing": True,
                    "data.instance_prompt": "a photo of sks dog",
                },
            ),
        )
    )
    weights = load_file(next((out / "model").rglob("pytorch_lora_weights.safetensors")))
    assert weights and all(torch.isfinite(w.float()).all() for w in weights.values())
