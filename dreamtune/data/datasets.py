"""Prepared image sets and the dataset batch source of the training loop.

The batch for step ``s`` is a pure function of (seed, s): data order, augmentation and
caption dropout are all drawn from generators seeded by the step, so resuming at step ``s``
continues exactly the sequence an uninterrupted run would have seen.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from dreamtune.data import augment
from dreamtune.data.ingest import MANIFEST, prepared_records
from dreamtune.errors import UserError


@dataclass(frozen=True)
class Example:
    pixels: torch.Tensor  # (3,H,W) float32 in [-1,1]
    caption: str
    content_hash: str
    mask: torch.Tensor | None = None  # (1,H,W) float32 in [0,1], 1 where the subject is
    source: str = ""  # the user's file name, for messages


def image_to_tensor(image: Image.Image) -> torch.Tensor:
    """PIL RGB -> (3,H,W) float32 in [-1,1]."""
    array = np.asarray(image.convert("RGB"), dtype=np.float32) / 127.5 - 1.0
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


def _read_image(folder: Path, name: str, as_mask: bool = False) -> torch.Tensor:
    try:
        with Image.open(folder / name) as image:
            if as_mask:
                return torch.from_numpy(np.asarray(image.convert("L"), dtype=np.float32) / 255.0)[None]
            return image_to_tensor(image)
    except (OSError, SyntaxError, ValueError) as exc:  # missing, unreadable, truncated, not an image
        reason = (
            "permission denied"
            if isinstance(exc, PermissionError)
            else (getattr(exc, "strerror", None) or str(exc) or type(exc).__name__)
        )
        raise UserError(
            f"{name} in {folder} cannot be read ({reason}); prepare the photos again with dreamtune prepare."
        ) from None


class ImageSet:
    """The images and captions of a ``dreamtune prepare`` output folder, held in memory."""

    def __init__(self, folder: str | Path, default_caption: str = ""):
        folder = Path(folder)
        manifest = folder / MANIFEST
        if not manifest.is_file():
            raise UserError(
                f"{folder} is not a prepared image folder (no {MANIFEST}); run dreamtune prepare on it first."
            )
        self.examples: list[Example] = []
        for record in prepared_records(folder):
            pixels = _read_image(folder, record["file_name"])
            caption = record.get("text") or default_caption
            if not caption:
                raise UserError(
                    f"{record['file_name']} in {folder} has no caption; set data.instance_prompt (e.g. 'a photo of sks dog')."
                )
            mask = _read_image(folder, record["mask"], as_mask=True) if record.get("mask") else None
            if mask is not None and mask.shape[1:] != pixels.shape[1:]:
                raise UserError(
                    f"{record['mask']} in {folder} is not the size of its image; prepare the photos again with dreamtune prepare."
                )
            source = str(record.get("source") or record["file_name"])
            self.examples.append(Example(pixels, caption, record.get("content_hash", ""), mask, source))
        if not self.examples:
            raise UserError(f"{folder} holds no images; run dreamtune prepare on a folder of photos.")

    def __len__(self) -> int:
        return len(self.examples)


def _epoch_batches(
    sizes: list[tuple[int, int]], repeats: int, global_batch: int, seed: int, epoch: int
) -> list[list[int]]:
    """All global batches of one epoch: shuffled, same-size images together (buckets)."""
    generator = torch.Generator().manual_seed(seed * 9_973 + epoch)
    groups: dict[tuple[int, int], list[int]] = {}
    for index in [i for i in range(len(sizes)) for _ in range(repeats)]:
        groups.setdefault(sizes[index], []).append(index)
    batches = []
    for key in sorted(groups):
        members = groups[key]
        order = [members[i] for i in torch.randperm(len(members), generator=generator)]
        for start in range(0, len(order), global_batch):
            chunk = order[start : start + global_batch]
            chunk += [order[i % len(order)] for i in range(global_batch - len(chunk))]
            batches.append(chunk)
    return [batches[i] for i in torch.randperm(len(batches), generator=generator)]


def _fit(pixels: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Cover-resize and centre-crop (3,H,W) to (3,h,w) = size (w,h); used to match buckets."""
    (width, height), (_, h0, w0) = size, pixels.shape
    if (w0, h0) == (width, height):
        return pixels
    scale = max(width / w0, height / h0)
    resized = F.interpolate(
        pixels[None],
        size=(max(height, round(h0 * scale)), max(width, round(w0 * scale))),
        mode="bilinear",
        antialias=True,
        align_corners=False,
    )[0]
    top, left = (resized.shape[1] - height) // 2, (resized.shape[2] - width) // 2
    return resized[:, top : top + height, left : left + width]


LatentEncoder = Callable[[torch.Tensor, str], torch.Tensor]  # (pixels (3,H,W), cache key part) -> (C,h,w)


