"""print_in_context measures what it says: its simulated print agrees with LittleCMS and sees at a viewing
distance, and on real renders of a new shape (the mini CLIP and the miniature's judge, not tiny random
networks) the tricks that could buy it — greyscale, desaturation, blur, noise, flattening, a blown-out
contrast — lose, while mild output sharpening, which print people do, does not."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import ImageFilter

from dreamtune.rewards.colour import ciede2000, srgb_to_lab
from dreamtune.rewards.print_proof import DEFAULT_PROFILES, littlecms_proof
from dreamtune.rewards.simulated_print import SimulatedPrint, Viewing, seen_at

pytestmark = pytest.mark.skipif(
    not Path(DEFAULT_PROFILES[0]).is_file(),
    reason="Ghostscript's default_cmyk.icc is not installed (apt-get install libgs-common; make setup does it)",
)


def _pixels(images) -> torch.Tensor:
    return torch.stack([torch.from_numpy(np.array(i)).permute(2, 0, 1) for i in images]).float() / 255


def test_the_simulated_print_is_littlecms_with_paper_white_and_black_point_compensation():
    torch.manual_seed(0)
    images = torch.rand(2, 3, 24, 24).mul(255).round().div(255)
    printer = SimulatedPrint()
    exact = littlecms_proof(images, printer.profile, black_point_compensation=True, paper_white=True)
    drift = ciede2000(srgb_to_lab(printer.proof(images)), srgb_to_lab(exact))
    assert drift.mean() < 1.0 and drift.flatten().quantile(0.99) < 3.0
    white = torch.ones(1, 3, 4, 4)
    assert printer.proof(white).mean() < 0.95  # paper white is not the screen's white


def test_seeing_at_a_distance_keeps_flat_colour_and_blurs_colour_edges_before_lightness_edges():
    flat = torch.tensor([0.8, 0.3, 0.2]).view(1, 3, 1, 1).expand(1, 3, 16, 16)
    assert torch.allclose(seen_at(flat, 10.0), flat, atol=1e-4)
    stripes = (torch.arange(32) // 2 % 2).float().view(1, 1, 1, 32).expand(1, 1, 32, 32)
    red, green = torch.tensor([0.7, 0.2, 0.2]).view(1, 3, 1, 1), torch.tensor([0.2, 0.45, 0.2]).view(1, 3, 1, 1)
    chroma = stripes * red + (1 - stripes) * green  # about equal lightness, opposite hue
    lightness = stripes * 0.8 + (1 - stripes) * 0.2 + torch.zeros(1, 3, 1, 1)
    contrast = lambda before, after: float((after - after.mean()).abs().mean() / (before - before.mean()).abs().mean())  # noqa: E731
    assert contrast(chroma, seen_at(chroma, 10.0)) < contrast(lightness, seen_at(lightness, 10.0))
    # the same stripes printed smaller or seen from farther (more pixels per degree) are finer to the eye
    assert contrast(lightness, seen_at(lightness, 40.0)) < contrast(lightness, seen_at(lightness, 5.0))


@pytest.fixture(scope="module")
def briefcase():
    """print_in_context on the briefcase (a new shape), floors from its renders in six scenes."""
    from dreamtune.evaluation.features import load_clip
    from dreamtune.miniature import scenery, world
    from dreamtune.miniature.assemble import MODEL_DIR
    from dreamtune.miniature.judge import JudgeFeatures, load_judge
    from dreamtune.rewards.alignment import SubjectInContext
    from dreamtune.rewards.print_in_context import PrintInContext

    render = lambda name, scene, seed: world.render(world.Scene(name, scene), seed)  # noqa: E731
    photos = [render("backpack_briefcase", c, 50_000 + i) for i, c in enumerate([None, "wooden_floor"] * 2)]
    scenes = ["snow", "beach", "jungle", "city", "mountain", "autumn_tree"]
    prompts = [f"a sks backpack {scenery.PHRASES[s]}" for s in scenes]
    printer = SimulatedPrint(viewing=Viewing(4.0, 40.0))
    judged = SubjectInContext(
        load_clip(MODEL_DIR / "clip"),
        photos,
        [],
        prompts,
        "sks",
        identity_features=JudgeFeatures(load_judge(MODEL_DIR / "judge")),
        view=printer,
        margin=False,
    )
    reward = PrintInContext(judged, printer)
    images = _pixels([render("backpack_briefcase", s, 7 + i) for i, s in enumerate(scenes)])
    with pytest.raises(RuntimeError, match="before set_floors"):
        reward(images, prompts, {})
    reward.set_floors(images, prompts)
    return reward, images, prompts


def test_print_in_context_honours_the_reward_contract(briefcase):
    reward, images, prompts = briefcase
    moving = images.clone().requires_grad_(True)
    parts = reward.parts(moving, prompts, {})
    assert all(v.shape == (len(prompts),) and torch.isfinite(v).all() for v in parts.values())
    assert all(((v >= 0) & (v <= 1)).all() for v in parts.values())
    (grad,) = torch.autograd.grad(parts["print_in_context"].sum(), moving)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0
    # a prompt the floors never saw (a monitor's) is held to the mean floors
    assert torch.isfinite(reward(images[:1], ["a sks backpack on the moon"], {})).all()


def test_the_tricks_that_could_buy_it_lose_and_output_sharpening_does_not(briefcase):
    reward, images, prompts = briefcase
    score = lambda x: reward(x.clamp(0, 1), prompts, {})  # noqa: E731
    base = score(images)
    grey = images.mul(torch.tensor([0.2126, 0.7152, 0.0722]).view(1, 3, 1, 1)).sum(1, keepdim=True).expand_as(images)
    mean = images.mean((1, 2, 3), keepdim=True)
    noise = torch.randn(images.shape, generator=torch.Generator().manual_seed(0))
    tricks = {
        "greyscale": grey,
        "half saturation": grey + 0.5 * (images - grey),
        "noise": images + 0.03 * noise,
        "flat": mean + 0.7 * (images - mean),
        "blown": mean + 1.6 * (images - mean),
    }
    for name, changed in tricks.items():
        assert score(changed).mean() < 0.97 * base.mean(), name
    sharpen = ImageFilter.UnsharpMask(radius=1, percent=60, threshold=0)
    from PIL import Image

    from dreamtune.miniature import world  # noqa: F401  (renders come from the world)

    pil = [Image.fromarray((i.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)) for i in images]
    sharpened = _pixels([p.filter(sharpen) for p in pil])
    assert score(sharpened).mean() > 0.97 * base.mean()
