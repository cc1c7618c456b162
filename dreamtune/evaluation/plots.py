"""Small line plots drawn with Pillow (no plotting dependency): loss curves, metric curves."""

from __future__ import annotations

from PIL import Image, ImageDraw, ImageFont

COLORS = [(31, 119, 180), (214, 39, 40), (44, 160, 44), (148, 103, 189), (255, 127, 14)]


def line_plot(
    series: dict[str, list[tuple[float, float]]], title: str = "", size=(640, 320), smooth: int = 1
) -> Image.Image:
    """One line per named series of (x, y) points; ``smooth`` = moving-average window."""
    width, height = size
    left, right, top, bottom = 60, 20, 30, 40
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default()
    points = {k: _smoothed(v, smooth) for k, v in series.items() if v}
    xs = [x for v in points.values() for x, _ in v] or [0, 1]
    ys = [y for v in points.values() for _, y in v] or [0, 1]
    x0, x1, y0, y1 = min(xs), max(xs) or 1, min(ys), max(ys)
    if y1 == y0:
        y0, y1 = y0 - 1, y1 + 1
    to_px = lambda x, y: (
        left + (x - x0) / ((x1 - x0) or 1) * (width - left - right),
        top + (1 - (y - y0) / (y1 - y0)) * (height - top - bottom),
    )
    draw.rectangle((left, top, width - right, height - bottom), outline=(180, 180, 180))
    for fraction in (0, 0.5, 1):
        value = y0 + fraction * (y1 - y0)
        _, py = to_px(x0, value)
        draw.text((4, py - 6), f"{value:.3g}", fill="black", font=font)
    draw.text((left, height - bottom + 6), f"{x0:g}", fill="black", font=font)
    draw.text((width - right - 40, height - bottom + 6), f"{x1:g}", fill="black", font=font)
    draw.text((left, 8), title, fill="black", font=font)
    for index, (name, values) in enumerate(points.items()):
        color = COLORS[index % len(COLORS)]
        draw.line([to_px(x, y) for x, y in values], fill=color, width=2) if len(values) > 1 else None
        draw.text((width - right - 150, top + 4 + 12 * index), name, fill=color, font=font)
    return image


def _smoothed(values: list[tuple[float, float]], window: int) -> list[tuple[float, float]]:
    if window <= 1:
        return values
    out = []
    for i in range(len(values)):
        chunk = values[max(0, i - window + 1) : i + 1]
        out.append((values[i][0], sum(y for _, y in chunk) / len(chunk)))
    return out
