"""A wider shape vocabulary for the UNet's pretraining (issue 34's pre-registered design,
experiments/new-shape-baseline): OpenMoji object glyphs of no world class, each drawn in the world's
contexts and captioned by the context alone ("a photo on the beach"), so that the model has composed
hundreds of outlines into busy scenes, not 33. Every caption word is already in the miniature's
tokenizer, so the text tower and the judge stay as shipped.

The glyphs keep the new-shape split honest: each one's outline is at least ``NEW_SHAPE_DISTANCE`` (the
split's own threshold, ``new_shapes.py``) from every new-shape subject and every judge distractor, as
drawn and mirrored. ``OUTLINE_GLYPHS`` is the list ``choose_outline_glyphs()`` wrote on 2026-12-07
(``python -m dreamtune.miniature.outlines`` writes it again); a test re-measures a sample of it.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from dreamtune.atomic import atomic_file
from dreamtune.miniature import distractors, scenery, world
from dreamtune.miniature.new_shapes import NEW_SHAPE_DISTANCE, NEW_SHAPES, shape_distance
from dreamtune.miniature.pool import Pool, render_scenes

OUTLINES_VERSION = 1
# object and symbol blocks of Unicode (faces 1F600-1F64F, flags, letters and skin tones left out)
_BLOCKS = ((0x1F300, 0x1F5FF), (0x1F680, 0x1F6FF), (0x1F900, 0x1FAFF), (0x2600, 0x27BF))
_SKIN_TONES = range(0x1F3FB, 0x1F400)
_MIN_PIXELS = 200  # a glyph the font draws as a dot or not at all is no outline


@dataclass(frozen=True)
class OutlineScene:
    glyph: str
    context: str
    hue_shift: float

    @property
    def instance(self) -> str:
        return f"outline {self.glyph}"

    def caption(self, identifier: str | None = None) -> str:
        return f"a photo {scenery.PHRASES[self.context]}"


def render_outline(scene: OutlineScene, seed: int) -> Image.Image:
    return world.compose(world.glyph_sprite(scene.glyph, scene.hue_shift), scene.context, seed)


def reference_glyphs() -> list[str]:
    """The outlines a wider-vocabulary glyph must stay away from: every new-shape subject and judge distractor."""
    return [s.glyph for s in NEW_SHAPES] + list(distractors.GLYPHS)


def _taken() -> set[str]:
    return {g for glyphs in world.GLYPHS.values() for g in glyphs} | set(reference_glyphs())


def _candidates() -> list[str]:
    svg = world.font_path().parents[1] / "svg"
    names = sorted({path.name.split(".")[0] for path in svg.iterdir()})
    singles = [n for n in names if "-" not in n and int(n, 16) not in _SKIN_TONES]
    return [n for n in singles if any(lo <= int(n, 16) <= hi for lo, hi in _BLOCKS) and n not in _taken()]


def _drawn(glyph: str) -> bool:
    return int((np.asarray(world._glyph(glyph))[..., 3] > 128).sum()) >= _MIN_PIXELS


def choose_outline_glyphs(count: int = 500, seed: int = 0) -> tuple[str, ...]:
    """``count`` glyphs, drawn at random (``seed``) from the candidates whose outline is far enough from the split."""
    references = reference_glyphs()
    passing = [
        g for g in _candidates() if _drawn(g) and min(shape_distance(g, r) for r in references) >= NEW_SHAPE_DISTANCE
    ]
    return tuple(sorted(random.Random(seed).sample(passing, min(count, len(passing)))))


def outline_scenes(glyphs: tuple[str, ...], renders_per_context: int, seed: int) -> list[OutlineScene]:
    """Each glyph in each world context ``renders_per_context`` times, at one of the world's hues."""
    rng = random.Random(seed)
    return [
        OutlineScene(glyph, context, rng.choice(world.HUE_STEPS))
        for glyph in glyphs
        for context in world.CONTEXTS
        for _ in range(renders_per_context)
    ]


