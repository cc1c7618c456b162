"""The training half of the miniature's judge (dreamtune/miniature/judge.py keeps what judging
needs): the data it learns from — pairs of renders of pretraining instances and distractor
pseudo-instances, never a held-out instance — the generator-like degradations, and its loss.
Used by benchmarks/miniature_judge.py, which trains and validates the judge."""

from __future__ import annotations

import random
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dreamtune.miniature import world  # noqa: E402
from dreamtune.miniature.distractors import GLYPHS as DISTRACTOR_GLYPHS  # noqa: E402
from dreamtune.miniature.judge import CLASSES, CONTEXT_LABELS, JudgeNet, gaussian_blur, to_pixels, vae_round_trip  # noqa: E402


def fade(pixels: Tensor, desaturate: Tensor, lighten: Tensor) -> Tensor:
    """Per-image loss of colour without a change of hue: mix toward the image's grey by
    ``desaturate`` and toward white by ``lighten`` (fractions, one per image)."""
    grey = pixels.mean(dim=1, keepdim=True)
    pixels = pixels + (grey - pixels) * desaturate.view(-1, 1, 1, 1)
    return pixels + (1.0 - pixels) * lighten.view(-1, 1, 1, 1)


def degrade(
    pixels: Tensor,
    vae,
    generator: torch.Generator,
    vae_p: float = 0.75,
    max_blur: float = 1.5,
    max_noise: float = 0.06,
    round_trips: Tensor | None = None,
    fade_p: float = 0.0,
    max_desaturate: float = 0.5,
    max_lighten: float = 0.3,
) -> Tensor:
    """``pixels`` as the generator degrades images: the VAE round trip (``vae``, or the same
    images' ``round_trips`` computed once), with probability ``fade_p`` paler colours of the same
    hue (generated subjects often are; see :func:`fade`), a blur of up to ``max_blur`` px, Gaussian noise."""
    batch = pixels.shape[0]
    through_vae = torch.rand(batch, generator=generator) < vae_p
    if (vae is not None or round_trips is not None) and through_vae.any():
        pixels = pixels.clone()
        pixels[through_vae] = (
            round_trips[through_vae] if round_trips is not None else vae_round_trip(vae, pixels[through_vae])
        )
    if fade_p > 0:
        faded = (torch.rand(batch, generator=generator) < fade_p).float()
        pixels = fade(
            pixels,
            faded * torch.rand(batch, generator=generator) * max_desaturate,
            faded * torch.rand(batch, generator=generator) * max_lighten,
        )
    pixels = gaussian_blur(pixels, torch.rand(batch, generator=generator) * max_blur)
    noise = torch.randn(pixels.shape, generator=generator) * (
        torch.rand(batch, 1, 1, 1, generator=generator) * max_noise
    )
    return (pixels + noise).clamp(-1, 1)


@dataclass
class Rendered:
    pixels: Tensor  # (N,3,64,64) in [-1,1]
    identity: Tensor  # (N,) pair label: same value = same instance
    classes: Tensor  # (N,) class index, -1 for distractors
    contexts: Tensor  # (N,) context index


def render_pairs(pairs: int, seed: int, plain_p: float = 0.1) -> Rendered:
    """``pairs`` identities with two renders each in different contexts: half pretraining
    instances, half distractor pseudo-instances (never a held-out instance)."""
    rng = random.Random(seed)
    images, identity, classes, contexts = [], [], [], []
    for k in range(pairs):
        if k % 2 == 0:
            spec = rng.choice(world.PRETRAIN_INSTANCES)
            sprite, label, noun = (
                world.object_sprite(spec.name),
                world.INSTANCES.index(spec),
                CLASSES.index(spec.class_noun),
            )
        else:
            sprite, label, noun = (
                world.glyph_sprite(rng.choice(DISTRACTOR_GLYPHS), round(rng.random(), 2)),
                1000 + k,
                -1,
            )
        for context in rng.sample(list(world.CONTEXTS), 2):
            context = None if rng.random() < plain_p else context
            images.append(world.compose(sprite, context, rng.randrange(10**9)))
            identity.append(label)
            classes.append(noun)
            contexts.append(CONTEXT_LABELS.index(context or "plain"))
    return Rendered(to_pixels(images), torch.tensor(identity), torch.tensor(classes), torch.tensor(contexts))


def supervised_contrastive(embeddings: Tensor, labels: Tensor, temperature: float = 0.1) -> Tensor:
    logits = embeddings @ embeddings.T / temperature
    self_mask = torch.eye(len(labels), dtype=torch.bool)
    logits = logits.masked_fill(self_mask, -1e9)
    positives = (labels[:, None] == labels[None, :]) & ~self_mask
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    has = positives.any(dim=1)
    return -(log_prob * positives).sum(1)[has].div(positives.sum(1)[has]).mean()


def judge_loss(net: JudgeNet, pixels: Tensor, data: Rendered) -> tuple[Tensor, dict]:
    out = net(pixels)
    contrastive = supervised_contrastive(out["embedding"], data.identity)
    world_rows = data.classes >= 0
    class_loss = F.cross_entropy(out["class"][world_rows], data.classes[world_rows])
    context_loss = F.cross_entropy(out["context"], data.contexts)
    loss = contrastive + class_loss + context_loss
    return loss, {
        "contrastive": float(contrastive.detach()),
        "class": float(class_loss.detach()),
        "context": float(context_loss.detach()),
    }
