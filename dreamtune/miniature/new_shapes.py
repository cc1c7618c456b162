"""Subjects of a new shape (issue 34): OpenMoji glyphs of the world's classes whose outline no
pretraining instance has, for the quality lab's harder split. The held-out ``*3`` subjects of
``world.HELD_OUT`` are mostly recolours of pretraining glyphs; these are not.

"New shape" is measured, not asserted: the outline of a glyph (its alpha mask's boundary, centred and
scaled by its larger side, mirrored or not) against the outline of every pretraining glyph, by the
symmetric chamfer distance (mean distance from each outline point to the other outline). Calibration
on pairs whose shape is the same with details changed: clock faces with other hands 0.000, cat faces with
other expressions 0.001, the black cat 0.001, glasses and sunglasses 0.002, the service dog beside the
guide dog 0.023; distinct pretraining glyphs of one class: 0.018 (two shoes) to 0.155. A subject is new
when its nearest pretraining outline is at least ``NEW_SHAPE_DISTANCE`` away, about twice the largest
same-shape pair. Glyphs the judge's image tower trains on as distractors are left out, so these subjects
are unseen by the model and by the judge. The measure was then checked by eye on a contact sheet
(``benchmarks/new_shape_sheet.py``), which removed two whose extra strokes, not their body, made the
distance. Nothing here enters pretraining (``world.PRETRAIN_INSTANCES`` is built from ``world.INSTANCES``).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from dreamtune.miniature import world

NEW_SHAPE_DISTANCE = 0.04
SAME_SHAPE_PAIRS = (  # (glyph, glyph): one shape, details changed — the calibration above
    ("1F550", "1F555"),
    ("1F63A", "1F63C"),
    ("1F408", "1F408 200D 2B1B"),
    ("1F453", "1F576"),
    ("1F9AE", "1F415 200D 1F9BA"),
)
# (name, class noun, glyph): written down 2026-12-06 from the candidates whose outline distance passed, before any
# training; two that passed were dropped after the by-eye check (experiments/new-shape-split): the pot of food 1F372
# (a bowl like the pretraining one under steam lines) and the timer clock 23F2 (the mantelpiece clock's body)
_SUBJECTS = (
    ("dog_wolf", "dog", "1F43A"),
    ("cat_tiger", "cat", "1F405"),
    ("clock_hourglass", "clock", "231B"),
    ("boot_sandal", "boot", "1F461"),
    ("boot_thong", "boot", "1FA74"),
    ("sneaker_heel", "sneaker", "1F460"),
    ("toy_pinata", "toy", "1FA85"),
    ("toy_controller", "toy", "1F3AE"),
    ("toy_maracas", "toy", "1FA87"),
    ("toy_wand", "toy", "1FA84"),
    ("toy_dolls", "toy", "1F38E"),
    ("cartoon_alien", "cartoon", "1F47D"),
    ("cartoon_goblin", "cartoon", "1F47A"),
    ("cartoon_skull", "cartoon", "1F480"),
    ("vase_bouquet", "vase", "1F490"),
    ("vase_lotus", "vase", "1FAB7"),
    ("candle_diya", "candle", "1FA94"),
    ("backpack_luggage", "backpack", "1F9F3"),
    ("backpack_briefcase", "backpack", "1F4BC"),
    ("backpack_pouch", "backpack", "1F45D"),
    ("teapot_sake", "teapot", "1F376"),
    ("can_box", "can", "1F9C3"),
    ("can_straw", "can", "1F964"),
    ("stuffed_animal_koala", "stuffed animal", "1F428"),
)
NEW_SHAPES: tuple[world.Instance, ...] = tuple(world.Instance(n, c, g, 0.0) for n, c, g in _SUBJECTS)


@lru_cache(maxsize=None)
def outline(glyph: str, mirrored: bool = False) -> torch.Tensor:
    """(N, 2) points of the glyph's outline, centred on its box and scaled by the box's larger side."""
    alpha = np.asarray(world._glyph(glyph))[..., 3] > 128
    if mirrored:
        alpha = alpha[:, ::-1]
    padded = np.pad(alpha, 1)
    inner = padded[1:-1, 1:-1] & padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    ys, xs = np.nonzero(alpha)
    centre_y, centre_x = (ys.min() + ys.max()) / 2, (xs.min() + xs.max()) / 2
    side = max(np.ptp(ys), np.ptp(xs))
    edge_y, edge_x = np.nonzero(alpha & ~inner)
    return torch.tensor(np.stack([(edge_y - centre_y) / side, (edge_x - centre_x) / side], 1), dtype=torch.float32)


def _chamfer(a: torch.Tensor, b: torch.Tensor) -> float:
    distances = torch.cdist(a, b)
    return float((distances.min(1).values.mean() + distances.min(0).values.mean()) / 2)


def shape_distance(glyph: str, other: str) -> float:
    """Outline chamfer distance of two glyphs, the nearer of ``other`` as drawn and mirrored (training flips)."""
    return min(_chamfer(outline(glyph), outline(other, mirrored)) for mirrored in (False, True))


def nearest_pretraining_glyph(glyph: str) -> tuple[float, str]:
    """(distance, glyph) of the pretraining outline nearest to ``glyph``."""
    return min((shape_distance(glyph, g), g) for g in sorted({i.glyph for i in world.PRETRAIN_INSTANCES}))
