"""The print reward: CIEDE2000 against Sharma et al.'s test data, the ICC lookup tables against
LittleCMS, and the property issue 15 asks for — throwing colour away cannot win."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dreamtune.errors import UserError
from dreamtune.rewards.colour import ciede2000, colourfulness, srgb_to_lab
from dreamtune.rewards.print_proof import DEFAULT_PROFILES, PrintProof, littlecms_proof, open_profile

# (L1, a1, b1), (L2, a2, b2), ΔE00 — pairs from Sharma, Wu & Dalal (2005), table 1
SHARMA = [
    ((50, 2.6772, -79.7751), (50, 0, -82.7485), 2.0425),
    ((50, 0, 0), (50, -1, 2), 2.3669),
    ((50, -0.001, 2.49), (50, 0.0009, -2.49), 4.8045),
    ((50, 2.5, 0), (50, 0, -2.5), 4.3065),
    ((50, 2.5, 0), (73, 25, -18), 27.1492),
    ((50, 2.5, 0), (61, -5, 29), 22.8977),
    ((50, 2.5, 0), (56, -27, -3), 31.9030),
    ((50, 2.5, 0), (58, 24, 15), 19.4535),
    ((60.2574, -34.0099, 36.2677), (60.4626, -34.1751, 39.4387), 1.2644),
    ((22.7233, 20.0904, -46.6940), (23.0331, 14.9730, -42.5619), 2.0373),
    ((2.0776, 0.0795, -1.1350), (0.9033, -0.0636, -0.5514), 0.9082),
]

needs_profile = pytest.mark.skipif(
    not any(__import__("pathlib").Path(p).is_file() for p in DEFAULT_PROFILES),
    reason="Ghostscript's default_cmyk.icc is not installed (apt-get install libgs-common; make setup does it)",
)


def test_ciede2000_matches_sharmas_test_pairs():
    first = torch.tensor([p[0] for p in SHARMA], dtype=torch.float32).view(-1, 3, 1, 1)
    second = torch.tensor([p[1] for p in SHARMA], dtype=torch.float32).view(-1, 3, 1, 1)
    expected = torch.tensor([p[2] for p in SHARMA])
    assert torch.allclose(ciede2000(first, second).flatten(), expected, atol=1e-3)
    assert torch.allclose(ciede2000(second, first).flatten(), expected, atol=1e-3)  # symmetric


def test_colourfulness_is_zero_for_grey_and_grows_with_saturation():
    image = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    grey = image.mean(1, keepdim=True).expand_as(image)
    assert float(colourfulness(grey)) < 0.1 < float(colourfulness(0.5 * (image + grey))) < float(colourfulness(image))


def scenes(count: int = 6, size: int = 96) -> torch.Tensor:
    from PIL import Image

    from dreamtune.miniature import scenery, world

    images = [
        world.render(world.Scene(name, context), 7 + k).resize((size, size), Image.LANCZOS)
        for k, (name, context) in enumerate(zip(world.HELD_OUT, list(scenery.PHRASES)[:count]))
    ]
    return torch.from_numpy(np.stack([np.asarray(i, dtype=np.float32) / 255 for i in images])).permute(0, 3, 1, 2)


@needs_profile
def test_lookup_tables_agree_with_littlecms():
    reward = PrintProof()
    images = scenes()
    drift = ciede2000(srgb_to_lab(reward.proof(images)), srgb_to_lab(littlecms_proof(images, reward.profile))).flatten()
    assert float(drift.mean()) < 1.0 and float(drift.quantile(0.99)) < 3.0
    assert (
        float(reward.ink(images).max()) <= 400.0 and float(reward.ink(torch.zeros(1, 3, 4, 4)).min()) > 200.0
    )  # black: lots of ink


@needs_profile
def test_throwing_colour_away_scores_below_a_soft_proof():
    reward = PrintProof()
    images = scenes()
    meta = {"reference": images}
    grey = images.mean(1, keepdim=True).expand_as(images)
    blurred = torch.nn.functional.avg_pool2d(images, 5, stride=1, padding=2, count_include_pad=False)
    proof = reward(littlecms_proof(images, reward.profile), [""] * len(images), meta)
    for hack in (grey, images + 0.5 * (grey - images), 0.2 + 0.8 * images, blurred):
        assert bool((reward(hack, [""] * len(images), meta) < proof).all())


@needs_profile
def test_the_reward_is_differentiable():
    reward = PrintProof()
    images = scenes(2, 32).requires_grad_(True)
    reward(images, ["", ""], {"reference": images.detach() * 0.9}).sum().backward()
    assert images.grad is not None and torch.isfinite(images.grad).all() and float(images.grad.abs().sum()) > 0


def test_a_bad_profile_is_one_clear_sentence(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        open_profile(tmp_path / "missing.icc")
    (tmp_path / "junk.icc").write_bytes(b"not a profile")
    with pytest.raises(UserError, match="not an ICC profile"):
        open_profile(tmp_path / "junk.icc")
    from PIL import ImageCms

    (tmp_path / "srgb.icc").write_bytes(ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())
    with pytest.raises(UserError, match="CMYK output profile is needed"):
        open_profile(tmp_path / "srgb.icc")
