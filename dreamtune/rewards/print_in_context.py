"""A print reward with headroom: does the *print* show the subject in its scene?

The older print rewards scored how faithfully a print reproduces the image (``print_proof``): its best
image is the unchanged one, so RL had nothing to learn. This one judges the simulated print
(``simulated_print``: soft proof with black-point compensation and the paper simulated, seen at a
stated size and distance) for what the picture is for, and keeps the print honest with floors:

  identity, context  ``subject_in_context``'s two halves, every image (and the subject's photos) seen as
                     printed; identity the plain similarity to the photos, (1 + s) / 2 (not the margin over
                     the class: measured, that margin rises for greyscale prints); joined by the λ-harmonic
                     mean (RPO, Miao et al. 2024)
  colour             colourfulness (Hasler & Süsstrunk) of the print over its floor, capped at 1
  tonal              tonal range (5th-95th percentile of luminance) of the print over its floor, capped at 1
  clipping           blocked shadows and blown highlights (share of the image's pixels at 0 or 1 in every
                     channel): its ceiling over it, capped at 1
  grain              high-frequency luminance energy of the print where the picture is flat (no edge
                     nearby: noise shows there, output sharpening does not): its ceiling over it, capped at 1
  ink                1 - share of pixels over the total-ink limit

  reward = harmonic(identity, context) x colour x tonal x clipping x grain x ink

Floors and ceilings come from the starting model's *per-prompt average* print (``set_floors``, from a
few images of each prompt sampled through the run's starting weights before step 1; never the same
seed): a floor is ``FLOOR_SHARE`` of the average, a ceiling ``CEILING_FACTOR`` times it (plus a small
allowance), so an ordinary image of the model is never penalised and nothing is gained past them — a run
may not pale, flatten, clip or roughen its prints to buy identity or context. There is no same-seed
pixel anchor; what keeps the model near its start is a KL term (``rl.kl_weight``).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from dreamtune.evaluation.evaluate import strip_identifier
from dreamtune.rewards.alignment import SubjectInContext
from dreamtune.rewards.colour import colourfulness, luminance
from dreamtune.rewards.simulated_print import SimulatedPrint

FLOOR_SHARE = 0.8  # a floor: this share of the starting model's per-prompt average
CEILING_FACTOR = 1.5  # a ceiling: this many times the per-prompt average ...
CLIPPING_ALLOWANCE, GRAIN_ALLOWANCE = 0.005, 1e-4  # ... plus this much (a clean image's 0 is no ceiling)


def tonal_spread(images: Tensor) -> Tensor:
    """95th - 5th percentile of luminance, (B,)."""
    y = luminance(images.float()).flatten(1)
    return torch.quantile(y, 0.95, dim=1) - torch.quantile(y, 0.05, dim=1)


def clipped_share(images: Tensor, softness: float = 0.004) -> Tensor:
    """Share of the picture blown to white or blocked to black (every channel, soft, differentiable), (B,),
    read after a 3x3 mean: a clipped *area* counts, a sharpening halo's single pixels do not."""
    x = _box(images.float(), 1)
    white = torch.sigmoid((x.min(1).values - 0.985) / softness)
    black = torch.sigmoid((0.015 - x.max(1).values) / softness)
    return (white + black).flatten(1).mean(1)


def _box(y: Tensor, radius: int) -> Tensor:
    return F.avg_pool2d(F.pad(y, (radius,) * 4, mode="replicate"), 2 * radius + 1, stride=1)


def grain(images: Tensor) -> Tensor:
    """Mean squared high-pass luminance (the image minus its 3x3 mean) where the picture is flat: weighted
    by how far the nearest edge is (a soft mask that is 0 within 2 pixels of a strong gradient), (B,)."""
    y = luminance(images.float()).unsqueeze(1)
    smooth = _box(y, 1)
    detail = (y - smooth) ** 2
    edges = (smooth[..., 1:, :-1] - smooth[..., :-1, :-1]) ** 2 + (smooth[..., :-1, 1:] - smooth[..., :-1, :-1]) ** 2
    edges = F.pad(edges, (0, 1, 0, 1), mode="replicate")
    flat = torch.exp(-_box(edges, 2) / 1e-3).detach()  # where no edge is near; the mask itself is not trained
    return (detail * flat).flatten(1).sum(1) / (flat.flatten(1).sum(1) + 1.0)


