"""Backgrounds for the 20 recontextualization prompts of DreamBench, each with random variation.

A painter draws on a square canvas and returns the y of the surface the object stands on.
"""

from __future__ import annotations

import random
from typing import Callable

from PIL import ImageDraw

PHRASES = {
    "jungle": "in the jungle",
    "snow": "in the snow",
    "beach": "on the beach",
    "cobblestone": "on a cobblestone street",
    "pink_fabric": "on top of pink fabric",
    "wooden_floor": "on top of a wooden floor",
    "city": "with a city in the background",
    "mountain": "with a mountain in the background",
    "blue_house": "with a blue house in the background",
    "purple_rug_forest": "on top of a purple rug in a forest",
    "wheat_field": "with a wheat field in the background",
    "autumn_tree": "with a tree and autumn leaves in the background",
    "eiffel_tower": "with the Eiffel Tower in the background",
    "water": "floating on top of water",
    "milk": "floating in an ocean of milk",
    "sunflowers": "on top of green grass with sunflowers around it",
    "mirror": "on top of a mirror",
    "crowded_street": "on top of the sidewalk in a crowded street",
    "dirt_road": "on top of a dirt road",
    "white_rug": "on top of a white rug",
}


def _jitter(color, rng: random.Random, amount: int = 18):
    return tuple(max(0, min(255, c + rng.randint(-amount, amount))) for c in color)


def _sky_and_ground(d: ImageDraw.ImageDraw, rng, n, sky, ground, horizon) -> int:
    d.rectangle((0, 0, n, horizon), fill=_jitter(sky, rng))
    d.rectangle((0, horizon, n, n), fill=_jitter(ground, rng))
    return horizon


def _dots(d, rng, n, count, colors, y_range, radius):
    for _ in range(count):
        x, y, r = rng.randint(0, n), rng.randint(*y_range), rng.randint(*radius)
        d.ellipse((x - r, y - r, x + r, y + r), fill=_jitter(rng.choice(colors), rng, 12))


def jungle(d, rng, n):
    _sky_and_ground(d, rng, n, (40, 90, 40), (60, 45, 25), int(n * 0.8))
    _dots(d, rng, n, 40, [(20, 120, 30), (40, 160, 50), (10, 90, 20)], (0, int(n * 0.8)), (6, 16))
    for _ in range(4):
        x = rng.randint(0, n)
        d.rectangle((x, 0, x + 5, int(n * 0.8)), fill=(90, 60, 30))
    return int(n * 0.85)


def snow(d, rng, n):
    h = _sky_and_ground(d, rng, n, (185, 205, 230), (245, 248, 252), int(n * rng.uniform(0.45, 0.6)))
    _dots(d, rng, n, 30, [(255, 255, 255)], (0, n), (1, 3))
    return h + 30


def beach(d, rng, n):
    h = int(n * rng.uniform(0.45, 0.55))
    _sky_and_ground(d, rng, n, (120, 190, 240), (235, 210, 150), h)
    d.rectangle((0, h - 14, n, h), fill=_jitter((30, 110, 190), rng))
    d.ellipse((n - 30, 6, n - 10, 26), fill=(255, 230, 90))
    return h + 30


