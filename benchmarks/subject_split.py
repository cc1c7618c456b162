"""The held-out subjects split once, before any tuning (issue 14), written down here.

Recipes for the miniature are tuned on ``TUNING`` only; figures are reported on ``TEST`` only.
dog3 and backpack3 were already used to tune earlier recipes and ablations, so they are in the
tuning half; the other 13 were shuffled with random.Random(20261127) and the first five joined
them. Fixed on 2026-11-27; changing it after seeing test figures would make them tuning figures.
"""

from __future__ import annotations

TUNING: tuple[str, ...] = ("dog3", "backpack3", "candle3", "cat3", "clock3", "toy3", "vase3")
TEST: tuple[str, ...] = ("boot3", "bowl3", "can3", "cartoon3", "glasses3", "sneaker3", "stuffed_animal3", "teapot3")

# New shapes (issue 34; dreamtune/miniature/new_shapes.py): 24 subjects whose outline no pretraining glyph has.
# Split 2026-12-06 before any run on them: each class's subjects shuffled with random.Random(20261206), classes in
# alphabetical order, then dealt alternately to the two halves (26 then; the by-eye check removed bowl_pot and
# clock_timer from the test half). Tune on NEW_TUNING only, report on NEW_TEST.
NEW_TUNING: tuple[str, ...] = (
    "backpack_briefcase", "backpack_pouch", "boot_thong", "can_box", "candle_diya", "cartoon_goblin", "cat_tiger",
    "clock_hourglass", "sneaker_heel", "teapot_sake", "toy_maracas", "toy_pinata", "vase_lotus",
)  # fmt: skip
NEW_TEST: tuple[str, ...] = (
    "backpack_luggage", "boot_sandal", "can_straw", "cartoon_alien", "cartoon_skull", "dog_wolf",
    "stuffed_animal_koala", "toy_wand", "toy_dolls", "toy_controller", "vase_bouquet",
)  # fmt: skip
HALVES = {"tuning": TUNING, "test": TEST, "new-tuning": NEW_TUNING, "new-test": NEW_TEST}


def subjects_of(half: str, names: str = "") -> tuple[str, ...]:
    """The subjects of ``half`` (a ``HALVES`` key: "tuning", "test", "new-tuning", "new-test"), or the comma-separated ``names`` among them
    (in the half's order); a name outside the half is a ValueError that says which half holds what."""
    subjects = HALVES[half]
    if not names:
        return subjects
    unknown = set(names.split(",")) - set(subjects)
    if unknown:
        raise ValueError(f"--subjects {','.join(sorted(unknown))}: not in the {half} half {', '.join(subjects)}")
    return tuple(s for s in subjects if s in names.split(","))
