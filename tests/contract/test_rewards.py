"""Every reward honours one contract: (B,3,H,W) in [0,1] + prompts -> finite (B,) tensor, its
parts are (B,) too, and a differentiable reward passes gradients back to the pixels. Plus checks
that each one measures what it says."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from dreamtune.evaluation.features import load_clip
from dreamtune.models.tiny import build_tiny_feature_models
from dreamtune.rewards.alignment import ClipScore, SubjectFidelity, SubjectInContext
from dreamtune.rewards.base import WeightedRewards
from dreamtune.rewards.compression import JpegCompressibility, JpegIncompressibility
from dreamtune.rewards.print_quality import PrintQuality, gamut_share, sharpness, srgb_to_lab, tonal_range


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return load_clip(build_tiny_feature_models(tmp_path_factory.mktemp("clip"))["clip"])


def _rewards(clip):
    photos = [Image.new("RGB", (32, 32), (200, 30, 30)), Image.new("RGB", (32, 32), (180, 40, 40))]
    return [
        PrintQuality(),
        JpegCompressibility(),
        JpegIncompressibility(),
        ClipScore(clip),
        SubjectFidelity(clip, photos),
        SubjectInContext(
            clip, photos, [Image.new("RGB", (32, 32), (30, 30, 200))], ["a sks dog on the beach", "a cat"]
        ),
    ]


def test_every_reward_honours_the_contract(clip):
    torch.manual_seed(0)
    images = torch.rand(3, 3, 32, 32, requires_grad=True)
    prompts = ["a sks dog on the beach", "a cat", "a red can"]
    for reward in _rewards(clip):
        value = reward(images, prompts, {})
        assert value.shape == (3,) and torch.isfinite(value).all(), reward.name
        assert all(v.shape == (3,) for v in reward.parts(images, prompts, {}).values()), reward.name
        if reward.differentiable:
            (grad,) = torch.autograd.grad(value.sum(), images)
            assert torch.isfinite(grad).all() and grad.abs().sum() > 0, reward.name


def test_weighted_rewards_sum_and_log_every_part(clip):
    images = torch.rand(2, 3, 32, 32)
    combined = WeightedRewards([(2.0, PrintQuality()), (0.5, JpegIncompressibility())])
    total, logged = combined.evaluate(images, ["a", "b"], {})
    expected = 2.0 * PrintQuality()(images, ["a", "b"], {}) + 0.5 * JpegIncompressibility()(images, ["a", "b"], {})
    assert torch.allclose(total, expected, atol=1e-5) and not combined.differentiable
    assert {
        "reward",
        "reward/print_quality",
        "reward/print_quality/gamut",
        "reward/print_quality/sharpness",
        "reward/print_quality/tonal",
        "reward/jpeg_incompressibility",
    } <= set(logged)


def test_srgb_to_lab_matches_published_d65_values_and_pillow_lightness():
    from PIL import ImageCms

    colours = torch.tensor([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0], [1.0, 1.0, 1.0]]).view(4, 3, 1, 1)
    expected = torch.tensor([[53.24, 80.09, 67.20], [87.73, -86.18, 83.18], [32.30, 79.19, -107.86], [100.0, 0.0, 0.0]])
    assert torch.allclose(srgb_to_lab(colours).view(4, 3), expected, atol=0.1)
    array = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    transform = ImageCms.buildTransform(ImageCms.createProfile("sRGB"), ImageCms.createProfile("LAB"), "RGB", "LAB")
    lightness = np.asarray(ImageCms.applyTransform(Image.fromarray(array), transform))[..., 0].astype(float) * 100 / 255
    mine = srgb_to_lab(torch.from_numpy(array).permute(2, 0, 1)[None].float() / 255)[0, 0].numpy()
    assert np.abs(mine - lightness).mean() < 1.0  # L* agrees (a*/b* differ: lcms works in D50)


def test_print_quality_parts_measure_what_they_say():
    flat = lambda rgb: torch.tensor(rgb).view(1, 3, 1, 1).expand(1, 3, 16, 16)
    # saturated sRGB blue, green and red are outside coated-paper gamut; greys and beige inside
    assert gamut_share(flat([0.0, 0.0, 1.0])) < 0.01 and gamut_share(flat([0.0, 1.0, 0.0])) < 0.01
    assert gamut_share(flat([1.0, 0.0, 0.0])) < 0.01 and gamut_share(flat([0.8, 0.7, 0.6])) > 0.99
    checker = (torch.arange(16).view(16, 1) + torch.arange(16).view(1, 16)) % 2
    sharp = checker.float().expand(1, 3, 16, 16) * 0.8 + 0.1
    assert sharpness(sharp) > 0.9 and sharpness(flat([0.5, 0.5, 0.5])) < 0.01
    ramp = torch.linspace(0.1, 0.9, 16).view(1, 1, 1, 16).expand(1, 3, 16, 16)
    clipped = (ramp > 0.5).float()  # only pure black and pure white
    assert tonal_range(ramp) > 0.6 and tonal_range(clipped) < 0.05 and tonal_range(flat([0.5, 0.5, 0.5])) < 0.01


def test_jpeg_rewards_prefer_flat_or_busy_images():
    flat, noise = torch.full((1, 3, 64, 64), 0.5), torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    assert JpegCompressibility()(flat, ["a"], {}) > JpegCompressibility()(noise, ["a"], {})
    assert JpegIncompressibility()(noise, ["a"], {}) > JpegIncompressibility()(flat, ["a"], {})


def test_subject_fidelity_prefers_the_subject(clip):
    photos = [Image.new("RGB", (32, 32), (200, 30, 30))]
    reward = SubjectFidelity(clip, photos)
    same = torch.tensor([200 / 255, 30 / 255, 30 / 255]).view(1, 3, 1, 1).expand(1, 3, 32, 32)
    other = torch.tensor([0.1, 0.8, 0.9]).view(1, 3, 1, 1).expand(1, 3, 32, 32)
    assert reward(same, ["x"], {}) > reward(other, ["x"], {})


def _pixels(images) -> torch.Tensor:
    return torch.stack([torch.from_numpy(np.array(i)).permute(2, 0, 1) for i in images]).float() / 255


def test_subject_in_context_knows_a_new_shape_from_its_class_and_the_prompted_scene():
    """The mini CLIP (not a tiny random one): a briefcase (a backpack of a shape pretraining never
    drew) against the class's usual backpacks, and each scene against the others."""
    from dreamtune.miniature import scenery, world
    from dreamtune.miniature.assemble import MODEL_DIR
    from dreamtune.miniature.judge import JudgeFeatures, load_judge

    clip = load_clip(MODEL_DIR / "clip")
    render = lambda name, scene, seed: world.render(world.Scene(name, scene), seed)
    photos = [render("backpack_briefcase", c, 50_000 + i) for i, c in enumerate([None, "wooden_floor"] * 2)]
    class_images = [render(f"backpack{k}", None, 70_000 + k) for k in range(3)]
    scenes = ["snow", "beach", "jungle"]
    prompts = [f"a sks backpack {scenery.PHRASES[s]}" for s in scenes]
    reward = SubjectInContext(clip, photos, class_images, prompts, "sks", identity_weight=0.5)
    subject = _pixels([render("backpack_briefcase", s, i) for i, s in enumerate(scenes)])
    usual = _pixels([render("backpack1", s, i) for i, s in enumerate(scenes)])
    mine, theirs = reward.parts(subject, prompts, {}), reward.parts(usual, prompts, {})
    assert (mine["identity"] > 0.8).all() and (theirs["identity"] < 0.2).all()
    assert (mine["context"] > 0.5).all() and (theirs["context"] > 0.5).all()  # both in their scenes
    elsewhere = reward.parts(subject, prompts[1:] + prompts[:1], {})  # each image asked for another scene
    assert (elsewhere["context"] < 0.5).all()
    # neither half can be traded for the other: the harmonic mean is at most twice the weaker half
    for parts in (mine, theirs, elsewhere):
        weaker = torch.minimum(parts["identity"], parts["context"])
        assert (parts["subject_in_context"] <= 2 * weaker + 1e-6).all()
    only_identity = SubjectInContext(clip, photos, class_images, prompts, "sks", identity_weight=1.0)
    assert torch.allclose(only_identity(subject, prompts, {}), mine["identity"], atol=1e-5)
    # the identity half through the judge's instance embedding instead (rl.identity_model), the scene still CLIP's
    judged = JudgeFeatures(load_judge(MODEL_DIR / "judge"))
    seen = SubjectInContext(clip, photos, class_images, prompts, "sks", identity_features=judged)
    by_judge, of_usual = seen.parts(subject, prompts, {}), seen.parts(usual, prompts, {})
    assert (by_judge["identity"] > of_usual["identity"] + 0.3).all()
    assert torch.equal(by_judge["context"], mine["context"]) and not torch.allclose(
        by_judge["identity"], mine["identity"]
    )