def build_outline_pool(
    glyphs: tuple[str, ...],
    renders_per_context: int,
    seed: int,
    cache_dir: Path | None = None,
    show_progress: bool = True,
    workers: int | None = None,
) -> Pool:
    """The wider vocabulary's renders as a pool (cached on disk like the world's)."""
    key = f"{seed}-{len(glyphs)}-{renders_per_context}-{_digest(glyphs)}"
    path = Path(cache_dir) / f"outlines-v{OUTLINES_VERSION}-{key}.npz" if cache_dir else None
    if path and path.is_file():
        data = np.load(path)
        return Pool(data["pixels"], [OutlineScene(*s) for s in json.loads(str(data["scenes"]))])
    scenes = outline_scenes(glyphs, renders_per_context, seed)
    pixels = render_scenes(scenes, seed + 1, render_outline, "rendering outlines", show_progress, workers)
    if path:
        with atomic_file(path) as temp:
            with open(temp, "wb") as handle:
                np.savez(handle, pixels=pixels, scenes=json.dumps([[s.glyph, s.context, s.hue_shift] for s in scenes]))
    return Pool(pixels, scenes)


def _digest(glyphs: tuple[str, ...]) -> str:
    return hashlib.sha256(" ".join(glyphs).encode()).hexdigest()[:12]


