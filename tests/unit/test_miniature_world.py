import numpy as np

from dreamtune.miniature import scenery, world
from dreamtune.miniature.pool import PoolBatches, build_pool
from dreamtune.miniature.vocabulary import build_tokenizer


def test_twenty_dreambench_contexts_and_fifteen_classes():
    assert len(world.CONTEXTS) == 20 and len(world.GLYPHS) == 15
    assert (
        "on the beach" in scenery.PHRASES.values()
        and "with the Eiffel Tower in the background" in scenery.PHRASES.values()
    )
    assert len(world.HELD_OUT) == 15 and not set(world.HELD_OUT) & {i.name for i in world.PRETRAIN_INSTANCES}


def test_render_is_reproducible_and_varies_with_seed():
    scene = world.Scene("dog3", "beach")
    a, b, c = (np.asarray(world.render(scene, s)) for s in (7, 7, 8))
    assert a.shape == (64, 64, 3) and np.array_equal(a, b) and not np.array_equal(a, c)


def test_instances_of_a_class_look_different():
    sprites = [np.asarray(world.object_sprite(f"teapot{k}").resize((32, 32))).astype(float) for k in range(4)]
    for i in range(4):
        for j in range(i + 1, 4):
            assert np.abs(sprites[i] - sprites[j]).mean() > 8, (i, j)


def test_recolour_changes_the_object():
    plain = np.asarray(world.object_sprite("cat1").convert("RGB")).astype(float)
    red = np.asarray(world.object_sprite("cat1", "red").convert("RGB")).astype(float)
    assert np.abs(plain - red).mean() > 5
    assert world.Scene("cat1", "snow", "red").caption("sks") == "a red sks cat in the snow"


def test_pool_excludes_held_out_and_batches_are_seeded(tmp_path):
    pool = build_pool(120, seed=3, cache_dir=tmp_path, show_progress=False)
    assert not {s.instance for s in pool.scenes} & set(world.HELD_OUT)
    again = build_pool(120, seed=3, cache_dir=tmp_path, show_progress=False)  # from the disk cache
    assert np.array_equal(pool.pixels, again.pixels) and pool.scenes == again.scenes
    source = PoolBatches(pool, 8, seed=1, pairs=True)
    first, second = source.batch(5), source.batch(5)
    assert first["prompts"] == second["prompts"] and first["pixels"].shape == (16, 3, 64, 64)
    labels = first["instance_labels"]
    assert (labels[:8] == labels[8:]).all()  # second view = same instance


def test_tokenizer_makes_caption_words_single_tokens_and_still_reads_anything(tmp_path):
    tokenizer = build_tokenizer(tmp_path)
    assert tokenizer.convert_ids_to_tokens(tokenizer("sunflowers").input_ids)[1:-1] == ["sunflowers</w>"]
    for text in ["a sks dog", "<my-subject> ünïcödé ✓", "xqzj"]:
        ids = tokenizer(text).input_ids
        assert tokenizer.unk_token_id not in ids[1:-1] and len(ids) > 2
