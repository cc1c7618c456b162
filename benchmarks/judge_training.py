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


def main_hue(sprite) -> float | None:
    """The circular mean hue of a sprite's saturated pixels (None for a grey sprite)."""
    import numpy as np
    from PIL import Image

    rgba = np.asarray(sprite.convert("RGBA"))
    hsv = np.asarray(Image.fromarray(rgba[..., :3]).convert("HSV")).astype(np.float32) / 255.0
    keep = (rgba[..., 3] > 128) & (hsv[..., 1] > 0.3) & (hsv[..., 2] > 0.2)
    if keep.sum() < 0.1 * (rgba[..., 3] > 128).sum():
        return None
    angle = hsv[..., 0][keep] * 2 * np.pi
    return float((np.arctan2(np.sin(angle).mean(), np.cos(angle).mean()) / (2 * np.pi)) % 1.0)


def tinted(glyph: str, hue: float | None):
    """``glyph`` with every coloured pixel set to ``hue`` (the class-shape confuser's recolouring), or
    made grey (``None``, for a grey subject)."""
    import numpy as np
    from PIL import Image

    rgba = np.asarray(world._glyph(glyph))
    if hue is not None:
        return Image.fromarray(world._shift_hue(rgba, 0.0, hue), "RGBA")
    grey = rgba.copy()
    grey[..., :3] = rgba[..., :3].astype(np.float32).mean(-1, keepdims=True).astype(np.uint8)
    return Image.fromarray(grey, "RGBA")


def _identity_block(rng: random.Random, k: int, hard_p: float) -> list[tuple]:
    """Two identities as (sprite, label, class index): usually a pretraining instance and a distractor;
    with probability ``hard_p`` a hard negative pair that only shape *and* colour together tell apart —
      hue twin   a distractor glyph and the same glyph half-way round the colour wheel (± a quarter)
      shape twin a pretraining instance or distractor, and another distractor glyph tinted to its main hue.
    Only distractor glyphs are recoloured: a world glyph at a new hue could be a held-out instance."""
    first = rng.choice(world.PRETRAIN_INSTANCES) if rng.random() < 0.5 else None
    if first is not None:
        one = (world.object_sprite(first.name), world.INSTANCES.index(first), CLASSES.index(first.class_noun))
    else:
        glyph, hue = rng.choice(DISTRACTOR_GLYPHS), round(rng.random(), 2)
        one = (world.glyph_sprite(glyph, hue), 1000 + k, -1)
    if rng.random() >= hard_p:
        other = world.glyph_sprite(rng.choice(DISTRACTOR_GLYPHS), round(rng.random(), 2))
    elif first is None and rng.random() < 0.5:  # hue twin
        other = world.glyph_sprite(glyph, round((hue + rng.uniform(0.25, 0.75)) % 1.0, 2))
    else:  # shape twin
        shapes = DISTRACTOR_GLYPHS if first is not None else [g for g in DISTRACTOR_GLYPHS if g != glyph]
        other = tinted(rng.choice(shapes), main_hue(one[0]))
    return [one, (other, 1000 + k + 1, -1)]


def render_pairs(pairs: int, seed: int, plain_p: float = 0.1, hard_p: float = 0.0) -> Rendered:
    """``pairs`` identities with two renders each in different contexts, in blocks of two identities
    (pairs 2b and 2b+1; batches draw whole blocks so a hard negative meets its twin): pretraining
    instances and distractor pseudo-instances, never a held-out instance; ``hard_p``: the share of
    blocks that are hard negatives (:func:`_identity_block`)."""
    rng = random.Random(seed)
    images, identity, classes, contexts = [], [], [], []

    def add(sprite, label: int, noun: int) -> None:
        for context in rng.sample(list(world.CONTEXTS), 2):
            context = None if rng.random() < plain_p else context
            images.append(world.compose(sprite, context, rng.randrange(10**9)))
            identity.append(label)
            classes.append(noun)
            contexts.append(CONTEXT_LABELS.index(context or "plain"))

    for k in range(0, pairs, 2):
        if hard_p:
            for sprite, label, noun in _identity_block(rng, k, hard_p)[: pairs - k]:
                add(sprite, label, noun)
            continue
        # the first judges' pool (v3, bit for bit): alternately an instance and a distractor, no hard negatives
        spec = rng.choice(world.PRETRAIN_INSTANCES)
        add(world.object_sprite(spec.name), world.INSTANCES.index(spec), CLASSES.index(spec.class_noun))
        if k + 1 < pairs:
            add(world.glyph_sprite(rng.choice(DISTRACTOR_GLYPHS), round(rng.random(), 2)), 1000 + k + 1, -1)
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
