"""ObjectiveContract: every objective gives a finite scalar loss per optimizer, its gradients
reach only trainable parameters, and a fixed seed gives the same result."""

from __future__ import annotations

import pytest
import torch

from dreamtune import config
from dreamtune.data.augment import AugmentPlan
from dreamtune.data.datasets import DatasetBatches, ImageSet
from dreamtune.data.prepare import PrepareOptions, prepare
from dreamtune.models.adapters import make_trainable
from dreamtune.models.loading import load_components
from dreamtune.objectives.denoising import DenoisingObjective, NoiseSettings
from dreamtune.objectives.prior import PriorPreservation


def _objective(tiny_models, family, kind, prior, tmp_path, photos, min_snr=None):
    extra = ["data.instance_prompt=a photo of <sks> dog"] if kind == "textual_inversion" else []
    cfg = config.load(
        None, [f"model.pretrained={tiny_models[family]}", f"method.kind={kind}", "prior.class_prompt=a dog", *extra]
    )
    components = load_components(cfg.model)
    torch.manual_seed(0)
    parts = make_trainable(components, cfg)
    inner = DenoisingObjective(components, parts.modules, NoiseSettings(seed=3, min_snr_gamma=min_snr))
    objective = PriorPreservation(inner, 0.5) if prior else inner
    prepared = tmp_path / "prepared"
    if not prepared.exists():
        prepare(photos, prepared, PrepareOptions(resolution=32, caption="a photo of <sks> dog"))
    images = ImageSet(prepared)
    source = DatasetBatches(images, 2, 0, AugmentPlan(), classes=images if prior else None)
    return objective, source, components


CASES = [
    ("sd1", "lora", False),
    ("sd1", "dreambooth", True),
    ("sd2-v", "lora", True),
    ("sdxl", "lora", True),
    ("sd1", "textual_inversion", False),
    ("sdxl", "textual_inversion", True),
]


class ObjectiveContract:
    @pytest.mark.parametrize("family, kind, prior", CASES)
    def test_finite_scalar_losses_per_optimizer(self, tiny_models, family, kind, prior, tmp_path, photos):
        objective, source, _ = _objective(tiny_models, family, kind, prior, tmp_path, photos, min_snr=5.0)
        output = objective(source.batch(0), 0)
        assert set(output.losses) == set(objective.trainable_modules())
        for loss in output.losses.values():
            assert loss.ndim == 0 and torch.isfinite(loss)

    @pytest.mark.parametrize("family, kind, prior", CASES)
    def test_gradients_reach_only_trainable_parameters(self, tiny_models, family, kind, prior, tmp_path, photos):
        objective, source, components = _objective(tiny_models, family, kind, prior, tmp_path, photos)
        sum(objective(source.batch(0), 0).losses.values()).backward()
        trainable = {id(p) for m in objective.trainable_modules().values() for p in m.parameters() if p.requires_grad}
        everything = [components.denoiser, components.vae, *components.text_encoders]
        for module in everything:
            for name, parameter in module.named_parameters():
                if id(parameter) not in trainable:
                    assert parameter.grad is None, name
        got_gradient = [p for m in objective.trainable_modules().values() for p in m.parameters() if p.grad is not None]
        assert got_gradient and any(p.grad.abs().sum() > 0 for p in got_gradient)

    @pytest.mark.parametrize("family, kind, prior", CASES[:3])
    def test_fixed_seed_same_result(self, tiny_models, family, kind, prior, tmp_path, photos):
        objective, source, _ = _objective(tiny_models, family, kind, prior, tmp_path, photos)
        first = objective(source.batch(1), 1).losses["model"].item()
        again = objective(source.batch(1), 1).losses["model"].item()
        other = objective(source.batch(2), 2).losses["model"].item()
        assert first == again and first != other


class TestDenoisingObjectives(ObjectiveContract):
    pass


def test_prior_loss_is_instance_mean_plus_weighted_class_mean(tiny_models, tmp_path, photos):
    objective, source, _ = _objective(tiny_models, "sd1", "lora", True, tmp_path, photos)
    batch = source.batch(0)
    per_sample, _ = objective.inner.per_sample_loss(batch, 0)
    mask = batch["is_prior"]
    expected = per_sample[~mask].mean() + 0.5 * per_sample[mask].mean()
    assert torch.allclose(objective(batch, 0).losses["model"], expected)
