"""train.gradient_checkpointing: auto (training/memory_plan.py): the probe measures what a step
keeps, the estimate scales with the area as the real forward does, and both decisions train the
same weights as the explicit settings."""

import torch
from safetensors.torch import load_file

from dreamtune import config
from dreamtune.models.loading import load_components
from dreamtune.training import memory_plan
from dreamtune.training.run import train
from tests.conftest import tiny_overrides


def _lora(out):
    return load_file(next((out / "model").rglob("pytorch_lora_weights.safetensors")))


def test_probe_counts_activations_that_grow_with_the_area(tiny_models):
    cfg = config.load(None, [f"model.pretrained={tiny_models['sd1']}"])
    components = load_components(cfg.model)
    for p in components.denoiser.parameters():
        p.requires_grad_(False)
    no_autocast = lambda: torch.autocast("cpu", enabled=False)
    small, large = (memory_plan.saved_activation_bytes(components, side, no_autocast) for side in (64, 128))
    assert small > 0
    assert 3.0 < large / small < 4.5  # 4x the pixels: ~4x the activations (plus a few fixed-size tensors)
    weights = sum(p.numel() * p.element_size() for p in components.denoiser.parameters())
    assert small < 40 * weights  # the frozen weights themselves are not counted as activations


def test_auto_trains_what_the_explicit_setting_trains(tiny_models, photos, tmp_path, monkeypatch, capsys):
    settings = {"method.kind": "lora", "train.steps": 2, "train.lr": 1e-3, "data.instance_prompt": "a photo of sks dog"}
    runs = {}
    for name, value, share in (
        ("off", False, None),
        ("auto-off", "auto", 0.6),
        ("on", True, None),
        ("auto-on", "auto", 1e-12),
    ):
        if share is not None:
            monkeypatch.setattr(memory_plan, "FREE_SHARE", share)  # 1e-12: as if the device had no memory to spare
        out = tmp_path / name
        train(
            config.load(
                None,
                tiny_overrides(tiny_models["sd1"], photos, out, **settings, **{"train.gradient_checkpointing": value}),
            ),
            show_progress=False,
        )
        runs[name] = _lora(out)
        logged = capsys.readouterr().out
        if value == "auto":
            expected = (
                "gradient checkpointing on (it would not fit)"
                if share < 1 / 1000
                else "gradient checkpointing off (it fits)"
            )
            assert expected in logged, logged
    for auto, explicit in (("auto-off", "off"), ("auto-on", "on")):
        assert runs[auto].keys() == runs[explicit].keys()
        assert all(torch.allclose(runs[auto][k], runs[explicit][k], atol=1e-6) for k in runs[auto])


def test_auto_is_a_valid_value_and_others_are_one_sentence_errors():
    assert config.load(None, ["train.gradient_checkpointing=auto"]).train.gradient_checkpointing == "auto"
    try:
        config.load(None, ["train.gradient_checkpointing=sometimes"])
    except Exception as error:  # noqa: BLE001 - the message is what is tested
        assert "true or false, or one of 'auto'" in str(error) and "\n" not in str(error)
    else:
        raise AssertionError("an invalid value was accepted")
