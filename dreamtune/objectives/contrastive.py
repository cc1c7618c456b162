"""Contrastive pretraining of the miniature CLIP (Radford et al. 2021), with two changes
for a world whose captions repeat: every image-caption pair with the same caption counts as
a positive (soft targets), and an image-image term (two renders of one instance in different
contexts are positives) teaches the image tower instance identity, which CLIP-I relies on.

``freeze_text=True`` trains the image tower only (the text tower, already the pipeline's text
encoder, stays exactly as it is); rows whose ``captioned`` flag is False join only the
image-image term."""

from __future__ import annotations

from typing import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dreamtune.models.clip import image_embeddings, text_embeddings
from dreamtune.models.tokenizer import tokenize
from dreamtune.objectives.base import LossOutput, Objective


def soft_targets(same: Tensor) -> Tensor:
    same = same.float()
    return same / same.sum(dim=1, keepdim=True)


def symmetric_soft_cross_entropy(logits: Tensor, same: Tensor) -> Tensor:
    """Mean of row- and column-wise cross entropy against uniform-over-positives targets."""
    rows = -(soft_targets(same) * F.log_softmax(logits, dim=1)).sum(1).mean()
    cols = -(soft_targets(same.T) * F.log_softmax(logits.T, dim=1)).sum(1).mean()
    return (rows + cols) / 2


class ContrastiveObjective(Objective):
    def __init__(self, clip_model: nn.Module, tokenizer, instance_weight: float = 1.0, freeze_text: bool = False):
        self.clip, self.tokenizer, self.instance_weight = clip_model, tokenizer, instance_weight
        self.freeze_text = freeze_text
        if freeze_text:
            for module in (clip_model.text_model, clip_model.text_projection):
                module.requires_grad_(False)

    def trainable_modules(self) -> dict[str, nn.Module]:
        return {"model": self.clip}

    def __call__(self, batch: Mapping[str, Tensor], step: int) -> LossOutput:
        device = next(self.clip.parameters()).device
        pixels = batch["pixels"].to(device)
        all_images = image_embeddings(self.clip, pixels)
        captioned = batch.get("captioned", torch.ones(len(pixels), dtype=torch.bool)).to(device)
        prompts = [p for p, keep in zip(batch["prompts"], captioned.tolist()) if keep]
        ids = tokenize(self.tokenizer, prompts).to(device)
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze_text):
            texts = text_embeddings(self.clip, ids)
        scale = self.clip.logit_scale.exp().clamp(max=100)
        same_caption = torch.tensor([[a == b for b in prompts] for a in prompts], device=device)
        text_loss = symmetric_soft_cross_entropy(scale * all_images[captioned] @ texts.T, same_caption)
        labels = batch["instance_labels"].to(device)
        same_instance = labels[:, None] == labels[None, :]
        instance_logits = scale * all_images @ all_images.T
        instance_logits = instance_logits.masked_fill(torch.eye(len(labels), dtype=torch.bool, device=device), -1e4)
        off_diagonal = same_instance & ~torch.eye(len(labels), dtype=torch.bool, device=device)
        has_pair = off_diagonal.any(1)
        instance_loss = (
            -(soft_targets(off_diagonal[has_pair]) * F.log_softmax(instance_logits[has_pair], 1)).sum(1).mean()
        )
        loss = text_loss + self.instance_weight * instance_loss
        return LossOutput(
            {"model": loss},
            {
                "loss": loss.item(),
                "text_loss": text_loss.item(),
                "instance_loss": instance_loss.item(),
                "logit_scale": scale.item(),
            },
        )
