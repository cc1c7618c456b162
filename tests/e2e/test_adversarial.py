"""The adversarial objective on tiny models: each loss reaches only its own parameters, it
composes with LoRA / textual inversion / full DreamBooth and prior preservation, and its
discriminator state is in checkpoints (a resumed run is bit-identical)."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from dreamtune import config
from dreamtune.models.adapters import make_trainable
from dreamtune.models.loading import load_components
from dreamtune.models.tiny import build_tiny_feature_models
from dreamtune.objectives.augment import diff_augment
from dreamtune.training.assembly import Ingredients, RunPlan, build, wrap_trainable
from dreamtune.training.run import train
from tests.conftest import tiny_overrides, train_killed_at


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    return build_tiny_feature_models(tmp_path_factory.mktemp("features"))["clip"]


def _settings(clip_dir, **extra):
    return {
        "adversarial.weight": 0.5,
        "adversarial.features": str(clip_dir),
        "data.instance_prompt": "a photo of <sks> dog",
        "prior.class_prompt": "a photo of dog",
        "method.textual_inversion.placeholder_token": "<sks>",
        **extra,
    }


@pytest.mark.parametrize(
    "kind, prior, discriminator",
    [
        ("lora", True, "clip"),
        ("textual_inversion", False, "clip"),
        ("dreambooth", True, "clip"),
        ("lora", True, "denoiser"),
        ("dreambooth", False, "denoiser"),
    ],
)
def test_each_loss_reaches_only_its_own_parameters(tiny_models, photos, tmp_path, clip_dir, kind, prior, discriminator):
    from accelerate import Accelerator

    from dreamtune.data.augment import AugmentPlan
    from dreamtune.data.datasets import DatasetBatches, ImageSet
    from dreamtune.data.prepare import PrepareOptions, prepare

    cfg = config.load(
        None,
        tiny_overrides(
            tiny_models["sd1"],
            photos,
            tmp_path,
            **_settings(
                clip_dir, **{"method.kind": kind, "prior.enabled": prior, "adversarial.discriminator": discriminator}
            ),
        ),
    )
    components = load_components(cfg.model)
    parts = make_trainable(components, cfg)
    prepared = (
        prepare(photos, tmp_path / "prepared", PrepareOptions(resolution=32, caption="a photo of <sks> dog"))
        and tmp_path / "prepared"
    )
    accelerator = Accelerator(cpu=True)
    ingredients = Ingredients(
        cfg,
        components,
        wrap_trainable(components, accelerator),
        parts,
        accelerator,
        prepared,
        None,
        tmp_path / "cache",
        [],
    )
    objective = build(ingredients, RunPlan.of(cfg))[0]
    assert set(objective.trainable_modules()) == {"model", "discriminator"}
    if discriminator == "denoiser":  # LADD's feature network: a frozen copy, in no optimizer
        copy = objective.discriminator.denoiser[0]
        assert copy is not components.denoiser and not any(p.requires_grad for p in copy.parameters())
        assert not {id(p) for p in copy.parameters()} & {
            id(p) for p in objective.trainable_modules()["discriminator"].parameters()
        }
    images = ImageSet(prepared)
    batch = DatasetBatches(images, 2, 0, AugmentPlan(), classes=images if prior else None).batch(0)
    heads = list(objective.trainable_modules()["discriminator"].parameters())
    model = [p for p in objective.trainable_modules()["model"].parameters() if p.requires_grad]

    def gradients(select):
        for p in heads + model:
            p.grad = None
        output = objective(batch, 0)
        sum(output.losses[k] for k in select).backward()
        return [None if p.grad is None else p.grad.clone() for p in heads], [
            None if p.grad is None else p.grad.clone() for p in model
        ]

    heads_d, model_d = gradients(["discriminator"])
    heads_m, model_m = gradients(["model"])
    heads_both, model_both = gradients(["model", "discriminator"])
    assert all(g is None for g in model_d) and all(g is None for g in heads_m)  # no cross-talk
    assert all(torch.allclose(a, b) for a, b in zip(heads_d, heads_both))
    assert all(torch.allclose(a, b) for a, b in zip(model_m, model_both) if a is not None)
    assert any(g is not None and g.abs().sum() > 0 for g in model_m)


def test_diff_augment_is_seeded_and_differentiable():
    images = torch.rand(2, 3, 16, 16, requires_grad=True)
    first = diff_augment(images, torch.Generator().manual_seed(0))
    assert torch.equal(first, diff_augment(images, torch.Generator().manual_seed(0)))
    assert not torch.equal(first, diff_augment(images, torch.Generator().manual_seed(1)))
    first.sum().backward()
    assert images.grad is not None and images.grad.abs().sum() > 0


@pytest.mark.parametrize("discriminator", ["clip", "denoiser"])
def test_adversarial_run_resumes_bit_identically_with_its_discriminator(
    tiny_models, photos, tmp_path, clip_dir, monkeypatch, discriminator
):
    settings = _settings(
        clip_dir,
        **{
            "method.kind": "lora",
            "prior.enabled": True,
            "train.steps": 4,
            "train.checkpoint_every": 2,
            "data.instance_prompt": "a photo of sks dog",
            "adversarial.warmup_steps": 2,
            "train.lr": 1e-2,
            "adversarial.discriminator": discriminator,
        },
    )
    full = train(
        config.load(None, tiny_overrides(tiny_models["sd1"], photos, tmp_path / "full", **settings)),
        show_progress=False,
        log=lambda *_: None,
    )
    cut = config.load(None, tiny_overrides(tiny_models["sd1"], photos, tmp_path / "cut", **settings))
    train_killed_at(cut, 3, monkeypatch)
    assert (tmp_path / "cut" / "checkpoint-000002" / "trainable-discriminator.safetensors").is_file()
    assert (tmp_path / "cut" / "checkpoint-000002" / "optimizer-discriminator.pt").is_file()
    resumed = train(cut, resume="latest", show_progress=False, log=lambda *_: None)
    a = load_file(str(full.model_dir / "pytorch_lora_weights.safetensors"))
    b = load_file(str(resumed.model_dir / "pytorch_lora_weights.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [r["adv/d_loss"] for r in full.history[2:]] == [r["adv/d_loss"] for r in resumed.history]
    assert full.history[0]["adv/weight"] == 0.25 and full.history[1]["adv/weight"] == 0.5  # warm-up ramp


def test_generator_term_skips_steps_while_the_denoiser_discriminator_learns_on_every_step(
    tiny_models, photos, tmp_path, clip_dir
):
    """generator_every=2: the generator's term on even steps only; the heads learn on every step."""
    settings = _settings(
        clip_dir,
        **{
            "method.kind": "dreambooth",
            "prior.enabled": False,
            "train.steps": 4,
            "train.lr": 1e-3,
            "adversarial.discriminator": "denoiser",
            "adversarial.generator_every": 2,
            "data.instance_prompt": "a photo of sks dog",
        },
    )
    run = train(
        config.load(None, tiny_overrides(tiny_models["sd1"], photos, tmp_path / "run", **settings)),
        show_progress=False,
        log=lambda *_: None,
    )
    assert [r["adv/weight"] for r in run.history] == [0.5, 0.0, 0.5, 0.0]
    assert all(r["grad_norm/discriminator"] > 0 for r in run.history)


