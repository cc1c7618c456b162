"""Lean updates (issue 32): bitsandbytes' 8-bit AdamW and torch's Adafactor fine-tune a model, keep a
fraction of AdamW's optimizer state, and resume bit-identically like every other run."""

import pytest
import torch
from safetensors.torch import load_file

from dreamtune import config
from dreamtune.training.run import train
from tests.conftest import tiny_overrides, train_killed_at
from tests.e2e.test_resume_and_failures import RESUME_SETTINGS


def _state_bytes(optimizer) -> int:
    return sum(
        v.numel() * v.element_size() for state in optimizer.state.values() for v in state.values() if torch.is_tensor(v)
    )


@pytest.fixture(scope="module")
def adamw_state(tiny_models, tmp_path_factory):
    from tests.conftest import make_photos

    root = tmp_path_factory.mktemp("adamw")
    cfg = config.load(
        None,
        tiny_overrides(
            tiny_models["sd1"],
            make_photos(root / "photos"),
            root / "run",
            **{**RESUME_SETTINGS, "method.kind": "dreambooth"},
        ),
    )
    return _state_bytes(train(cfg, show_progress=False, log=lambda *_: None).state.optimizers["model"].optimizer)


@pytest.mark.parametrize("optimizer, share", [("adamw8bit", None), ("adafactor", 0.6)])
def test_lean_optimizer_trains_keeps_less_state_and_resumes_exactly(
    tiny_models, photos, tmp_path, monkeypatch, adamw_state, optimizer, share
):
    if optimizer == "adamw8bit":
        pytest.importorskip("bitsandbytes", reason="pip install 'dreamtune[8bit]' (make test installs it)")
    settings = {
        **RESUME_SETTINGS,
        "train.optimizer": optimizer,
        "method.kind": "dreambooth",
    }  # a full fine-tune: where the state is big
    full = train(
        config.load(None, tiny_overrides(tiny_models["sd1"], photos, tmp_path / "full", **settings)),
        show_progress=False,
        log=lambda *_: None,
    )
    losses = [r["loss"] for r in full.history]
    assert all(map(torch.isfinite, map(torch.tensor, losses)))
    lean = full.state.optimizers["model"].optimizer
    if optimizer == "adamw8bit":  # bitsandbytes keeps tensors of 4,096+ values in 8 bits (smaller ones in fp32)
        big = [state for p, state in lean.state.items() if p.numel() >= 4096]
        assert big and all(
            state["state1"].dtype == torch.uint8 and state["state2"].dtype == torch.uint8 for state in big
        )
    else:
        assert _state_bytes(lean) < share * adamw_state
    interrupted = config.load(None, tiny_overrides(tiny_models["sd1"], photos, tmp_path / "cut", **settings))
    train_killed_at(interrupted, 5, monkeypatch)
    resumed = train(interrupted, resume="latest", show_progress=False, log=lambda *_: None)
    a = load_file(str(full.model_dir / "unet" / "diffusion_pytorch_model.safetensors"))
    b = load_file(str(resumed.model_dir / "unet" / "diffusion_pytorch_model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    start = load_file(str(tiny_models["sd1"] / "unet" / "diffusion_pytorch_model.safetensors"))
    assert any(not torch.equal(a[k], start[k].to(a[k].dtype)) for k in a)  # the weights moved


def _unet(result) -> dict:
    return load_file(str(result.model_dir / "unet" / "diffusion_pytorch_model.safetensors"))


@pytest.mark.parametrize("optimizer", ["adamw", "adafactor"])
def test_fused_update_gives_the_same_weights_without_holding_every_gradient(tiny_models, photos, tmp_path, optimizer):
    """train.fused_update steps each weight inside the backward pass: with no global clipping the run is the
    ordinary run bit for bit, and no more than a few gradients are ever alive at once."""
    settings = {
        **RESUME_SETTINGS,
        "train.optimizer": optimizer,
        "method.kind": "dreambooth",
        "train.max_grad_norm": 0.0,
    }
    plain = train(
        config.load(None, tiny_overrides(tiny_models["sd1"], photos, tmp_path / "plain", **settings)),
        show_progress=False,
        log=lambda *_: None,
    )
    alive = []
    fused_config = config.load(
        None, tiny_overrides(tiny_models["sd1"], photos, tmp_path / "fused", **settings, **{"train.fused_update": True})
    )

    from dreamtune.training import optim

    original = optim.FusedUpdate._hook

    def counting(self, group):
        step_one = original(self, group)

        def hook(parameter):
            alive.append(sum(p.grad is not None for g in self.optimizer.param_groups for p in g["params"]))
            step_one(parameter)

        return hook

    optim.FusedUpdate._hook = counting
    try:
        fused = train(fused_config, show_progress=False, log=lambda *_: None)
    finally:
        optim.FusedUpdate._hook = original
    a, b = _unet(plain), _unet(fused)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [r["loss"] for r in plain.history] == [r["loss"] for r in fused.history]
    total = sum(1 for g in fused.state.optimizers["model"].optimizer.param_groups for _ in g["params"])
    assert alive and max(alive) <= 4 < total  # the gradient of the weight being stepped (and a handful in flight)
    assert all(r["grad_norm/model"] > 0 for r in fused.history)


def _along(run: dict, reference: dict, start: dict) -> float:
    """How much of the fp32 run's update ``run`` made: its update from the bf16-rounded start projected
    on the reference's (1: all of it; 0: none, as when every update rounds away)."""
    num = sum(
        float(
            ((run[k].float() - start[k].float().bfloat16().float()) * (reference[k].float() - start[k].float())).sum()
        )
        for k in reference
    )
    return num / sum(float(((reference[k].float() - start[k].float()) ** 2).sum()) for k in reference)


def test_bf16_weights_with_stochastic_rounding_follow_the_fp32_run(tiny_models, photos, tmp_path, monkeypatch):
    """train.trainable_dtype=bf16: half the bytes per trained weight. At a full fine-tune's small learning rate most
    updates are below half a bf16 step: rounded to nearest they vanish (measured: 6 % of the fp32 run's update kept
    at lr 2e-5, 49 % at 2e-4); torchao's stochastic rounding keeps them on average (103 %)."""
    pytest.importorskip("torchao")
    from dreamtune.training import optim

    common = {
        **RESUME_SETTINGS,
        "method.kind": "dreambooth",
        "train.mixed_precision": "bf16",
        "train.memory": "manual",  # bf16 compute itself, also on CPUs without bf16 instructions
        "train.lr": 2e-5,
        "prior.enabled": False,
    }
    run = lambda name, **more: _unet(
        train(
            config.load(None, tiny_overrides(tiny_models["sd1"], photos, tmp_path / name, **common, **more)),
            show_progress=False,
            log=lambda *_: None,
        )
    )
    start = load_file(str(tiny_models["sd1"] / "unet" / "diffusion_pytorch_model.safetensors"))
    fp32, stochastic = run("fp32"), run("bf16", **{"train.trainable_dtype": "bf16"})
    torchao_optimizer = optim._torchao_optimizer
    monkeypatch.setattr(
        optim,
        "_torchao_optimizer",
        lambda name: lambda *a, bf16_stochastic_round, **k: torchao_optimizer(name)(*a, **k),
    )
    nearest = run("nearest", **{"train.trainable_dtype": "bf16"})
    assert 0.8 < _along(stochastic, fp32, start) < 1.25 and _along(nearest, fp32, start) < 0.3


def test_bf16_weights_with_a_fused_8bit_update_resume_exactly(tiny_models, photos, tmp_path, monkeypatch):
    pytest.importorskip("torchao")
    settings = {
        **RESUME_SETTINGS,
        "method.kind": "dreambooth",
        "train.mixed_precision": "bf16",
        "train.memory": "manual",  # bf16 compute itself, also on CPUs without bf16 instructions
        "train.trainable_dtype": "bf16",
        "train.fused_update": True,
        "train.optimizer": "adamw8bit",
    }
    whole = train(
        config.load(None, tiny_overrides(tiny_models["sd1"], photos, tmp_path / "whole", **settings)),
        show_progress=False,
        log=lambda *_: None,
    )
    assert {p.dtype for p in whole.state.modules["model"].parameters() if p.requires_grad} == {torch.bfloat16}
    interrupted = config.load(None, tiny_overrides(tiny_models["sd1"], photos, tmp_path / "cut", **settings))
    train_killed_at(interrupted, 5, monkeypatch)
    resumed = train(interrupted, resume="latest", show_progress=False, log=lambda *_: None)
    a, b = _unet(whole), _unet(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize(
    "overrides, named",
    [
        (
            {"train.trainable_dtype": "bf16", "train.optimizer": "adafactor", "train.mixed_precision": "bf16"},
            "train.optimizer: adamw8bit",
        ),
        ({"train.trainable_dtype": "bf16"}, "train.mixed_precision: bf16"),
        ({"train.fused_update": True, "train.grad_accum": 2}, "train.grad_accum: 1"),
        ({"train.fused_update": True, "train.mixed_precision": "fp16"}, "train.mixed_precision: bf16"),
        ({"train.fused_update": True, "rl.algorithm": "draft"}, "train.fused_update: false"),
    ],
)
def test_lean_update_settings_that_cannot_work_are_refused_in_one_sentence(overrides, named):
    from dreamtune.errors import UserError

    with pytest.raises(UserError) as refused:
        config.load(None, [f"{k}={v}" for k, v in overrides.items()])
    assert named in str(refused.value) and str(refused.value).count(". ") <= 1


def test_the_run_says_where_its_memory_goes(tiny_models, photos, tmp_path):
    """One line after step 2: weights, gradients, optimizer state (measured from the optimizer), the step's peak."""
    import re

    from dreamtune.training.memory_report import size, state_bytes

    messages = []
    settings = {**RESUME_SETTINGS, "method.kind": "dreambooth", "train.fused_update": True, "train.max_grad_norm": 0.0}
    result = train(
        config.load(None, tiny_overrides(tiny_models["sd1"], photos, tmp_path / "run", **settings)),
        show_progress=False,
        log=messages.append,
    )
    said = [m for m in messages if m.startswith("memory after step 2: ")]
    assert len(said) == 1 and "(fused: one weight at a time)" in said[0]
    figures = re.findall(r"([\d.]+ [MG]iB)", said[0])
    value = lambda text: float(text.split()[0]) * (2**30 if text.endswith("GiB") else 2**20)
    weights, trained, gradients, state, peak = figures[:5]
    unet = sum(p.numel() * p.element_size() for p in result.components.denoiser.parameters())
    assert trained == size(unet) and value(gradients) < value(trained)
    assert state == size(state_bytes(result.state.optimizers["model"].optimizer))
    assert value(peak) >= value(weights)
    # every step also logs what the run holds then (the UI's live line): the process's resident memory here
    import psutil

    from dreamtune.training.callbacks import read_metric_log

    held = [r["memory_gib"] * 2**30 for r in read_metric_log(tmp_path / "run" / "metrics.jsonl")]
    assert len(held) == RESUME_SETTINGS["train.steps"] and all(
        value(weights) < h < psutil.virtual_memory().total for h in held
    )
