import numpy as np
import pytest
from PIL import Image

from dreamtune.data import cropping, standardize


def _rgba_half_transparent():
    image = Image.new("RGBA", (8, 8), (255, 0, 0, 255))
    image.paste((0, 0, 255, 0), (0, 0, 4, 8))
    return image


def test_alpha_is_composited_on_background():
    out = standardize.to_rgb(_rgba_half_transparent(), background="#00ff00")
    assert out.mode == "RGB"
    assert out.getpixel((0, 0)) == (0, 255, 0)  # transparent -> background
    assert out.getpixel((7, 0)) == (255, 0, 0)  # opaque kept


@pytest.mark.parametrize("mode", ["L", "LA", "P", "RGBA", "CMYK", "I;16", "I", "F", "1", "YCbCr"])
def test_every_mode_becomes_rgb(mode):
    source = Image.linear_gradient("L").resize((16, 16))
    if mode == "I;16":
        image = Image.new("I;16", source.size)
        image.frombytes((np.asarray(source, dtype=np.uint16) * 257).astype("<u2").tobytes())
    elif mode == "F":
        image = Image.fromarray(np.asarray(source, dtype=np.float32) / 255.0, "F")
    elif mode == "I":
        image = Image.fromarray(np.asarray(source, dtype=np.int32) * 1000, "I")
    else:
        image = source.convert(mode)
    out = standardize.to_rgb(image)
    assert out.mode == "RGB" and out.size == (16, 16)
    array = np.asarray(out)
    if mode in ("L", "I;16", "F", "I"):
        # the gradient survives: dark at the top, bright at the bottom (no clipping to white)
        assert array[0].mean() < 40 and array[-1].mean() > 200


def test_palette_transparency_uses_background():
    image = Image.new("P", (4, 4), 1)
    image.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    image.info["transparency"] = 1
    assert standardize.to_rgb(image, background="white").getpixel((0, 0)) == (255, 255, 255)


def test_exif_orientation_applied():
    image = Image.new("RGB", (20, 10), "red")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    image.info["exif"] = exif.tobytes()
    image = Image.open(_save_jpeg(image, exif))
    assert standardize.to_rgb(image).size == (10, 20)


def _save_jpeg(image, exif):
    import io

    buffer = io.BytesIO()
    image.save(buffer, "JPEG", exif=exif)
    buffer.seek(0)
    return buffer


def test_grayscale_option():
    out = standardize.to_rgb(Image.new("RGB", (4, 4), (255, 0, 0)), grayscale=True)
    r, g, b = out.getpixel((0, 0))
    assert r == g == b


def test_resize_and_crops():
    image = Image.new("RGB", (200, 100))
    assert standardize.resize_shortest_side(image, 50).size == (100, 50)
    covered = standardize.cover_resize(image, (64, 64))
    assert covered.size == (128, 64)
    import random

    box = cropping.choose_crop(covered, (64, 64), "center", random.Random(0)).box
    assert box == (32, 0, 96, 64)
    boxes = {cropping.choose_crop(covered, (64, 64), "random", random.Random(s)).box for s in range(5)}
    assert len(boxes) > 1 and all(b[2] - b[0] == 64 for b in boxes)


def test_face_crop_falls_back_to_center_with_note():
    import random

    covered = Image.new("RGB", (128, 64), "gray")
    decision = cropping.choose_crop(covered, (64, 64), "face", random.Random(0))
    assert decision.box == (32, 0, 96, 64) and "no face" in decision.note


def test_buckets_keep_area_and_pick_aspect():
    buckets = cropping.bucket_sizes(512)
    assert all(abs(w * h - 512 * 512) / (512 * 512) < 0.2 for w, h in buckets)
    w, h = cropping.nearest_bucket((1600, 900), buckets)
    assert w > h and abs(w / h - 16 / 9) < 0.3
