"""Distractor objects for teaching the mini CLIP's image tower instance identity in general.

The world has only 45 pretraining instances, so an image tower trained on them alone learns
*those* instances (98% retrieval) better than unseen ones (84% on the held-out subjects). Here
every batch adds fresh pseudo-instances: OpenMoji glyphs of objects that are none of the world's
classes, each at a random hue, each drawn in two random contexts (a positive pair) beside the
same glyph at another hue (a hard negative). No held-out instance, and no glyph of a world
class, is ever drawn, so the held-out subjects stay unseen.
"""

from __future__ import annotations

import random

import numpy as np
import torch

from dreamtune.data.augment import sample_generator
from dreamtune.miniature import world
from dreamtune.miniature.pool import Pool, PoolBatches

# apple, gift, guitar, crown, handbag, hat, camera, bicycle, car, balloon, fish, turtle, penguin,
# fox, rabbit, bear, frog, snail, butterfly, mushroom, cactus, cherries, pineapple, carrot, ...
GLYPHS = tuple(
    "1F34E 1F381 1F3B8 1F451 1F45C 1F452 1F4F7 1F6B2 1F697 1F388 1F41F 1F422 1F427 1F98A 1F430 "
    "1F43B 1F438 1F40C 1F98B 1F344 1F335 1F352 1F34D 1F955 1F9C1 1F369 1F36D 2615 1F37A 1F3C0 "
    "26BD 1F3BE 1F4A1 1F511 1F514 1F4DA 270F 1F3A9 1F45B 1F9E2 1F9E6 1F457 1F455 1F6F4 1F680 "
    "1F681 1F6A2 1F34C 1F349 1F353 1F95D 1F345 1F966 1F9C0 1F354 1F355 1F3A8 1F3BA 1F3BB 1F941 "
    "1F4BB 1F4F1 1F50B 1F526 1F6CB 1FA91 1F6C1 1F9F2 1F418 1F992 1F993 1F98C 1F42B 1F994 1F987 "
    "1F989 1F99C 1F99A 1F986 1F40D 1F996 1F419 1F980 1F41E 1F33B 1F337 1F332 2602 1F302 1F3D0 "
    "1F3B2 1F9E9".split()
)
assert not set(GLYPHS) & {g for glyphs in world.GLYPHS.values() for g in glyphs}


def distractor_pairs(count: int, rng: random.Random) -> tuple[list, list[int]]:
    """``count`` pseudo-instances (glyph, hue), two renders each: (images, labels)."""
    images, labels = [], []
    for k in range(count):
        if k % 2 == 0:
            glyph, hue = rng.choice(GLYPHS), rng.random()
        else:  # the same glyph at a clearly different hue: a hard negative for the previous one
            hue = (hue + rng.uniform(0.15, 0.85)) % 1.0
        sprite = world.glyph_sprite(glyph, round(hue, 2))
        for context in rng.sample(list(world.CONTEXTS), 2):
            images.append(world.compose(sprite, context, rng.randrange(10**9)))
            labels.append(-1 - k)
    return images, labels


class ImageTowerBatches:
    """Half world pool pairs (captioned: they keep the text alignment), half distractor pairs
    (uncaptioned: instance term only). Pure function of (seed, step)."""

    def __init__(self, pool: Pool, batch_size: int, seed: int):
        self.world = PoolBatches(pool, batch_size // 2, seed, pairs=True)
        self.count, self.seed = batch_size - batch_size // 2, seed

    def batch(self, step: int) -> dict:
        batch = self.world.batch(step)
        generator = sample_generator(self.seed, step, 2, stream=7)
        rng = random.Random(int(torch.randint(0, 2**62, (), generator=generator)))
        images, labels = distractor_pairs(self.count, rng)
        pixels = torch.from_numpy(np.stack([np.asarray(i) for i in images]))
        pixels = pixels.permute(0, 3, 1, 2).float() / 127.5 - 1.0
        captioned = len(batch["prompts"])
        return {
            "pixels": torch.cat([batch["pixels"], pixels]),
            "prompts": list(batch["prompts"]) + [""] * len(images),
            "captioned": torch.arange(captioned + len(images)) < captioned,
            "instance_labels": torch.cat([batch["instance_labels"], torch.tensor(labels)]),
            "sizes": torch.tensor([[64, 64]] * (captioned + len(images))),
            "is_prior": torch.zeros(captioned + len(images), dtype=torch.bool),
        }
