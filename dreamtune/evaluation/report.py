"""A self-contained HTML report: sections of pictures and tables, written atomically."""

from __future__ import annotations

import html
from pathlib import Path

from dreamtune.atomic import atomic_file

STYLE = """body{font-family:system-ui,sans-serif;margin:24px;max-width:1100px}img{image-rendering:pixelated;max-width:100%}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 10px;text-align:right}th{background:#f3f3f3}
.note{color:#555}"""


class Report:
    def __init__(self, title: str):
        self.title = title
        self.parts: list[str] = []

    def heading(self, text: str) -> None:
        self.parts.append(f"<h2>{html.escape(text)}</h2>")

    def text(self, text: str) -> None:
        self.parts.append(f"<p class='note'>{html.escape(text)}</p>")

    def image(self, relative_path: str, caption: str = "", width: int | None = None) -> None:
        size = f" width='{width}'" if width else ""
        self.parts.append(
            f"<figure><img src='{html.escape(relative_path)}'{size}><figcaption>{html.escape(caption)}</figcaption></figure>"
        )

    def table(self, rows: list[dict], columns: list[str]) -> None:
        head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
        body = "".join("<tr>" + "".join(f"<td>{_cell(row.get(c))}</td>" for c in columns) + "</tr>" for row in rows)
        self.parts.append(f"<table><tr>{head}</tr>{body}</table>")

    def write(self, path: Path) -> Path:
        page = (
            f"<!doctype html><meta charset='utf-8'><title>{html.escape(self.title)}</title><style>{STYLE}</style>"
            f"<h1>{html.escape(self.title)}</h1>" + "\n".join(self.parts)
        )
        with atomic_file(Path(path)) as temp:
            temp.write_text(page, encoding="utf-8")
        return Path(path)


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return html.escape("" if value is None else str(value))