def cobblestone(d, rng, n):
    d.rectangle((0, 0, n, n), fill=_jitter((120, 120, 125), rng))
    for y in range(0, n, 12):
        for x in range(-(y // 12 % 2) * 8, n, 16):
            d.rounded_rectangle((x + 1, y + 1, x + 14, y + 10), 3, fill=_jitter((150, 145, 140), rng, 25))
    return int(n * 0.8)


def pink_fabric(d, rng, n):
    d.rectangle((0, 0, n, n), fill=_jitter((240, 150, 190), rng))
    for y in range(0, n, 10):
        d.arc((-20, y - 10, n + 20, y + 16), 0, 180, fill=_jitter((210, 110, 160), rng), width=3)
    return int(n * 0.8)


def wooden_floor(d, rng, n):
    d.rectangle((0, 0, n, n), fill=_jitter((170, 115, 65), rng))
    for x in range(0, n, 16):
        d.line((x, 0, x, n), fill=(110, 70, 35), width=2)
        d.line((x + 8, rng.randint(0, n), x + 8, rng.randint(0, n)), fill=(140, 90, 50), width=1)
    return int(n * 0.8)


def city(d, rng, n):
    h = _sky_and_ground(d, rng, n, (150, 180, 215), (90, 90, 95), int(n * 0.65))
    x = 0
    while x < n:
        w, top = rng.randint(10, 22), rng.randint(10, h - 10)
        d.rectangle((x, top, x + w, h), fill=_jitter((70, 75, 95), rng, 25))
        for wy in range(top + 4, h - 4, 7):
            d.rectangle((x + 3, wy, x + w - 3, wy + 2), fill=(240, 220, 120))
        x += w + 2
    return h + 30


def mountain(d, rng, n):
    h = _sky_and_ground(d, rng, n, (140, 190, 235), (80, 140, 70), int(n * 0.65))
    peak = rng.randint(30, n - 30)
    d.polygon([(peak - 70, h), (peak, rng.randint(8, 25)), (peak + 70, h)], fill=_jitter((110, 105, 115), rng))
    d.polygon([(peak - 12, 30), (peak, 14), (peak + 12, 30)], fill=(250, 250, 250))
    return h + 30


def blue_house(d, rng, n):
    h = _sky_and_ground(d, rng, n, (160, 200, 240), (90, 160, 80), int(n * 0.65))
    x = rng.randint(10, n - 70)
    d.rectangle((x, h - 45, x + 60, h), fill=_jitter((50, 90, 200), rng))
    d.polygon([(x - 6, h - 45), (x + 30, h - 70), (x + 66, h - 45)], fill=(150, 40, 40))
    d.rectangle((x + 24, h - 22, x + 36, h), fill=(250, 250, 250))
    return h + 30


def purple_rug_forest(d, rng, n):
    _sky_and_ground(d, rng, n, (70, 110, 60), (50, 90, 40), int(n * 0.5))
    for _ in range(6):
        x = rng.randint(0, n)
        d.polygon(
            [(x - 14, int(n * 0.55)), (x, rng.randint(2, 20)), (x + 14, int(n * 0.55))], fill=_jitter((20, 80, 30), rng)
        )
    d.polygon([(10, int(n * 0.62)), (n - 10, int(n * 0.62)), (n, n - 6), (0, n - 6)], fill=_jitter((130, 50, 170), rng))
    return int(n * 0.85)


def wheat_field(d, rng, n):
    h = _sky_and_ground(d, rng, n, (150, 200, 240), (220, 185, 80), int(n * 0.45))
    for _ in range(70):
        x, y = rng.randint(0, n), rng.randint(h, n)
        d.line((x, y, x + rng.randint(-2, 2), y - 8), fill=_jitter((190, 150, 50), rng), width=1)
    return h + 40


def autumn_tree(d, rng, n):
    h = _sky_and_ground(d, rng, n, (170, 200, 230), (120, 140, 70), int(n * 0.65))
    x = rng.randint(20, n - 20)
    d.rectangle((x - 4, h - 40, x + 4, h), fill=(90, 55, 30))
    _dots(d, rng, n, 40, [(220, 110, 30), (200, 60, 20), (240, 170, 40)], (5, h - 35), (4, 9))
    _dots(d, rng, n, 12, [(220, 110, 30), (200, 60, 20)], (h, n), (1, 3))
    return h + 30


def eiffel_tower(d, rng, n):
    h = _sky_and_ground(d, rng, n, (175, 200, 235), (120, 150, 90), int(n * 0.7))
    x = rng.randint(30, n - 30)
    color = _jitter((95, 80, 65), rng, 10)
    d.polygon([(x - 22, h), (x, 6), (x + 22, h)], outline=color, fill=None, width=3)
    d.line((x - 14, h - 30, x + 14, h - 30), fill=color, width=3)
    d.line((x - 8, h - 60, x + 8, h - 60), fill=color, width=2)
    return h + 25


def water(d, rng, n):
    d.rectangle((0, 0, n, n), fill=_jitter((40, 110, 180), rng))
    for _ in range(14):
        y, x = rng.randint(0, n), rng.randint(-20, n)
        d.arc((x, y, x + 30, y + 8), 200, 340, fill=(170, 210, 240), width=2)
    return int(n * 0.7)


def milk(d, rng, n):
    d.rectangle((0, 0, n, n), fill=_jitter((248, 246, 236), rng, 6))
    for _ in range(10):
        y, x = rng.randint(0, n), rng.randint(-20, n)
        d.arc((x, y, x + 30, y + 8), 200, 340, fill=(220, 215, 200), width=2)
    return int(n * 0.7)


def sunflowers(d, rng, n):
    h = _sky_and_ground(d, rng, n, (150, 200, 240), (70, 170, 60), int(n * 0.5))
    for _ in range(9):
        x, y = rng.randint(0, n), rng.randint(h - 10, n)
        d.line((x, y, x, y + 14), fill=(40, 120, 40), width=2)
        d.ellipse((x - 6, y - 6, x + 6, y + 6), fill=(250, 200, 30))
        d.ellipse((x - 2, y - 2, x + 2, y + 2), fill=(90, 50, 20))
    return h + 40


def mirror(d, rng, n):
    _sky_and_ground(d, rng, n, (200, 200, 205), (215, 230, 240), int(n * 0.5))
    d.line((0, int(n * 0.5), n, int(n * 0.5)), fill=(150, 160, 170), width=2)
    for _k in range(3):
        x = rng.randint(0, n)
        d.line((x, n, x + 40, int(n * 0.5)), fill=(240, 248, 255), width=3)
    return int(n * 0.55)


def crowded_street(d, rng, n):
    h = _sky_and_ground(d, rng, n, (190, 190, 200), (170, 170, 165), int(n * 0.55))
    for _ in range(9):
        x, top = rng.randint(0, n), rng.randint(h - 45, h - 30)
        color = _jitter(rng.choice([(200, 60, 60), (60, 60, 200), (60, 160, 60), (40, 40, 40)]), rng)
        d.rectangle((x - 4, top + 8, x + 4, h), fill=color)
        d.ellipse((x - 4, top, x + 4, top + 8), fill=(230, 190, 150))
    for x in range(0, n, 20):
        d.line((x, h, x - 10, n), fill=(140, 140, 135), width=1)
    return h + 40


def dirt_road(d, rng, n):
    h = _sky_and_ground(d, rng, n, (160, 200, 235), (90, 150, 70), int(n * 0.45))
    d.polygon([(n // 2 - 6, h), (n // 2 + 6, h), (n, n), (0, n)], fill=_jitter((150, 110, 70), rng))
    _dots(d, rng, n, 25, [(120, 85, 50)], (h + 10, n), (1, 2))
    return h + 45


def white_rug(d, rng, n):
    d.rectangle((0, 0, n, n), fill=_jitter((150, 120, 100), rng))
    d.rounded_rectangle((6, int(n * 0.35), n - 6, n - 4), 10, fill=_jitter((245, 245, 240), rng, 5))
    for y in range(int(n * 0.4), n - 8, 6):
        d.line((12, y, n - 12, y), fill=(230, 230, 225), width=1)
    return int(n * 0.8)


def studio(d, rng, n):
    d.rectangle((0, 0, n, n), fill=_jitter((200, 200, 200), rng, 40))
    return int(n * 0.75)


PAINTERS: dict[str, Callable] = {name: globals()[name] for name in PHRASES}


def paint(context: str | None, draw: ImageDraw.ImageDraw, rng: random.Random, size: int) -> int:
    return (PAINTERS[context] if context else studio)(draw, rng, size)
