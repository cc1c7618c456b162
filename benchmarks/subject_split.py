"""The held-out subjects split once, before any tuning (issue 14), written down here.

Recipes for the miniature are tuned on ``TUNING`` only; figures are reported on ``TEST`` only.
dog3 and backpack3 were already used to tune earlier recipes and ablations, so they are in the
tuning half; the other 13 were shuffled with random.Random(20261127) and the first five joined
them. Fixed on 2026-11-27; changing it after seeing test figures would make them tuning figures.
"""

from __future__ import annotations

TUNING: tuple[str, ...] = ("dog3", "backpack3", "candle3", "cat3", "clock3", "toy3", "vase3")
TEST: tuple[str, ...] = ("boot3", "bowl3", "can3", "cartoon3", "glasses3", "sneaker3", "stuffed_animal3", "teapot3")


def subjects_of(half: str, names: str = "") -> tuple[str, ...]:
    """The subjects of ``half`` ("tuning" or "test"), or the comma-separated ``names`` among them
    (in the half's order); a name outside the half is a ValueError that says which half holds what."""
    subjects = {"tuning": TUNING, "test": TEST}[half]
    if not names:
        return subjects
    unknown = set(names.split(",")) - set(subjects)
    if unknown:
        raise ValueError(f"--subjects {','.join(sorted(unknown))}: not in the {half} half {', '.join(subjects)}")
    return tuple(s for s in subjects if s in names.split(","))