OUTLINE_GLYPHS: tuple[str, ...] = tuple(
    "1F301 1F303 1F304 1F306 1F307 1F308 1F309 1F30A 1F30B 1F30C 1F319 1F31B "
    "1F31C 1F31F 1F320 1F321 1F326 1F32D 1F331 1F333 1F334 1F336 1F339 1F33A "
    "1F33C 1F33D 1F33E 1F33F 1F340 1F341 1F342 1F350 1F35C 1F35D 1F360 1F362 "
    "1F36C 1F370 1F373 1F378 1F379 1F37D 1F380 1F384 1F385 1F387 1F38A 1F38B "
    "1F38C 1F38D 1F38F 1F390 1F393 1F397 1F399 1F39F 1F3A0 1F3A1 1F3A3 1F3A5 "
    "1F3A6 1F3AD 1F3AF 1F3B5 1F3B6 1F3B7 1F3B9 1F3BC 1F3BF 1F3C1 1F3C3 1F3C4 "
    "1F3C6 1F3C7 1F3CB 1F3CC 1F3CD 1F3CE 1F3D1 1F3D2 1F3D4 1F3D5 1F3D6 1F3D7 "
    "1F3D8 1F3D9 1F3DD 1F3DE 1F3E1 1F3E4 1F3ED 1F3EF 1F3F3 1F3F4 1F3F8 1F3F9 "
    "1F407 1F409 1F40A 1F40B 1F412 1F41D 1F42C 1F42E 1F433 1F434 1F437 1F439 "
    "1F43E 1F43F 1F440 1F446 1F448 1F449 1F44A 1F44D 1F44E 1F44F 1F450 1F456 "
    "1F458 1F459 1F463 1F464 1F468 1F46A 1F46B 1F46C 1F46F 1F471 1F474 1F475 "
    "1F477 1F481 1F483 1F485 1F486 1F487 1F48E 1F48F 1F491 1F492 1F494 1F495 "
    "1F497 1F498 1F49A 1F49B 1F49C 1F49E 1F49F 1F4A0 1F4A2 1F4A3 1F4A5 1F4A6 "
    "1F4AA 1F4AB 1F4AD 1F4AF 1F4B1 1F4B2 1F4B8 1F4B9 1F4BD 1F4C6 1F4C7 1F4C8 "
    "1F4C9 1F4CA 1F4CC 1F4CD 1F4D0 1F4DE 1F4E2 1F4E4 1F4E5 1F4EB 1F4EC 1F4ED "
    "1F4F6 1F4F8 1F4F9 1F4FD 1F500 1F504 1F505 1F508 1F509 1F50A 1F50C 1F50D "
    "1F50E 1F519 1F51A 1F51B 1F51C 1F51D 1F51F 1F520 1F521 1F522 1F523 1F524 "
    "1F527 1F528 1F529 1F52A 1F52B 1F52C 1F52D 1F52F 1F531 1F533 1F536 1F537 "
    "1F538 1F539 1F53A 1F53C 1F53D 1F549 1F54A 1F54B 1F54C 1F54E 1F574 1F577 "
    "1F579 1F57A 1F590 1F596 1F5BC 1F5DC 1F5DD 1F5DE 1F5E1 1F5E3 1F5FC 1F5FD "
    "1F5FE 1F682 1F686 1F689 1F68A 1F68C 1F68F 1F694 1F696 1F698 1F69D 1F6A0 "
    "1F6A1 1F6A7 1F6A8 1F6A9 1F6AC 1F6AE 1F6B0 1F6B4 1F6B6 1F6B9 1F6BA 1F6BC "
    "1F6BD 1F6BF 1F6C3 1F6CE 1F6CF 1F6D2 1F6D5 1F6D8 1F6DC 1F6DD 1F6E0 1F6E3 "
    "1F6E9 1F6EB 1F6EC 1F6F0 1F6F3 1F6F6 1F6FC 1F90D 1F90F 1F917 1F918 1F919 "
    "1F91A 1F91B 1F91C 1F91F 1F923 1F926 1F927 1F932 1F933 1F934 1F935 1F936 "
    "1F938 1F93C 1F93D 1F93E 1F940 1F942 1F943 1F944 1F94A 1F94C 1F94D 1F953 "
    "1F95B 1F95C 1F95F 1F960 1F961 1F96A 1F970 1F973 1F977 1F982 1F985 1F988 "
    "1F98D 1F98E 1F990 1F991 1F995 1F997 1F998 1F999 1F99F 1F9A2 1F9A4 1F9A5 "
    "1F9A9 1F9AA 1F9AD 1F9AF 1F9B5 1F9B7 1F9B8 1F9B9 1F9BB 1F9BC 1F9BD 1F9BE "
    "1F9BF 1F9C4 1F9C9 1F9CB 1F9CC 1F9CD 1F9CE 1F9CF 1F9D1 1F9D2 1F9D4 1F9D6 "
    "1F9D7 1F9D8 1F9D9 1F9DC 1F9DE 1F9DF 1F9E0 1F9E1 1F9E3 1F9E4 1F9E5 1F9E8 "
    "1F9EC 1F9EE 1F9F4 1F9F5 1F9F6 1F9F9 1F9FA 1F9FD 1FA72 1FA75 1FA77 1FA79 "
    "1FA7A 1FA7B 1FA7C 1FA83 1FA89 1FA8A 1FA93 1FA9A 1FA9C 1FA9D 1FA9F 1FAA1 "
    "1FAA2 1FAA3 1FAA4 1FAA5 1FAA7 1FAAE 1FAAF 1FAB0 1FAB1 1FAB6 1FAB8 1FABB "
    "1FABD 1FABE 1FABF 1FAC2 1FAC3 1FAC5 1FAC8 1FACD 1FACE 1FAD0 1FAD7 1FAD8 "
    "1FADA 1FADB 1FADC 1FADF 1FAE7 1FAF0 1FAF1 1FAF2 1FAF7 1FAF8 2601 2605 "
    "2611 2614 261D 2626 262A 2642 2648 264A 264B 264C 264E 264F "
    "2650 2652 2653 2654 2657 265A 265B 265D 265E 2663 2665 2666 "
    "267F 2692 2693 2694 2696 26A0 26A1 26A7 26C5 26CE 26CF 26E9 "
    "26EA 26F0 26F1 26F3 26F4 26F5 26F7 26F8 26F9 26FA 2702 2705 "
    "2708 270B 270D 2716 271D 2721 2728 2733 2734 2747 274C 274E "
    "2753 2754 2755 2757 2764 2796 2797 27A1 ".split()
)

if __name__ == "__main__":
    print(choose_outline_glyphs())
