"""CLIP embeddings across transformers versions (v5 returns an output object whose
``pooler_output`` holds the projected embedding; v4 returned the tensor)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _tensor(output) -> torch.Tensor:
    return output if isinstance(output, torch.Tensor) else output.pooler_output


def image_embeddings(model, pixels: torch.Tensor) -> torch.Tensor:
    """(B,3,H,W) normalised as the model expects -> (B,D) unit-norm float32."""
    return F.normalize(_tensor(model.get_image_features(pixel_values=pixels)).float(), dim=-1)


def text_embeddings(model, input_ids: torch.Tensor) -> torch.Tensor:
    """(B,L) token ids -> (B,D) unit-norm float32."""
    return F.normalize(_tensor(model.get_text_features(input_ids=input_ids)).float(), dim=-1)
