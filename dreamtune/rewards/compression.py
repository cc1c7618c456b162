"""JPEG (in)compressibility, the DDPO paper's (Black et al. 2023) simplest rewards: the size in
kB of the image saved as JPEG at quality 95. Not differentiable (DDPO only)."""

from __future__ import annotations

import io
from typing import Mapping, Sequence

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from dreamtune.rewards.base import SinglePart


def jpeg_kilobytes(images: Tensor, quality: int = 95) -> Tensor:
    sizes = []
    for array in (images.detach().float().clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy():
        buffer = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(array)).save(buffer, format="JPEG", quality=quality)
        sizes.append(buffer.tell() / 1000)
    return torch.tensor(sizes, device=images.device)


class JpegCompressibility(SinglePart):
    name, differentiable = "jpeg_compressibility", False

    def __call__(self, images: Tensor, prompts: Sequence[str], meta: Mapping) -> Tensor:
        return -jpeg_kilobytes(images)


class JpegIncompressibility(SinglePart):
    name, differentiable = "jpeg_incompressibility", False

    def __call__(self, images: Tensor, prompts: Sequence[str], meta: Mapping) -> Tensor:
        return jpeg_kilobytes(images)
