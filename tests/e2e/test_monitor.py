"""The overfitting / language-drift monitor in a real (tiny) training run, and its selection rule."""

from __future__ import annotations

import json

import pytest
from safetensors.torch import load_file

from dreamtune import config
from dreamtune.errors import UserError
from dreamtune.models.tiny import build_tiny_feature_models
from dreamtune.training.monitor import choose
from dreamtune.training.run import train
from tests.conftest import tiny_overrides


def test_selection_rule_keeps_clip_t_above_its_floor():
    records = [
        {"step": 0, "clip_i": 0.50, "clip_t": 0.30},
        {"step": 10, "clip_i": 0.60, "clip_t": 0.29},
        {"step": 20, "clip_i": 0.70, "clip_t": 0.20},
    ]
    best, reason = choose(records, "clip_i_with_clip_t_floor", 0.95)
    assert best["step"] == 10 and "2 of 3" in reason
    assert choose(records, "clip_i", 0.95)[0]["step"] == 20
    assert choose(records, "clip_i_with_clip_t_floor", 2.0)[0]["step"] == 0
    rewarded = [{**r, "reward": r["clip_i"]} for r in records]
    best, reason = choose(rewarded, "reward_with_clip_t_floor", 0.9)
    assert best["step"] == 10 and reason.startswith("highest reward")
    assert choose(rewarded, "reward_with_clip_i_floor", 0.9, clip_i_floor=1.3)[0]["step"] == 20  # only 0.7 >= 0.65
    best, reason = choose(rewarded, "reward_with_clip_i_floor", 0.9, clip_i_floor=1.5)
    assert best["step"] == 0 and "CLIP-I" in reason and "kept the start" in reason


def test_select_best_without_the_monitor_is_refused():
    with pytest.raises(UserError, match="monitor.every"):
        config.load(None, ["monitor.select_best=clip_i"])


@pytest.mark.parametrize("rule, floor", [("clip_i", 0.95), ("clip_i_with_clip_t_floor", 10.0)])
def test_monitor_logs_points_and_the_export_holds_the_selected_step(tmp_path, tiny_models, photos, rule, floor):
    clip = build_tiny_feature_models(tmp_path / "features")["clip"]
    out = tmp_path / "run"
    overrides = tiny_overrides(tiny_models["sd1"], photos, out, **{"train.steps": 4, "train.lr": 0.05}) + [
        "method.kind=lora",
        "data.instance_prompt=a sks dog",
        "monitor.every=2",
        "monitor.seeds=[0]",
        "monitor.class_images=2",
        "monitor.sample_steps=2",
        f"monitor.clip={clip}",
        f"monitor.select_best={rule}",
        f"monitor.clip_t_floor={floor}",
    ]
    result = train(config.load(None, overrides), show_progress=False, log=lambda *_: None)
    records = [json.loads(l) for l in (out / "monitor" / "monitor.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [0, 2, 4] and all({"clip_i", "clip_t", "pres"} <= set(r) for r in records)
    selected = json.loads((result.model_dir / "dreamtune.json").read_text())["selected"]
    report = (out / "report.html").read_text()
    assert f"Selected step {selected['step']}" in report and (out / "monitor.png").is_file()
    lora_b = [
        v for k, v in load_file(str(result.model_dir / "pytorch_lora_weights.safetensors")).items() if "lora_B" in k
    ]
    if rule == "clip_i":
        assert selected["step"] == max(records, key=lambda r: r["clip_i"])["step"]
    else:  # no step keeps CLIP-T >= 10x its start: the start (LoRA B = 0) is exported, not the trained step 4
        assert selected["step"] == 0 and "kept the start" in selected["reason"]
        assert all(float(v.abs().max()) == 0.0 for v in lora_b)


@pytest.mark.parametrize("method", ["dreambooth", "lora"])
def test_bf16_training_renders_validation_and_monitor_samples(tmp_path, tiny_models, photos, method):
    """A trained fp32 UNet beside a frozen bf16 VAE, or fp32 LoRA convs inside a bf16 UNet:
    sampling during training must not mix dtypes."""
    clip = build_tiny_feature_models(tmp_path / "features")["clip"]
    out = tmp_path / "run"
    overrides = tiny_overrides(
        tiny_models["sd1"], photos, out, **{"train.steps": 2, "train.mixed_precision": "bf16", "train.memory": "manual"}
    ) + [
        f"method.kind={method}",
        "method.lora.target_modules=[to_q, conv1, conv2]",
        "data.instance_prompt=a sks dog",
        "train.validate_every=2",
        "train.validation_prompts=[a sks dog]",
        "monitor.every=2",
        "monitor.seeds=[0]",
        "monitor.class_images=1",
        "monitor.sample_steps=2",
        f"monitor.clip={clip}",
    ]
    train(config.load(None, overrides), show_progress=False, log=lambda *_: None)
    assert (out / "validation" / "step-000002.png").is_file() and (out / "monitor" / "step-000002.png").is_file()
