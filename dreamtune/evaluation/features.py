"""Feature extractors as modules (k-diffusion's evaluation.py pattern): images or prompts in,
unit-norm embeddings out. The miniature's CLIP stands in for OpenAI's CLIP offline."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from dreamtune.models.clip import image_embeddings, text_embeddings
from dreamtune.models.conditioning import tokenize


class ClipFeatures(nn.Module):
    """CLIP image/text embeddings. ``size``, ``mean`` and ``std`` define its preprocessing;
    the mini CLIP was trained on 64×64 pixels scaled to [-1, 1] (mean 0.5, std 0.5)."""

    def __init__(self, model: nn.Module, tokenizer, size: int, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), name: str = "clip"):
        super().__init__()
        self.model, self.tokenizer, self.size, self.name = model.eval(), tokenizer, size, name
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def pixels(self, images: list[Image.Image]) -> torch.Tensor:
        arrays = [np.asarray(im.convert("RGB").resize((self.size, self.size), Image.Resampling.BICUBIC), dtype=np.float32) / 255
                  for im in images]
        batch = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)
        return ((batch - self.mean) / self.std).to(next(self.model.parameters()).dtype)

    @torch.no_grad()
    def images(self, images: list[Image.Image]) -> torch.Tensor:
        """(N,D) unit-norm float32."""
        return torch.cat([image_embeddings(self.model, self.pixels(images[i:i + 64])) for i in range(0, len(images), 64)])

    @torch.no_grad()
    def texts(self, prompts: list[str]) -> torch.Tensor:
        """(N,D) unit-norm float32."""
        return text_embeddings(self.model, tokenize(self.tokenizer, prompts))


def load_clip(folder: str | Path, size: int | None = None, name: str = "clip") -> ClipFeatures:
    """A CLIPModel folder (safetensors) with its tokenizer, e.g. the miniature's ``clip/``."""
    from transformers import CLIPModel, CLIPTokenizer

    from dreamtune.models.loading import load_folder

    model = load_folder(CLIPModel, folder, dtype=torch.float32)
    tokenizer = CLIPTokenizer.from_pretrained(str(folder))
    return ClipFeatures(model, tokenizer, size or model.config.vision_config.image_size, name=name)