class DatasetBatches:
    """Batch source: ``batch(step)`` -> {"pixels"|"latents", "prompts", "is_prior", "sizes"[, "loss_weights"]}.

    With ``background_weight`` set (``data.subject_masks``), "loss_weights" (B,1,H,W) weighs each pixel of the
    loss: 1 on the subject's mask, ``background_weight`` outside it, 1 everywhere on class images."""

    def __init__(
        self,
        instances: ImageSet,
        batch_size: int,
        seed: int,
        plan: augment.AugmentPlan,
        repeats: int = 1,
        caption_dropout: float = 0.0,
        classes: ImageSet | None = None,
        process_index: int = 0,
        num_processes: int = 1,
        latent_encoder: LatentEncoder | None = None,
        background_weight: float | None = None,
    ):
        if background_weight is not None:
            unmasked = [e.source for e in instances.examples if e.mask is None]
            if unmasked:
                raise UserError(
                    f"data.subject_masks is on but {unmasked[0]} has no subject mask ({len(unmasked)} of "
                    f"{len(instances)} photos lack one); save NAME.mask.png beside each photo (white on the subject) "
                    "or give the photos an alpha channel, or set data.subject_masks: false."
                )
        self.background_weight = background_weight
        self.instances, self.classes = instances, classes
        self.batch_size, self.seed, self.plan = batch_size, seed, plan
        self.repeats, self.caption_dropout = repeats, caption_dropout
        self.process_index, self.num_processes = process_index, num_processes
        self.latent_encoder = None if plan.pixel_only else latent_encoder
        self._sizes = [tuple(e.pixels.shape[2:0:-1]) for e in instances.examples]
        self._epochs: dict[int, list[list[int]]] = {}
        self._global_batch = batch_size * num_processes
        self._batches_per_epoch = len(_epoch_batches(self._sizes, repeats, self._global_batch, seed, 0))

    def _instance_indices(self, step: int) -> list[int]:
        epoch, position = divmod(step, self._batches_per_epoch)
        if epoch not in self._epochs:  # keep only the current epoch's order
            self._epochs = {epoch: _epoch_batches(self._sizes, self.repeats, self._global_batch, self.seed, epoch)}
        start = self.process_index * self.batch_size
        return self._epochs[epoch][position][start : start + self.batch_size]

    def _class_indices(self, step: int) -> list[int]:
        count = len(self.classes)
        first = (step * self.num_processes + self.process_index) * self.batch_size
        generator = torch.Generator().manual_seed(self.seed * 31 + 17 + first // count)
        order = torch.randperm(count, generator=generator).tolist()
        return [order[(first + i) % count] for i in range(self.batch_size)]

    def _loss_weights(self, example: Example, is_prior: bool, size) -> torch.Tensor | None:
        if self.background_weight is None:
            return None
        if is_prior:  # every subject photo has a mask (checked in __init__); class images count everywhere
            return torch.ones(1, size[1], size[0])
        return self.background_weight + (1 - self.background_weight) * _fit(example.mask, size)

    def _sample(self, example: Example, size, step: int, slot: int, is_prior: bool):
        """(latents or pixels, caption, loss weights or None) of one sample."""
        generator = augment.sample_generator(self.seed, step, slot)
        flip = augment.decide_flip(self.plan, generator)
        pixels = _fit(example.pixels, size)
        weights = self._loss_weights(example, is_prior, size)
        if torch.rand((), generator=generator) < self.caption_dropout:
            caption = ""
        else:
            caption = example.caption
        if self.latent_encoder is not None:
            key = f"{example.content_hash}|{size}|flip={flip}"
            if flip and weights is not None:
                weights = weights.flip(-1)
            return self.latent_encoder(pixels.flip(-1) if flip else pixels, key), caption, weights
        pixels, weights = augment.apply_pixels_and_mask(pixels, weights, self.plan, flip, generator)
        return pixels, caption, weights

    def batch(self, step: int) -> dict:
        chosen = [self.instances.examples[i] for i in self._instance_indices(step)]
        is_prior = [False] * len(chosen)
        if self.classes is not None:
            chosen += [self.classes.examples[i] for i in self._class_indices(step)]
            is_prior += [True] * self.batch_size
        size = tuple(chosen[0].pixels.shape[2:0:-1])
        # slots numbered across the global batch (instances, then class images), as one process would number them
        b, n, r = self.batch_size, self.num_processes, self.process_index
        slots = [r * b + j for j in range(b)] + [n * b + r * b + k for k in range(len(chosen) - b)]
        samples = [self._sample(ex, size, step, slot, prior) for slot, ex, prior in zip(slots, chosen, is_prior)]
        tensors, prompts, weights = zip(*samples)
        key = "latents" if self.latent_encoder is not None else "pixels"
        batch = {
            key: torch.stack(tensors),
            "prompts": list(prompts),
            "is_prior": torch.tensor(is_prior),
            "sizes": torch.tensor([[size[1], size[0]]] * len(chosen)),
        }
        if self.background_weight is not None:
            batch["loss_weights"] = torch.stack(weights)
        return batch
