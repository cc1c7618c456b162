"""ObjectiveContract: every objective gives a finite scalar loss per optimizer, its gradients
reach only trainable parameters, and a fixed seed gives the same result."""

from __future__ import annotations

import torch

from dreamtune import config
from dreamtune.data.augment import AugmentPlan
from dreamtune.data.datasets import DatasetBatches, ImageSet
from dreamtune.data.prepare import PrepareOptions, prepare
from dreamtune.models.adapters import make_trainable
from dreamtune.models.loading import load_components
from dreamtune.objectives.denoising import DenoisingObjective, NoiseSettings
from dreamtune.objectives.prior import PriorPreservation
from tests.conftest import settings_of


def _objective(tiny_models, family, kind, prior, tmp_path, photos, min_snr=None):
    """A denoising objective built by hand (the prior-loss arithmetic test below needs its parts)."""
    extra = ["data.instance_prompt=a photo of <sks> dog"] if kind == "textual_inversion" else []
    cfg = config.load(
        None, [f"model.pretrained={tiny_models[family]}", f"method.kind={kind}", "prior.class_prompt=a dog", *extra]
    )
    components = load_components(cfg.model)
    torch.manual_seed(0)
    parts = make_trainable(components, cfg)
    inner = DenoisingObjective(
        components, parts.modules, settings_of(NoiseSettings, "train", seed=3, min_snr_gamma=min_snr)
    )
    objective = PriorPreservation(inner, 0.5) if prior else inner
    prepared = tmp_path / "prepared"
    if not prepared.exists():
        prepare(photos, prepared, PrepareOptions(resolution=32, caption="a photo of <sks> dog"))
    images = ImageSet(prepared)
    source = DatasetBatches(images, 2, 0, AugmentPlan(), classes=images if prior else None)
    return objective, source, components


def test_prior_loss_is_instance_mean_plus_weighted_class_mean(tiny_models, tmp_path, photos):
    objective, source, _ = _objective(tiny_models, "sd1", "lora", True, tmp_path, photos)
    batch = source.batch(0)
    per_sample, _ = objective.inner.per_sample_loss(batch, 0)
    mask = batch["is_prior"]
    expected = per_sample[~mask].mean() + 0.5 * per_sample[mask].mean()
    assert torch.allclose(objective(batch, 0).losses["model"], expected)