class PrintInContext:
    name, differentiable, needs_floors = "print_in_context", True, True

    def __init__(self, judged: SubjectInContext, printer: SimulatedPrint, ink_limit: float = 300.0):
        if judged.view is not printer or judged.margin:
            raise ValueError("print_in_context needs subject_in_context with view=printer and margin=False")
        self.judged, self.printer, self.ink_limit = judged, printer, ink_limit
        self.floors: dict[str, tuple[float, ...]] = {}

    def measures(self, images: Tensor, printed: Tensor | None = None) -> Tensor:
        """(B, 4): colourfulness, tonal range, clipped share, grain — of the prints (``printed``, made when not
        given), clipping of the image."""
        printed = self.printer(images.float()) if printed is None else printed
        return torch.stack([colourfulness(printed), tonal_spread(printed), clipped_share(images), grain(printed)], 1)

    @torch.no_grad()
    def set_floors(self, images: Tensor, prompts: Sequence[str]) -> None:
        """Each prompt's floors (colourfulness, tonal range) and ceilings (clipping, grain) from ``images``
        (the starting model's, several seeds a prompt): FLOOR_SHARE and CEILING_FACTOR of their means."""
        measured = self.measures(images)
        keys = [self._key(p) for p in prompts]
        scale = torch.tensor([FLOOR_SHARE, FLOOR_SHARE, CEILING_FACTOR, CEILING_FACTOR])
        allowance = torch.tensor([0.0, 0.0, CLIPPING_ALLOWANCE, GRAIN_ALLOWANCE])
        self.floors = {
            key: tuple((measured[[k == key for k in keys]].mean(0).cpu() * scale + allowance).tolist())
            for key in dict.fromkeys(keys)
        }

    def _key(self, prompt: str) -> str:
        return strip_identifier(prompt, self.judged.identifier)

    def _floor(self, prompt: str) -> tuple[float, ...]:
        """A prompt's floors and ceilings; a prompt never sampled for them (a monitor's) gets the mean over prompts."""
        if not self.floors:
            raise RuntimeError("print_in_context scored before set_floors: the objective sets them before step 1")
        if self._key(prompt) in self.floors:
            return self.floors[self._key(prompt)]
        return tuple(torch.tensor(list(self.floors.values())).mean(0).tolist())

    def parts(self, images: Tensor, prompts: Sequence[str], meta: Mapping) -> dict[str, Tensor]:
        images = images.float()
        printed = self.printer(images)  # once: both the judged halves and the floors see it
        judged = self.judged.parts_of_seen(printed, prompts)
        measured = self.measures(images, printed)
        limits = torch.tensor([self._floor(p) for p in prompts], device=images.device)
        kept = {
            "colour": ((measured[:, 0] + 1) / (limits[:, 0] + 1)).clamp(max=1),
            "tonal": ((measured[:, 1] + 1e-3) / (limits[:, 1] + 1e-3)).clamp(max=1),
            "clipping": (limits[:, 2] / measured[:, 2].clamp_min(1e-9)).clamp(max=1),
            "grain": (limits[:, 3] / measured[:, 3].clamp_min(1e-12)).clamp(max=1),
            "ink": 1 - torch.sigmoid((self.printer.ink(images) - self.ink_limit) / 2).flatten(1).mean(1),
        }
        total = judged[self.judged.name]
        for value in kept.values():
            total = total * value
        return {"identity": judged["identity"], "context": judged["context"], **kept, self.name: total}

    def __call__(self, images: Tensor, prompts: Sequence[str], meta: Mapping) -> Tensor:
        return self.parts(images, prompts, meta)[self.name]
