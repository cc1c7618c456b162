"""The wider shape vocabulary (issue 34; dreamtune/miniature/outlines.py): glyphs of no world class, far in
outline from every new-shape subject and judge distractor (re-measured on a sample), drawn in the world's
contexts with captions the tokenizer already knows, rendered reproducibly into a pool the UNet stage joins."""

import random

import numpy as np

from dreamtune.miniature import world
from dreamtune.miniature.new_shapes import NEW_SHAPE_DISTANCE, shape_distance
from dreamtune.miniature.outlines import (
    OUTLINE_GLYPHS,
    OutlineScene,
    _drawn,
    _taken,
    build_outline_pool,
    reference_glyphs,
)
from dreamtune.miniature.pool import build_pool
from dreamtune.miniature.vocabulary import caption_words


def test_the_list_is_500_new_glyphs_and_a_sample_of_them_is_far_from_the_split():
    assert len(OUTLINE_GLYPHS) == 500 and len(set(OUTLINE_GLYPHS)) == 500
    assert not set(OUTLINE_GLYPHS) & _taken()  # no world glyph, no split subject, no judge distractor
    for glyph in random.Random(1).sample(OUTLINE_GLYPHS, 4):
        assert _drawn(glyph)
        nearest = min(shape_distance(glyph, r) for r in reference_glyphs())
        assert nearest >= NEW_SHAPE_DISTANCE, f"{glyph} is {nearest:.3f} from the split"


def test_captions_name_the_context_alone_in_words_the_tokenizer_has():
    known = set(caption_words())
    for context in world.CONTEXTS:
        caption = OutlineScene("1F34E", context, 0.0).caption()
        assert caption.startswith("a photo ") and set(caption.lower().split()) <= known
        assert not any(noun in caption.split() for noun in world.GLYPHS)  # no class noun


def test_the_pool_is_reproducible_cached_and_joins_the_world_pool(tmp_path):
    glyphs = OUTLINE_GLYPHS[:2]
    pool = build_outline_pool(glyphs, 1, seed=3, cache_dir=tmp_path, show_progress=False, workers=1)
    assert len(pool.scenes) == 2 * len(world.CONTEXTS) and pool.pixels.shape[1:] == (64, 64, 3)
    assert {s.context for s in pool.scenes} == set(world.CONTEXTS) and {s.glyph for s in pool.scenes} == set(glyphs)
    again = build_outline_pool(glyphs, 1, seed=3, cache_dir=tmp_path, show_progress=False)  # from the cache
    fresh = build_outline_pool(glyphs, 1, seed=3, show_progress=False, workers=2)
    assert np.array_equal(pool.pixels, again.pixels) and np.array_equal(pool.pixels, fresh.pixels)
    assert again.scenes == pool.scenes
    joined = build_pool(8, seed=3, show_progress=False, workers=1) + pool
    assert len(joined.scenes) == 8 + len(pool.scenes) == len(joined.pixels)
    world_caption, outline_caption = joined.captions([0, 8])
    assert not world_caption.startswith("a photo") and outline_caption.startswith("a photo")
    assert set(joined.by_instance()) >= {f"outline {g}" for g in glyphs}
