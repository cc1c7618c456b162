"""Contact sheets: a grid of images with a caption under each, as one PNG."""

from __future__ import annotations

import textwrap
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from dreamtune.atomic import atomic_file


def contact_sheet(
    images: list[Image.Image], captions: list[str], columns: int = 4, cell: int = 160, title: str = ""
) -> Image.Image:
    """Lay ``images`` out in a grid of ``cell``-pixel squares with wrapped captions below."""
    font = ImageFont.load_default()
    columns = max(1, min(columns, len(images)))
    rows = max(1, -(-len(images) // columns))
    caption_height, title_height = 36, (20 if title else 0)
    sheet = Image.new("RGB", (columns * cell, title_height + rows * (cell + caption_height)), "white")
    draw = ImageDraw.Draw(sheet)
    if title:
        draw.text((4, 4), title, fill="black", font=font)
    for index, (image, caption) in enumerate(zip(images, captions)):
        x = (index % columns) * cell
        y = title_height + (index // columns) * (cell + caption_height)
        thumb = image.convert("RGB").resize(
            (cell, cell), Image.Resampling.LANCZOS if image.width > cell else Image.Resampling.NEAREST
        )
        sheet.paste(thumb, (x, y))
        lines = textwrap.wrap(caption, width=max(8, cell // 6))[:3]
        for line_number, line in enumerate(lines):
            draw.text((x + 2, y + cell + 1 + 11 * line_number), line, fill="black", font=font)
    return sheet


def save_png(image: Image.Image, path: Path) -> Path:
    with atomic_file(Path(path)) as temp:
        image.save(temp, format="PNG")
    return Path(path)
