"""A pre-rendered pool of world scenes (uint8 pixels + labels + captions) and the batch
sources the pretraining stages draw from. Batches are pure functions of (seed, step)."""

from __future__ import annotations

import contextlib
import json
import os
import random
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from dreamtune.atomic import atomic_file
from dreamtune.data.augment import sample_generator
from dreamtune.miniature import world

POOL_VERSION = 1


@dataclass
class Pool:
    pixels: np.ndarray  # (N,64,64,3) uint8
    scenes: list  # world.Scene, or outlines.OutlineScene: anything with .instance and .caption()

    def captions(self, indices) -> list[str]:
        return [self.scenes[i].caption() for i in indices]

    def tensor(self, indices) -> torch.Tensor:
        """(B,3,64,64) float32 in [-1,1]."""
        return torch.from_numpy(self.pixels[list(indices)]).permute(0, 3, 1, 2).float() / 127.5 - 1.0

    def by_instance(self) -> dict[str, list[int]]:
        groups: dict[str, list[int]] = {}
        for index, scene in enumerate(self.scenes):
            groups.setdefault(scene.instance, []).append(index)
        return groups

    def __add__(self, other: Pool) -> Pool:
        return Pool(np.concatenate([self.pixels, other.pixels]), self.scenes + other.scenes)


def _render_chunk(args: tuple[list, int, int, Callable]) -> np.ndarray:
    scenes, seed, first, renderer = args
    return np.stack([np.asarray(renderer(s, seed * 1_000_003 + first + i)) for i, s in enumerate(scenes)])


def render_scenes(
    scenes: list, seed: int, renderer: Callable, desc: str, show_progress: bool = True, workers: int | None = None
) -> np.ndarray:
    """(N,64,64,3) uint8 of ``renderer(scene, seed * 1_000_003 + index)`` for every scene; a pure function of its
    arguments, so any number of ``workers`` processes gives the same pixels. ``renderer`` is a module-level function."""
    chunk = 250
    jobs = [(scenes[start : start + chunk], seed, start, renderer) for start in range(0, len(scenes), chunk)]
    workers = min(workers or os.cpu_count() or 1, len(jobs))
    progress = tqdm(total=len(scenes), desc=desc, unit="img", disable=not show_progress)
    with ProcessPoolExecutor(workers) if workers > 1 else contextlib.nullcontext() as executor:
        parts = []
        for part in executor.map(_render_chunk, jobs) if executor else map(_render_chunk, jobs):
            parts.append(part)
            progress.update(len(part))
    progress.close()
    return np.concatenate(parts)


def build_pool(
    count: int, seed: int, cache_dir: Path | None = None, show_progress: bool = True, workers: int | None = None
) -> Pool:
    """Render ``count`` random pretraining scenes (held-out instances never appear); cached on disk.
    Renders are pure functions of (scene, seed, index), so ``workers`` processes give the same pool."""
    path = Path(cache_dir) / f"pool-v{POOL_VERSION}-{seed}-{count}.npz" if cache_dir else None
    if path and path.is_file():
        data = np.load(path)
        scenes = [world.Scene(*s) for s in json.loads(str(data["scenes"]))]
        return Pool(data["pixels"], scenes)
    rng = random.Random(seed)
    scenes = [world.random_scene(rng) for _ in range(count)]
    pixels = render_scenes(scenes, seed, world.render, "rendering world", show_progress, workers)
    if path:
        with atomic_file(path) as temp:
            with open(temp, "wb") as handle:
                np.savez(handle, pixels=pixels, scenes=json.dumps([[s.instance, s.context, s.recolor] for s in scenes]))
    return Pool(pixels, scenes)


class PoolBatches:
    """Random batches of pool images with captions; ``pairs`` adds a second view of each
    instance (another context) for instance-level contrast."""

    def __init__(self, pool: Pool, batch_size: int, seed: int, pairs: bool = False, flip_p: float = 0.5):
        self.pool, self.batch_size, self.seed, self.pairs, self.flip_p = pool, batch_size, seed, pairs, flip_p
        self.groups = pool.by_instance()
        self.names = sorted(self.groups)

    def _indices(self, step: int) -> tuple[list[int], list[int]]:
        generator = sample_generator(self.seed, step, 0, stream=7)
        first = torch.randint(0, len(self.pool.scenes), (self.batch_size,), generator=generator).tolist()
        if not self.pairs:
            return first, []
        second = []
        for index in first:
            group = self.groups[self.pool.scenes[index].instance]
            second.append(group[int(torch.randint(0, len(group), (), generator=generator))])
        return first, second

    def batch(self, step: int) -> dict:
        first, second = self._indices(step)
        indices = first + second
        pixels = self.pool.tensor(indices)
        generator = sample_generator(self.seed, step, 1, stream=7)
        flips = torch.rand(len(indices), generator=generator) < self.flip_p
        pixels[flips] = pixels[flips].flip(-1)
        instances = [self.pool.scenes[i].instance for i in indices]
        labels = torch.tensor([self.names.index(name) for name in instances])
        return {
            "pixels": pixels,
            "prompts": self.pool.captions(indices),
            "instance_labels": labels,
            "sizes": torch.tensor([[64, 64]] * len(indices)),
            "is_prior": torch.zeros(len(indices), dtype=torch.bool),
        }
