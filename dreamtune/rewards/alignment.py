"""Rewards measured with CLIP (the mini CLIP on the miniature), differentiable:

clip_score        cosine of the image with its prompt (the identifier removed): keeps RL
                  fine-tuning on the prompt
subject_fidelity  cosine of the image with the mean embedding of the subject's photos (CLIP-I):
                  lets RL push a personalized model toward its subject
"""

from __future__ import annotations

from typing import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from dreamtune.evaluation.evaluate import strip_identifier
from dreamtune.evaluation.features import ClipFeatures
from dreamtune.rewards.base import SinglePart


class ClipScore(SinglePart):
    name, differentiable = "clip_score", True

    def __init__(self, features: ClipFeatures, identifier: str = "sks"):
        self.features, self.identifier = features, identifier

    def __call__(self, images: Tensor, prompts: Sequence[str], meta: Mapping) -> Tensor:
        embedded = self.features.embed(self.features.tensor_pixels(images))
        texts = self.features.texts([strip_identifier(p, self.identifier) for p in prompts]).to(embedded.device)
        return (embedded * texts).sum(-1)


class SubjectFidelity(SinglePart):
    name, differentiable = "subject_fidelity", True

    def __init__(self, features: ClipFeatures, photos: list):
        self.features = features
        with torch.no_grad():
            self.target = F.normalize(features.images(photos).mean(0), dim=-1)

    def __call__(self, images: Tensor, prompts: Sequence[str], meta: Mapping) -> Tensor:
        embedded = self.features.embed(self.features.tensor_pixels(images))
        return embedded @ self.target.to(embedded.device)
