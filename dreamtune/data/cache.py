"""On-disk tensor cache (safetensors) for VAE latents and text embeddings.

A key is the tuple of everything that changes the value (content hash, model identity,
resolution, crop, flip); any change yields a new key, so stale entries are never read.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Callable

import torch
from safetensors.torch import load_file, save_file

from dreamtune.atomic import atomic_file


def key_of(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:32]


def user_cache_root() -> Path:
    """dreamtune's cache shared by every run on the machine: ``$DREAMTUNE_CACHE``, else
    ``$XDG_CACHE_HOME/dreamtune`` or ``~/.cache/dreamtune``."""
    import os

    if os.environ.get("DREAMTUNE_CACHE"):
        return Path(os.environ["DREAMTUNE_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "dreamtune"


def model_identity(folder: str | Path | None, subfolder: str) -> str:
    """Identity of a model component: its weight files' names, sizes and mtimes."""
    if not folder:
        return "in-memory"
    path = Path(folder) / subfolder
    if not path.is_dir():
        return str(folder) + "/" + subfolder
    files = sorted((p.name, p.stat().st_size, int(p.stat().st_mtime)) for p in path.iterdir() if p.is_file())
    return key_of(str(path.resolve()), files)


class TensorCache:
    """Maps a key to a dict of tensors stored as ``<dir>/<key>.safetensors``, kept in memory too once
    read (a training run asks for the same few latents every step; callers never modify them)."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        self.hits = 0
        self.misses = 0
        self._memory: dict[str, dict[str, torch.Tensor]] = {}

    def get_or_compute(self, key: str, compute: Callable[[], dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        if key in self._memory:
            self.hits += 1
            return self._memory[key]
        self._memory[key] = self._read_or_compute(key, compute)
        return self._memory[key]

    def _read_or_compute(self, key: str, compute: Callable[[], dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        path = self.directory / f"{key}.safetensors"
        if path.is_file():
            try:
                value = load_file(path)
                self.hits += 1
                return value
            except Exception:  # a corrupt entry is recomputed, never trusted
                path.unlink(missing_ok=True)
        self.misses += 1
        value = {k: v.detach().to("cpu").contiguous() for k, v in compute().items()}
        with atomic_file(path) as temp:
            save_file(value, str(temp))
        return value
