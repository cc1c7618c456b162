"""train.shard: fsdp (issue 32): a full fine-tune split across 2 CPU processes (torch FSDP2 over gloo) ends
with the weights of one process training on the same global batches, up to the order of float sums; its
checkpoints resume bit for bit; and what it cannot shard is refused before any work."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from dreamtune import config
from dreamtune.errors import UserError
from dreamtune.training.run import train
from tests.conftest import ROOT, tiny_overrides

SETTINGS = {
    "data.instance_prompt": "a photo of sks dog",
    "method.kind": "dreambooth",
    "train.lr": 1e-3,
    "train.steps": 4,
    "prior.enabled": True,
    "prior.class_prompt": "a photo of dog",
    "prior.num_class_images": 4,
    "train.max_grad_norm": 1.0,
}


def _launch(overrides: list[str], port: int):
    launcher = Path(sys.executable).with_name("accelerate")
    command = [
        str(launcher),
        "launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--main_process_port",
        str(port),
        "-m",
        "dreamtune.cli",
        "train",
        *overrides,
    ]
    result = subprocess.run(
        command, capture_output=True, text=True, env={**os.environ, "CUDA_VISIBLE_DEVICES": ""}, cwd=ROOT, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def _unet(run: Path) -> dict:
    return load_file(str(run / "model" / "unet" / "diffusion_pytorch_model.safetensors"))


def test_two_sharded_processes_train_what_one_process_trains_on_the_same_global_batches(tiny_models, photos, tmp_path):
    one = train(
        config.load(
            None, tiny_overrides(tiny_models["sd1"], photos, tmp_path / "one", **SETTINGS, **{"train.batch_size": 2})
        ),
        show_progress=False,
        log=lambda *_: None,
    )
    sharded = tiny_overrides(
        tiny_models["sd1"], photos, tmp_path / "two", **SETTINGS, **{"train.shard": "fsdp", "train.checkpoint_every": 2}
    )
    result = _launch(sharded, 29541)
    assert "training on 2 process(es)" in result.stdout
    # each process loaded the whole model before sharding it: what it freed goes back to the system
    assert "train.release_freed_memory=true" in result.stdout and "freed buffers of 4 MiB" in result.stdout
    a, b = _unet(one.output_dir), _unet(tmp_path / "two")
    assert a.keys() == b.keys()
    start = load_file(str(tiny_models["sd1"] / "unet" / "diffusion_pytorch_model.safetensors"))
    moved = max(float((a[k].float() - start[k].float()).abs().max()) for k in a)
    apart = max(float((a[k].float() - b[k].float()).abs().max()) for k in a)
    assert (
        moved > 1e-3 and apart < 0.01 * moved
    )  # measured 0.4 % of the largest move: float-sum order, not other batches
    # the sharded checkpoint holds whole tensors: the same file a single process writes, resumable by any process count
    weights = load_file(str(tmp_path / "two" / "checkpoint-000002" / "trainable-model.safetensors"))
    whole = {f"unet.{k}": v for k, v in one.components.denoiser.state_dict().items()}
    assert weights.keys() == whole.keys() and all(weights[k].shape == whole[k].shape for k in weights)


def test_a_sharded_run_resumes_bit_for_bit(tiny_models, photos, tmp_path):
    common = {**SETTINGS, "train.shard": "fsdp", "train.checkpoint_every": 2, "train.lr_scheduler": "constant"}
    _launch(tiny_overrides(tiny_models["sd1"], photos, tmp_path / "straight", **common), 29542)
    _launch(tiny_overrides(tiny_models["sd1"], photos, tmp_path / "cut", **{**common, "train.steps": 2}), 29543)
    import shutil

    shutil.rmtree(tmp_path / "cut" / "model")  # the first part finished at step 2; go on to 4 from its checkpoint
    _launch(tiny_overrides(tiny_models["sd1"], photos, tmp_path / "cut", **common) + ["--resume", "latest"], 29544)
    a, b = _unet(tmp_path / "straight"), _unet(tmp_path / "cut")
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize(
    "overrides, named",
    [
        ({"method.kind": "lora"}, "method.kind: dreambooth"),
        ({"method.kind": "dreambooth", "train.ema_decay": 0.9}, "train.ema_decay: null"),
        ({"method.kind": "dreambooth", "train.validate_every": 10}, "train.validate_every: 0"),
        ({"method.kind": "dreambooth", "rl.algorithm": "draft"}, "rl.algorithm"),
    ],
)
def test_what_fsdp_cannot_shard_is_refused_before_any_work(overrides, named):
    with pytest.raises(UserError) as refused:
        config.load(None, [f"{k}={v}" for k, v in {"train.shard": "fsdp", **overrides}.items()])
    assert named in str(refused.value) and "train.shard: none" in str(refused.value)
