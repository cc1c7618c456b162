"""Print after generation: sizes, sharpening sized to the ppi, black-point compensation keeping shadow
detail, and the check read back through LittleCMS."""

from pathlib import Path

import pytest
from PIL import Image

from dreamtune.errors import UserError
from dreamtune.sampling.print_ready import PrintSettings, parse_print_size, prepare

PROFILE = "/usr/share/color/icc/ghostscript/default_cmyk.icc"
needs_profile = pytest.mark.skipif(
    not Path(PROFILE).is_file(),
    reason="Ghostscript's default_cmyk.icc is not installed (apt-get install libgs-common; make setup does it)",
)


def test_print_sizes_in_any_unit_fit_the_image_in_the_box():
    assert parse_print_size("4x6in") == (4.0, 6.0)
    assert parse_print_size("10 x 15 cm") == pytest.approx((10 / 2.54, 15 / 2.54))
    assert parse_print_size("100mm") == pytest.approx((100 / 25.4, 100 / 25.4))
    for bad in ("big", "10x15", "0cm", "-3in", "10xcm"):
        with pytest.raises(UserError, match="is not a size"):
            parse_print_size(bad)
    square_in_a_4x6_box = PrintSettings(PROFILE, size="4x6in", ppi=300)
    assert square_in_a_4x6_box.pixels(1024, 1024) == (1200, 1200)
    assert square_in_a_4x6_box.pixels(1024, 768) == (1200, 900)
    assert PrintSettings(PROFILE).pixels(64, 48) == (64, 48)  # no size: the pixels are kept
    assert PrintSettings(PROFILE, ppi=254).sharpen_radius() == pytest.approx(1.0)  # 0.1 mm at 254 ppi


@needs_profile
def test_settings_are_checked_with_one_sentence_each():
    PrintSettings(PROFILE).check()
    for settings, words in [
        (PrintSettings(PROFILE, intent="vivid"), "print intent 'vivid'"),
        (PrintSettings(PROFILE, sharpen="lots"), "--print-sharpen lots"),
        (PrintSettings(PROFILE, ppi=10), "--ppi 10"),
        (PrintSettings("/usr/share/color/icc/ghostscript/srgb.icc"), "a CMYK output profile is needed"),
    ]:
        with pytest.raises(UserError, match=words):
            settings.check()


def shadow_ramp() -> Image.Image:
    image = Image.new("RGB", (128, 16))
    for x in range(128):
        for y in range(16):
            image.putpixel((x, y), (x * 60 // 127,) * 3)
    return image


@needs_profile
def test_black_point_compensation_keeps_the_shadow_detail_that_clipping_loses():
    clipped = prepare(shadow_ramp(), PrintSettings(PROFILE, black_point_compensation=False, sharpen="none"))
    compensated = prepare(shadow_ramp(), PrintSettings(PROFILE, sharpen="none"))
    assert clipped.check["shadow_detail_kept"] < 0.45 < compensated.check["shadow_detail_kept"]
    # the soft proof shows it too: without compensation the darkest third prints as one flat black
    flat = clipped.proof.convert("L").crop((0, 0, 40, 16))
    graded = compensated.proof.convert("L").crop((0, 0, 40, 16))
    assert max(flat.getextrema()) - min(flat.getextrema()) < max(graded.getextrema()) - min(graded.getextrema())


@needs_profile
def test_the_soft_proof_shows_the_paper_white_and_sharpening_adds_edge_contrast():
    white = Image.new("RGB", (32, 32), (255, 255, 255))
    proof = prepare(white, PrintSettings(PROFILE, sharpen="none")).proof
    assert proof.getpixel((0, 0)) != (255, 255, 255)  # the profile's paper is not the screen's white
    edge = Image.new("RGB", (32, 32), (200, 200, 200))
    edge.paste((60, 60, 60), (16, 0, 32, 32))
    plain = prepare(edge, PrintSettings(PROFILE, sharpen="none")).proof.convert("L")
    sharp = prepare(edge, PrintSettings(PROFILE, sharpen="mild")).proof.convert("L")
    assert sharp.getpixel((15, 16)) > plain.getpixel((15, 16)) and sharp.getpixel((16, 16)) < plain.getpixel((16, 16))


@needs_profile
@pytest.mark.slow  # 20 s: a 17.6 M pixel separation
def test_a_poster_is_checked_on_evenly_spread_pixels_of_the_file_itself():
    from dreamtune.sampling.print_ready import measure

    ramp = shadow_ramp().resize((4200, 4200))  # 17.6 M pixels: more than torch.quantile takes
    ready = prepare(ramp, PrintSettings(PROFILE, sharpen="none"))
    small = prepare(shadow_ramp().resize((420, 420)), PrintSettings(PROFILE, sharpen="none"))
    assert ready.check["delta_e00_mean"] == pytest.approx(small.check["delta_e00_mean"], abs=0.3)
    assert measure(ramp, ready.cmyk, PROFILE) == {k: v for k, v in ready.check.items() if k != "pixels"}
