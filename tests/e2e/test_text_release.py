"""Encode, then free (train.free_text_encoders, issue 32): the run encodes every prompt before step 1
and drops the frozen text encoders; its losses and weights are bit-identical to a run that keeps them."""

import pytest
import torch
from safetensors.torch import load_file

from dreamtune import config
from dreamtune.training.run import train
from tests.conftest import tiny_overrides, train_killed_at

SETTINGS = {
    "data.instance_prompt": "a photo of sks dog",
    "train.steps": 4,
    "train.lr": 5e-3,
    "prior.enabled": True,
    "prior.class_prompt": "a photo of dog",
    "data.caption_dropout": 0.3,
    "train.checkpoint_every": 2,
}


def _run(tiny_models, photos, out, family, **extra):
    messages = []
    cfg = config.load(None, tiny_overrides(tiny_models[family], photos, out, **{**SETTINGS, **extra}))
    return train(cfg, show_progress=False, log=messages.append), messages


def _weights(result):
    return load_file(str(result.model_dir / "pytorch_lora_weights.safetensors"))


@pytest.mark.parametrize("family", ["flux", "sd3", "sd1"])
def test_freed_text_encoders_change_nothing_but_memory(tiny_models, photos, tmp_path, family):
    kept, _ = _run(tiny_models, photos, tmp_path / "kept", family, **{"train.free_text_encoders": False})
    freed, messages = _run(tiny_models, photos, tmp_path / "freed", family, **{"train.free_text_encoders": True})
    said = [m for m in messages if "freed the text encoders" in m]
    assert len(said) == 1 and said[0].startswith("encoded 3 prompt(s) once")  # caption, class prompt, "" (dropout)
    assert all(p.device.type == "meta" for e in freed.components.text_encoders for p in e.parameters())
    assert [r["loss"] for r in kept.history] == [r["loss"] for r in freed.history]
    a, b = _weights(kept), _weights(freed)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_auto_keeps_small_encoders_and_validation_keeps_them_with_a_note(tiny_models, photos, tmp_path):
    small, messages = _run(tiny_models, photos, tmp_path / "auto", "flux")  # auto: tiny encoders stay
    assert not any("freed" in m for m in messages) and all(
        p.device.type == "cpu" for p in small.components.text_encoders[0].parameters()
    )
    _, messages = _run(
        tiny_models,
        photos,
        tmp_path / "validated",
        "flux",
        **{"train.free_text_encoders": True, "train.validate_every": 2},
    )
    assert any(
        m == "note: the text encoders stay in memory: train.validate_every encodes prompts during training"
        for m in messages
    )


def test_a_resumed_run_that_freed_its_encoders_is_bit_identical(tiny_models, photos, tmp_path, monkeypatch):
    full, _ = _run(tiny_models, photos, tmp_path / "full", "flux", **{"train.free_text_encoders": True})
    cut = config.load(
        None,
        tiny_overrides(tiny_models["flux"], photos, tmp_path / "cut", **{**SETTINGS, "train.free_text_encoders": True}),
    )
    train_killed_at(cut, 3, monkeypatch)
    resumed = train(cut, resume="latest", show_progress=False, log=lambda *_: None)
    a, b = _weights(full), _weights(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("family", ["flux2-klein", "sd3"])
def test_the_denoiser_loads_only_after_the_text_encoders_are_gone(tiny_models, photos, tmp_path, family, monkeypatch):
    """With every prompt known before loading (prior preservation off, or its class images there), the text
    encoders are used and freed first: they and the denoiser are never in memory together. Same run, bit for bit."""
    from dreamtune.models import loading

    seen = []
    pending = loading.load_pending_denoiser

    def watched(components, *args):
        if components.extra.get("denoiser_pending"):
            seen.append(all(p.is_meta for e in components.text_encoders for p in e.parameters()))
        return pending(components, *args)

    settings = {"prior.enabled": False}
    kept, _ = _run(tiny_models, photos, tmp_path / "kept", family, **settings, **{"train.free_text_encoders": False})
    monkeypatch.setattr("dreamtune.training.run_steps.load_pending_denoiser", watched)
    early, messages = _run(
        tiny_models, photos, tmp_path / "early", family, **settings, **{"train.free_text_encoders": True}
    )
    assert seen == [True]
    assert any(
        m.startswith("encoded 2 prompt(s) once") and m.endswith("before loading the denoiser") for m in messages
    )  # caption, ""
    assert [r["loss"] for r in kept.history] == [r["loss"] for r in early.history]
    a, b = _weights(kept), _weights(early)
    assert all(torch.equal(a[k], b[k]) for k in a)
