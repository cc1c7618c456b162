"""Feature extractors as modules (k-diffusion's evaluation.py pattern): images or prompts in,
unit-norm embeddings out. Metrics (metrics.py) are pure functions of these embeddings.

  ClipFeatures  CLIP image + text embeddings (CLIP-I, CLIP-T); default openai/clip-vit-base-patch32,
                the miniature's own CLIP offline
  DinoFeatures  the [CLS] token of a self-supervised ViT (DINO); default facebook/dino-vits16

Preprocessing (size, mean, std) comes from the model folder's preprocessor_config.json when it
has one; the mini CLIP has none and was trained on pixels scaled to [-1, 1] (mean = std = 0.5).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from dreamtune.errors import UserError
from dreamtune.models.clip import image_embeddings, text_embeddings
from dreamtune.models.tokenizer import tokenize

DEFAULT_CLIP = "openai/clip-vit-base-patch32"
DEFAULT_DINO = "facebook/dino-vits16"


def center_square(image: Image.Image, size: int) -> Image.Image:
    """The standard CLIP / DreamBench preprocessing: resize the short side to ``size`` (bicubic),
    then crop the centre ``size``² (a wide photo is cropped, not squashed)."""
    image = image.convert("RGB")
    scale = size / min(image.size)
    width, height = max(size, round(image.width * scale)), max(size, round(image.height * scale))
    image = image.resize((width, height), Image.Resampling.BICUBIC)
    left, top = (width - size) // 2, (height - size) // 2
    return image.crop((left, top, left + size, top + size))


class ImageFeatures(nn.Module):
    """Shared preprocessing: short side to ``size``, centre crop, scale to [0,1], normalise by mean/std."""

    def __init__(self, size: int, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), name: str = "features"):
        super().__init__()
        self.size, self.name = size, name
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def pixels(self, images: list[Image.Image]) -> torch.Tensor:
        arrays = [np.asarray(center_square(im, self.size), dtype=np.float32) / 255 for im in images]
        batch = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)
        return ((batch - self.mean) / self.std).to(next(self.parameters()).dtype)

    def tensor_pixels(self, images: torch.Tensor) -> torch.Tensor:
        """(B,3,H,W) in [0,1] -> the model's input, differentiably (rewards backpropagate through it);
        short side to ``size``, centre crop, as ``pixels``."""
        height, width = images.shape[-2:]
        scale = self.size / min(height, width)
        shape = (max(self.size, round(height * scale)), max(self.size, round(width * scale)))
        resized = F.interpolate(images.float(), size=shape, mode="bicubic", align_corners=False, antialias=True)
        top, left = (shape[0] - self.size) // 2, (shape[1] - self.size) // 2
        resized = resized[..., top : top + self.size, left : left + self.size]
        return ((resized - self.mean) / self.std).to(next(self.parameters()).dtype)

    def embed(self, pixels: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def images(self, images: list[Image.Image]) -> torch.Tensor:
        """(N,D) unit-norm float32."""
        return torch.cat([self.embed(self.pixels(images[i : i + 64])) for i in range(0, len(images), 64)])


class ClipFeatures(ImageFeatures):
    def __init__(
        self, model: nn.Module, tokenizer, size: int, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), name: str = "clip"
    ):
        super().__init__(size, mean, std, name)
        self.model, self.tokenizer = model.eval(), tokenizer

    def embed(self, pixels: torch.Tensor) -> torch.Tensor:
        return image_embeddings(self.model, pixels)

    @torch.no_grad()
    def texts(self, prompts: list[str]) -> torch.Tensor:
        """(N,D) unit-norm float32."""
        return torch.cat(
            [
                text_embeddings(self.model, tokenize(self.tokenizer, prompts[i : i + 256]))
                for i in range(0, len(prompts), 256)
            ]
        )


class DinoFeatures(ImageFeatures):
    """DINO embedding as the DreamBooth paper uses it: the ViT's final [CLS] token."""

    def __init__(self, model: nn.Module, size: int, mean, std, name: str = "dino"):
        super().__init__(size, mean, std, name)
        self.model = model.eval()

    def embed(self, pixels: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.model(pixel_values=pixels).last_hidden_state[:, 0].float(), dim=-1)


def _preprocessing(folder: Path, default_size: int, default_mean, default_std) -> tuple[int, tuple, tuple]:
    path = folder / "preprocessor_config.json"
    if not path.is_file():
        return default_size, default_mean, default_std
    config = json.loads(path.read_text())
    size = config.get("crop_size") or config.get("size") or default_size
    if isinstance(size, dict):
        size = size.get("height") or size.get("shortest_edge") or default_size
    return int(size), tuple(config.get("image_mean", default_mean)), tuple(config.get("image_std", default_std))


def _local(name_or_folder: str | Path, what: str) -> Path:
    """A local folder, or the hub cache's snapshot of a hub id; otherwise one clear sentence."""
    path = Path(name_or_folder).expanduser()
    if path.is_dir():
        return path
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(str(name_or_folder), allow_patterns=["*.json", "*.safetensors", "*.txt"]))
    except Exception as exc:
        raise UserError(
            f"{what} model {name_or_folder} is not a local folder and could not be fetched "
            f"({type(exc).__name__}); download it once with network access, or pass a local folder."
        ) from None


def load_clip(folder: str | Path = DEFAULT_CLIP, size: int | None = None, name: str = "clip") -> ClipFeatures:
    """A CLIPModel folder (safetensors) with its tokenizer, e.g. the miniature's ``clip/``."""
    from transformers import CLIPModel, CLIPTokenizer

    from dreamtune.models.loading import load_folder

    folder = _local(folder, "CLIP")
    model = load_folder(CLIPModel, folder, dtype=torch.float32)
    tokenizer = CLIPTokenizer.from_pretrained(str(folder))
    if tokenizer.model_max_length > model.config.text_config.max_position_embeddings:  # folder without the limit
        tokenizer.model_max_length = model.config.text_config.max_position_embeddings
    default = model.config.vision_config.image_size
    size_found, mean, std = _preprocessing(folder, default, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    return ClipFeatures(model, tokenizer, size or size_found, mean, std, name=name)


def load_dino(folder: str | Path = DEFAULT_DINO, name: str = "dino") -> DinoFeatures:
    """A ViT folder (e.g. facebook/dino-vits16) as a DINO feature extractor."""
    from transformers import ViTModel

    from dreamtune.models.loading import load_folder

    folder = _local(folder, "DINO")
    model = load_folder(ViTModel, folder, dtype=torch.float32, add_pooling_layer=False)
    size, mean, std = _preprocessing(folder, model.config.image_size, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    return DinoFeatures(model, size, mean, std, name=name)
