"""Resume equivalence, divergence handling, recipes, CLI errors, multi-process launch."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from dreamtune import config
from dreamtune.errors import TrainingDiverged, UserError
from dreamtune.training.run import train
from tests.conftest import (
    RECIPES,
    print_quality_rollouts,
    recipe_family,
    recipe_overrides,
    tiny_overrides,
    train_killed_at,
)

ROOT = Path(__file__).resolve().parents[2]
RESUME_SETTINGS = {
    "train.steps": 6,
    "train.lr": 5e-3,
    "train.lr_scheduler": "cosine",
    "train.warmup_steps": 2,
    "train.ema_decay": 0.8,
    "method.lora.dropout": 0.1,
    "prior.enabled": True,
    "prior.class_prompt": "a photo of dog",
    "data.instance_prompt": "a photo of sks dog",
    "train.checkpoint_every": 2,
    "train.keep_checkpoints": 2,
    "data.rotate_p": 0.5,
    "data.rotate_degrees": 8,
}


def test_interrupted_and_resumed_run_is_bit_identical(tiny_models, photos, tmp_path, monkeypatch):
    full = train(
        config.load(None, tiny_overrides(tiny_models["sd1"], photos, tmp_path / "full", **RESUME_SETTINGS)),
        show_progress=False,
        log=lambda *_: None,
    )
    interrupted = config.load(None, tiny_overrides(tiny_models["sd1"], photos, tmp_path / "cut", **RESUME_SETTINGS))
    train_killed_at(interrupted, 5, monkeypatch)
    checkpoints = sorted(p.name for p in (tmp_path / "cut").glob("checkpoint-*"))
    assert checkpoints == ["checkpoint-000002", "checkpoint-000004"]  # rotation kept the last two
    resumed = train(interrupted, resume="latest", show_progress=False, log=lambda *_: None)
    assert resumed.state.step == 6
    a = load_file(str(full.model_dir / "pytorch_lora_weights.safetensors"))
    b = load_file(str(resumed.model_dir / "pytorch_lora_weights.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert [r["loss"] for r in full.history[4:]] == [r["loss"] for r in resumed.history]
    # the report of the resumed run is the uninterrupted run's: every step, each once (issue 38)
    from dreamtune.training.callbacks import read_metric_log

    whole, cut = (
        read_metric_log(tmp_path / "full" / "metrics.jsonl"),
        read_metric_log(tmp_path / "cut" / "metrics.jsonl"),
    )
    assert len((tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()) == 7  # step 5 logged by both parts
    assert [(r["step"], r["loss"]) for r in whole] == [(r["step"], r["loss"]) for r in cut] and len(cut) == 6
    captions = [
        re.search(r"<figcaption>steps 1-6:[^<]*</figcaption>", (tmp_path / run / "report.html").read_text())
        for run in ("full", "cut")
    ]
    assert all(captions) and captions[0].group(0) == captions[1].group(0)
    assert "<td>method.kind</td><td>lora</td>" in (tmp_path / "cut" / "report.html").read_text()


def test_nan_loss_stops_with_step_and_keeps_checkpoint(tiny_models, photos, tmp_path):
    overrides = tiny_overrides(
        tiny_models["sd1"],
        photos,
        tmp_path / "run",
        **{
            "train.steps": 6,
            "train.checkpoint_every": 1,
            "train.lr": 1e30,
            "train.max_grad_norm": 0,
            "method.kind": "dreambooth",
            "data.instance_prompt": "a photo of sks dog",
            "train.weight_decay": 0,
        },
    )
    with pytest.raises(TrainingDiverged) as error:
        train(config.load(None, overrides), show_progress=False, log=lambda *_: None)
    message = str(error.value)
    assert "step" in message and "train.lr" in message and "intact" in message
    for folder in (tmp_path / "run").glob("checkpoint-*"):
        weights = load_file(str(folder / "trainable-model.safetensors"))
        assert (
            all(torch.isfinite(v).all() for v in weights.values())
            or folder.name != sorted(p.name for p in (tmp_path / "run").glob("checkpoint-*"))[0]
        )
    assert not list((tmp_path / "run").glob(".checkpoint-*"))  # no half-written checkpoint


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.stem)
def test_every_shipped_recipe_runs_two_steps_on_a_tiny_model(recipe, tiny_models, photos, tmp_path):
    base = tiny_overrides(tiny_models[recipe_family(recipe)], photos, tmp_path / "run", **{"train.validate_every": 2})
    cfg = config.load(recipe, recipe_overrides(recipe, base, tmp_path))
    result = train(cfg, show_progress=False, log=lambda *_: None)
    assert result.state.step == 2 and (result.model_dir / "dreamtune.json").is_file()
    assert (tmp_path / "run" / "config.yaml").is_file()
    if cfg.train.validation_prompts:
        assert (tmp_path / "run" / "validation" / "step-000002.png").is_file()


def _cli(*args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "dreamtune.cli", *args], capture_output=True, text=True, env=env, cwd=ROOT
    )


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["train", "train.lrr=1"], "did you mean 'train.lr'"),
        (
            ["train", "model.pretrained=/nonexistent/model", "data.instance_dir=/tmp"],
            "neither a local folder nor a hub id",
        ),
        (["prepare", "/nonexistent/photos", "--out", "/tmp/x-dreamtune"], "does not exist"),
        (["generate", "--model", "/nonexistent/m", "--prompt", "x", "--out", "/tmp/x"], "neither a local folder"),
    ],
)
def test_user_errors_are_one_sentence_without_traceback(args, fragment):
    result = _cli(*args)
    assert result.returncode == 2
    assert fragment in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_pickle_only_model_is_refused(tiny_models, tmp_path, photos):
    model = shutil.copytree(tiny_models["sd1"], tmp_path / "pickled")
    for weights in model.rglob("*.safetensors"):
        torch.save({}, weights.with_suffix(".bin"))
        weights.unlink()
    with pytest.raises(UserError, match="allow_pickle"):
        train(
            config.load(None, tiny_overrides(model, photos, tmp_path / "run", **{"data.instance_prompt": "x"})),
            show_progress=False,
            log=lambda *_: None,
        )


def test_accelerate_launch_with_two_cpu_processes(tiny_models, photos, tmp_path):
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
        "29533",
        "-m",
        "dreamtune.cli",
        "train",
        *tiny_overrides(
            tiny_models["sd1"],
            photos,
            tmp_path / "run",
            **{"data.instance_prompt": "a photo of sks dog", "train.steps": 3, "train.checkpoint_every": 3},
        ),
    ]
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "training on 2 process(es)" in result.stdout
    assert (tmp_path / "run" / "model" / "pytorch_lora_weights.safetensors").is_file()
    assert (tmp_path / "run" / "checkpoint-000003" / "state.json").is_file()


def test_accelerate_launch_of_a_reward_recipe_with_two_cpu_processes(tiny_models, photos, tmp_path):
    """DDPO under data parallelism: the denoiser is wrapped for every objective, and each process
    samples its own prompts and seeds (the rollout source is sharded by process)."""
    launcher = Path(sys.executable).with_name("accelerate")
    overrides = tiny_overrides(
        tiny_models["sd1"],
        photos,
        tmp_path / "run",
        **{
            "data.instance_prompt": "a photo of sks dog",
            "rl.algorithm": "ddpo",
            "rl.prompts": "[a photo of a dog]",
            "rl.rewards.print_quality": 1.0,
            "rl.sample_steps": 2,
            "rl.samples_per_round": 2,
            "rl.images_per_prompt": 2,
            "train.batch_size": 2,
            "rl.regularize_weight": 0.5,
        },
    )
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
        "29534",
        "-m",
        "dreamtune.cli",
        "train",
        *overrides,
    ]
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "training on 2 process(es)" in result.stdout
    assert (tmp_path / "run" / "model" / "pytorch_lora_weights.safetensors").is_file()


def test_reward_batch_sources_draw_different_work_per_process(tiny_models):
    from dreamtune.models.loading import load_components
    from dreamtune.training.rollouts import PromptSource

    first, second = PromptSource(("a", "b", "c"), 4, 0, stream=0), PromptSource(("a", "b", "c"), 4, 0, stream=1)
    assert first.batch(0)["seeds"] != second.batch(0)["seeds"]
    components = load_components(config.ModelConfig(pretrained=str(tiny_models["sd1"])))
    starts = []
    for stream in (0, 1):
        source = print_quality_rollouts(
            components,
            prompts=("a dog",),
            samples_per_round=2,
            images_per_prompt=2,
            batch_size=2,
            sample_steps=2,
            resolution=32,
            stream=stream,
        )
        source.batch(0)
        starts.append(source.data["trajectories"]["latents"][:, 0])
    assert not torch.equal(starts[0], starts[1])
