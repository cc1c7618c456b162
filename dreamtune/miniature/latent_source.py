"""Cached VAE latents of the world pool, and the batch source of the UNet pretraining stage."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from dreamtune.atomic import atomic_file
from dreamtune.data.augment import sample_generator
from dreamtune.data.cache import key_of
from dreamtune.miniature.pool import Pool
from dreamtune.models.families import StableDiffusion


@torch.no_grad()
def encode_pool(vae, pool: Pool, cache_dir: Path, show_progress: bool = True) -> torch.Tensor:
    """(N,4,16,16) scaled latents of every pool image, cached on disk by pool and VAE weights."""
    weights = sum(float(p.double().sum()) for p in vae.parameters())
    path = (
        Path(cache_dir)
        / f"latents-{key_of(len(pool.scenes), pool.pixels[:4].tobytes().hex()[:64], weights)}.safetensors"
    )
    if path.is_file():
        return load_file(str(path))["latents"]
    chunks = []
    for start in tqdm(range(0, len(pool.scenes), 128), desc="encoding latents", disable=not show_progress):
        chunks.append(_encode(vae, pool.tensor(range(start, min(start + 128, len(pool.scenes))))).float().cpu())
    latents = torch.cat(chunks)
    with atomic_file(path) as temp:
        save_file({"latents": latents.contiguous()}, str(temp))
    return latents


class LatentPoolBatches:
    """Batches of cached latents with captions; a caption is dropped (to "") with
    ``caption_dropout`` so the model also learns the unconditional score for guidance."""

    def __init__(self, latents: torch.Tensor, pool: Pool, batch_size: int, seed: int, caption_dropout: float):
        self.latents, self.pool = latents, pool
        self.batch_size, self.seed, self.caption_dropout = batch_size, seed, caption_dropout

    def batch(self, step: int) -> dict:
        generator = sample_generator(self.seed, step, 0, stream=11)
        indices = torch.randint(0, len(self.pool.scenes), (self.batch_size,), generator=generator)
        drop = torch.rand(self.batch_size, generator=generator) < self.caption_dropout
        prompts = ["" if d else c for d, c in zip(drop.tolist(), self.pool.captions(indices.tolist()))]
        return {
            "latents": self.latents[indices],
            "prompts": prompts,
            "sizes": torch.tensor([[64, 64]] * self.batch_size),
            "is_prior": torch.zeros(self.batch_size, dtype=torch.bool),
        }


def _encode(vae, pixels):
    """The miniature is an SD-family model: its latents as the SD family encodes them."""
    from types import SimpleNamespace

    return StableDiffusion().encode_latents(SimpleNamespace(vae=vae), pixels)