def test_denoiser_discriminator_refuses_a_transformer_with_one_sentence(tiny_models, photos, tmp_path, clip_dir):
    from dreamtune.errors import UserError

    settings = _settings(clip_dir, **{"method.kind": "lora", "adversarial.discriminator": "denoiser", "train.steps": 1})
    with pytest.raises(UserError, match="adversarial.discriminator=clip"):
        train(
            config.load(None, tiny_overrides(tiny_models["sd3"], photos, tmp_path / "run", **settings)),
            show_progress=False,
            log=lambda *_: None,
        )


def test_x0_from_small_timesteps_is_not_judged(tiny_models, photos, tmp_path, clip_dir):
    """adversarial.min_timestep above every timestep: nothing is judged, so neither loss moves anything."""
    settings = _settings(
        clip_dir,
        **{
            "method.kind": "lora",
            "prior.enabled": False,
            "train.steps": 2,
            "adversarial.min_timestep": 1000,
            "adversarial.discriminator": "denoiser",
            "adversarial.r1_gamma": 0,
            "data.instance_prompt": "a photo of sks dog",
        },
    )
    run = train(
        config.load(None, tiny_overrides(tiny_models["sd1"], photos, tmp_path / "run", **settings)),
        show_progress=False,
        log=lambda *_: None,
    )
    assert all(r["adv/d_loss"] == 0 and r["adv/g_loss"] == 0 and r["grad_norm/discriminator"] == 0 for r in run.history)
