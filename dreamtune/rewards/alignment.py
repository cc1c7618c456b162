"""Rewards measured with CLIP (the mini CLIP on the miniature), differentiable:

clip_score        cosine of the image with its prompt (the identifier removed): keeps RL
                  fine-tuning on the prompt
subject_fidelity  cosine of the image with the mean embedding of the subject's photos (CLIP-I):
                  lets RL push a personalized model toward its subject
subject_in_context the subject (a margin over its class images) and the prompted scene (a probability
                  against the run's other scenes), joined by a harmonic mean: neither can be traded away
"""

from __future__ import annotations

import math
from typing import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from dreamtune.evaluation.evaluate import strip_identifier
from dreamtune.evaluation.features import ClipFeatures, ImageFeatures
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


def _embed_viewed(features: ImageFeatures, images: list, view: Callable[[Tensor], Tensor] | None) -> Tensor:
    """(N,D) unit-norm embeddings of PIL ``images``, each seen through ``view`` first when given."""
    if view is None:
        return features.images(images)
    import numpy as np

    pixels = [torch.from_numpy(np.asarray(i.convert("RGB"), dtype=np.float32) / 255).permute(2, 0, 1) for i in images]
    return torch.cat([features.embed(features.tensor_pixels(view(p[None]))) for p in pixels])


class SubjectInContext:
    """What personalization is for, scored so that neither half can be traded for the other: the
    λ-harmonic mean (RPO, Miao et al. 2024) of two values in [0, 1],

      identity  (1 + m) / 2, m the margin of CLIP-I to the photos' mean embedding over CLIP-I to a
                typical class image (a soft mean of the prior-preservation set at CLIP's temperature):
                0.5 when the image is as near the class as the subject, above when nearer the subject.
                A margin, not a probability: at CLIP's temperature the probability is 1.0 for most
                samples of a personalized model, and a saturated reward has no gradient and no pick.
      context   p(its own prompt | image) among the reward's prompts (the identifier removed): the
                prompted scene against every other scene the run asks for (chance 1 / prompts).

      reward = 1 / (λ / identity + (1 - λ) / context),  λ = ``identity_weight``.

    The identity half uses ``identity_features`` when given (``rl.identity_model``: a DINO ViT, the
    DreamBench identity metric, or the miniature's judge), else the CLIP. ``view``: what every image is
    seen through before either half scores it — the generated ones, the photos and the class images alike
    (print_in_context: the simulated print). ``margin=False``: identity = (1 + similarity to the photos) / 2,
    no margin over the class (print_in_context: a margin rises when an image moves away from the class's
    usual colours, greyscale included). Evaluate with a scorer the reward was not trained against
    (experiments/subject-fidelity-rl)."""

    name, differentiable = "subject_in_context", True

    def __init__(
        self,
        features: ClipFeatures,
        photos: list,
        class_images: list,
        prompts: Sequence[str],
        identifier: str = "sks",
        identity_weight: float = 0.9,
        identity_features: ImageFeatures | None = None,
        view: Callable[[Tensor], Tensor] | None = None,
        margin: bool = True,
    ):
        self.features, self.identifier, self.identity_weight = features, identifier, identity_weight
        self.identity_features, self.view, self.margin = identity_features or features, view, margin
        with torch.no_grad():
            self.target = F.normalize(_embed_viewed(self.identity_features, photos, view).mean(0), dim=-1)
            self.others = _embed_viewed(self.identity_features, class_images, view) if margin else None
        self.scale = float(features.model.logit_scale.detach().exp())  # CLIP's temperature, for both halves
        self.prompts = list(dict.fromkeys(strip_identifier(p, identifier) for p in prompts))
        self._texts: dict[str, Tensor] = {}

    def parts(self, images: Tensor, prompts: Sequence[str], meta: Mapping) -> dict[str, Tensor]:
        return self.parts_of_seen(images if self.view is None else self.view(images), prompts)

    def parts_of_seen(self, images: Tensor, prompts: Sequence[str]) -> dict[str, Tensor]:
        """``parts`` of images already seen through ``view`` (a caller that has them need not view twice)."""
        embedded = self.features.embed(self.features.tensor_pixels(images))
        seen = self.identity_features
        identified = embedded if seen is self.features else seen.embed(seen.tensor_pixels(images))
        mine = identified @ self.target.to(embedded.device)  # cosine to the photos' mean
        if self.margin:
            others = self.scale * (identified @ self.others.to(embedded.device).T)
            typical_other = (torch.logsumexp(others, dim=1) - math.log(others.shape[1])) / self.scale  # soft mean
            mine = mine - typical_other
        identity = ((1 + mine) / 2).clamp(0, 1)
        own = [strip_identifier(p, self.identifier) for p in prompts]
        candidates = list(dict.fromkeys(self.prompts + own))
        missing = [p for p in candidates if p not in self._texts]  # each prompt embedded once per run
        if missing:
            self._texts.update(zip(missing, self.features.texts(missing)))
        texts = torch.stack([self._texts[p] for p in candidates]).to(embedded.device)
        scenes = torch.log_softmax(self.scale * embedded @ texts.T, dim=1)
        context = scenes.gather(1, torch.tensor([candidates.index(p) for p in own], device=scenes.device)[:, None])
        context = context.squeeze(1).exp()
        lam = self.identity_weight
        combined = identity * context / (lam * context + (1 - lam) * identity).clamp_min(1e-12)  # = 1/(λ/a + (1-λ)/b)
        return {"identity": identity, "context": context, self.name: combined}

    def __call__(self, images: Tensor, prompts: Sequence[str], meta: Mapping) -> Tensor:
        return self.parts(images, prompts, meta)[self.name]
