"""Subject masks (data.subject_masks): found beside a photo or in its alpha, cropped exactly as the photo,
carried through augmentation, and weighting the denoising loss."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from dreamtune import config
from dreamtune.data.augment import AugmentPlan
from dreamtune.data.datasets import DatasetBatches, ImageSet
from dreamtune.data.prepare import PrepareOptions, prepare
from dreamtune.errors import UserError
from dreamtune.objectives.denoising import weighted_mean


def _photo_with_square(path, size=(96, 64), box=(60, 10, 90, 40)):
    """A grey photo with a red square at ``box``, and the square as its mask beside it."""
    image = Image.new("RGB", size, (128, 128, 128))
    image.paste((255, 0, 0), box)
    image.save(path)
    mask = Image.new("L", size, 0)
    mask.paste(255, box)
    mask.save(path.with_name(path.stem + ".mask.png"))


def test_a_mask_beside_a_photo_is_cropped_and_scaled_exactly_as_the_photo(tmp_path):
    src = tmp_path / "photos"
    src.mkdir()
    _photo_with_square(src / "a.png")
    report = prepare(src, tmp_path / "out", PrepareOptions(resolution=32, caption="a sks thing"))
    assert report["kept"] == 1 and report["skipped"] == 0  # the mask is not a photo of its own
    (record,) = [json.loads(line) for line in (tmp_path / "out" / "metadata.jsonl").read_text().splitlines()]
    assert record["mask"] == "masks/0000.png"
    assert "subject mask from a.mask.png" in report["entries"][0]["notes"]
    image = np.asarray(Image.open(tmp_path / "out" / record["file_name"]), dtype=np.float32)
    mask = np.asarray(Image.open(tmp_path / "out" / record["mask"]), dtype=np.float32) / 255
    redness = (image[..., 0] - image[..., 1]) / 255
    inside, outside = mask > 0.9, mask < 0.1
    assert inside.sum() > 20 and outside.sum() > 300
    assert redness[inside].min() > 0.8 and redness[outside].max() < 0.2


def test_a_cut_out_photo_gives_its_alpha_as_the_mask_and_is_composited(tmp_path):
    src = tmp_path / "photos"
    src.mkdir()
    cut_out = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    cut_out.paste((0, 0, 255, 255), (16, 16, 48, 48))
    cut_out.save(src / "cut.png")
    opaque = Image.new("RGBA", (64, 64), (10, 200, 10, 255))  # alpha that hides nothing is no mask
    opaque.save(src / "opaque.png")
    report = prepare(src, tmp_path / "out", PrepareOptions(resolution=32, caption="x"))
    records = {r["source"]: r for r in map(json.loads, (tmp_path / "out" / "metadata.jsonl").read_text().splitlines())}
    assert "mask" not in records["opaque.png"]
    mask = np.asarray(Image.open(tmp_path / "out" / records["cut.png"]["mask"]))
    assert mask[16, 16] == 255 and mask[2, 2] == 0
    assert any("alpha channel" in note for e in report["entries"] for note in e["notes"])
    assert Image.open(tmp_path / "out" / records["cut.png"]["file_name"]).getpixel((2, 2)) == (255, 255, 255)


@pytest.mark.parametrize(
    "mask, reason",
    [
        (Image.new("L", (50, 50), 255), "is 50x50 but the photo is 64x64"),
        (Image.new("L", (64, 64), 0), "is empty (all black)"),
    ],
)
def test_an_unusable_mask_skips_its_photo_with_the_reason(tmp_path, mask, reason):
    src = tmp_path / "photos"
    src.mkdir()
    Image.new("RGB", (64, 64), (1, 2, 3)).save(src / "p.jpg")
    Image.new("RGB", (64, 64), (9, 9, 9)).save(src / "q.jpg")
    mask.save(src / "p.mask.png")
    report = prepare(src, tmp_path / "out", PrepareOptions(resolution=32, caption="x"))
    (skipped,) = [e for e in report["entries"] if not e["kept"]]
    assert skipped["file"] == "p.jpg" and reason in skipped["reason"]


def test_a_mask_without_its_photo_is_reported(tmp_path):
    src = tmp_path / "photos"
    src.mkdir()
    Image.new("RGB", (64, 64), (1, 2, 3)).save(src / "p.jpg")
    Image.new("L", (64, 64), 255).save(src / "typo.mask.png")
    report = prepare(src, tmp_path / "out", PrepareOptions(resolution=32, caption="x"))
    (orphan,) = [e for e in report["entries"] if not e["kept"]]
    assert "no photo named typo.*" in orphan["reason"]


def _masked_set(tmp_path):
    src = tmp_path / "photos"
    src.mkdir()
    _photo_with_square(src / "a.png", size=(64, 64), box=(40, 8, 60, 28))  # the subject on the right
    prepare(src, tmp_path / "out", PrepareOptions(resolution=32, caption="a sks thing"))
    return ImageSet(tmp_path / "out")


def test_loss_weights_are_one_on_the_subject_and_follow_every_flip_and_rotation(tmp_path):
    images = _masked_set(tmp_path)
    for plan in (AugmentPlan(flip_p=0.5), AugmentPlan(flip_p=0.5, rotate_p=1.0, rotate_degrees=10)):
        batches = DatasetBatches(images, 1, 0, plan, classes=images, background_weight=0.25)
        for step in range(6):
            batch = batches.batch(step)
            weights, pixels = batch["loss_weights"], batch["pixels"]
            assert weights.shape == (2, 1, 32, 32)
            assert torch.allclose(
                weights[1], torch.ones(1, 32, 32)
            )  # the class image (prior preservation) counts everywhere
            subject = weights[0, 0] > 0.9
            assert weights[0].min() == pytest.approx(0.25, abs=0.01)
            red = pixels[0, 0] - pixels[0, 1]  # the square is red wherever the augmentation put it
            assert red[subject].mean() > 1.2 and red[weights[0, 0] < 0.3].abs().mean() < 0.2


def test_cached_latents_get_flipped_weights_with_their_flipped_latents(tmp_path):
    images = _masked_set(tmp_path)
    encoded = []

    def encoder(pixels, key):
        encoded.append("flip=True" in key)
        return pixels[:, ::8, ::8]

    batches = DatasetBatches(images, 1, 0, AugmentPlan(flip_p=0.5), latent_encoder=encoder, background_weight=0.0)
    sides = set()
    for step in range(8):
        weights = batches.batch(step)["loss_weights"][0, 0]
        on_right = bool(weights[:, 16:].sum() > weights[:, :16].sum())
        assert on_right != encoded[-1]  # the subject is on the right unless this sample was flipped
        sides.add(on_right)
    assert sides == {True, False}


def test_masks_on_with_a_photo_without_one_is_one_sentence_naming_it(tmp_path):
    src = tmp_path / "photos"
    src.mkdir()
    _photo_with_square(src / "a.png", size=(64, 64))
    Image.new("RGB", (64, 64), (5, 5, 5)).save(src / "b.png")
    prepare(src, tmp_path / "out", PrepareOptions(resolution=32, caption="x"))
    with pytest.raises(UserError, match=r"b\.png has no subject mask.*b\.png|b\.png has no subject mask"):
        DatasetBatches(ImageSet(tmp_path / "out"), 1, 0, AugmentPlan(), background_weight=0.1)
    DatasetBatches(ImageSet(tmp_path / "out"), 1, 0, AugmentPlan())  # masks off: nothing asked of the photos


def test_weighted_mean_is_the_plain_mean_without_weights_and_ignores_a_zero_weight_background():
    error = torch.rand(2, 4, 8, 8)
    assert torch.allclose(weighted_mean(error, None), error.mean(dim=(1, 2, 3)))
    assert torch.allclose(weighted_mean(error, torch.ones(2, 1, 64, 64)), error.mean(dim=(1, 2, 3)))
    weights = torch.zeros(2, 1, 64, 64)
    weights[..., :32, :32] = 1  # the subject fills the top-left quarter
    changed = error.clone()
    changed[..., 4:, :] += 10  # a worse background changes nothing ...
    assert torch.allclose(weighted_mean(changed, weights), weighted_mean(error, weights))
    assert torch.allclose(weighted_mean(error, weights), error[..., :4, :4].mean(dim=(1, 2, 3)))
    small = torch.zeros(2, 1, 64, 64)
    small[..., :16, :16] = 1  # ... and a small subject's loss is a mean over its own cells, not diluted
    assert torch.allclose(weighted_mean(error, small), error[..., :2, :2].mean(dim=(1, 2, 3)))


def test_background_weight_outside_zero_to_one_is_refused():
    with pytest.raises(UserError, match=r"data\.background_weight is 1\.5"):
        config.load(None, ["data.background_weight=1.5"])


def test_the_demo_photographs_its_subject_with_masks_that_are_never_taken_for_photos(tmp_path):
    from dreamtune.miniature import world
    from dreamtune.miniature.demo import TRAIN_CONTEXTS, photograph, photographs

    folder = photograph("dog3", tmp_path / "photos", count=3)
    assert len(list(folder.glob("*.mask.png"))) == 3
    shots = photographs(folder)  # what the judge takes as the subject's references
    expected = [world.render(world.Scene("dog3", TRAIN_CONTEXTS[i % 2]), 50_000 + i) for i in range(3)]
    assert [np.asarray(s).tobytes() for s in shots] == [np.asarray(e).tobytes() for e in expected]
    mask = np.asarray(Image.open(folder / "photo0.mask.png"))
    photo = np.asarray(shots[0], dtype=np.int16)
    backdrop = photo[1, 1]  # the studio's plain colour in the corner, outside the subject
    assert mask[1, 1] == 0 and 0.03 < (mask > 127).mean() < 0.6
    assert (np.abs(photo - backdrop).sum(-1)[mask > 200] > 30).mean() > 0.8  # the mask covers what is not backdrop
