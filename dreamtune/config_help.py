"""Help text of every config key, read from the one place it is written: the trailing comment of
the field in ``config.py`` (and a section's docstring). The web UI's form and any other tool show
these words, so a setting is documented once."""

from __future__ import annotations

import dataclasses
import functools
import inspect
import io
import tokenize
import typing


@functools.lru_cache(maxsize=None)
def field_comments(cls: type) -> dict[str, str]:
    """``{field name: its comment}`` for a dataclass defined in source: the comments inside the
    field's statement (on its line, or wherever the formatter wrapped it), joined."""
    comments: dict[str, list[str]] = {}
    names = {f.name for f in dataclasses.fields(cls)}
    current = None
    tokens = list(tokenize.generate_tokens(io.StringIO(inspect.getsource(cls)).readline))
    for index, token in enumerate(tokens):
        following = tokens[index + 1] if index + 1 < len(tokens) else None
        if current is None and token.type == tokenize.NAME and token.string in names and token.start[1] == 4:
            if following is not None and following.string == ":":
                current = token.string
        elif current is not None and token.type == tokenize.COMMENT:
            comments.setdefault(current, []).append(token.string.lstrip("#").strip())
        elif token.type == tokenize.NEWLINE:
            current = None
    return {name: " ".join(parts) for name, parts in comments.items()}


def section_of(root: type, dotted: str) -> tuple[type, str]:
    """The dataclass holding ``dotted`` (``method.lora.rank`` -> LoraConfig, ``rank``)."""
    cls, *path, name = [root, *dotted.split(".")]
    hints = typing.get_type_hints(cls)
    for part in path:
        cls = hints[part]
        hints = typing.get_type_hints(cls)
    if name not in hints:
        raise KeyError(dotted)
    return cls, name


def help_text(root: type, dotted: str) -> str:
    cls, name = section_of(root, dotted)
    return field_comments(cls).get(name, "")


def field_type(root: type, dotted: str):
    cls, name = section_of(root, dotted)
    return typing.get_type_hints(cls)[name]


def reference_rows(root: type, prefix: str = "") -> list[tuple[str, str, str]]:
    """``(dotted key, default, help)`` for every leaf setting under ``root``, sections expanded in
    the order they are written."""
    rows = []
    hints = typing.get_type_hints(root)
    for item in dataclasses.fields(root):
        kind = hints[item.name]
        key = f"{prefix}{item.name}"
        if dataclasses.is_dataclass(kind):
            rows += reference_rows(kind, key + ".")
            continue
        if item.default is not dataclasses.MISSING:
            default = item.default
        elif item.default_factory is not dataclasses.MISSING:
            default = item.default_factory()
        else:
            default = "required"
        rows.append(
            (
                key,
                repr(default) if isinstance(default, str) and default == "" else str(default),
                field_comments(root).get(item.name, ""),
            )
        )
    return rows


def reference_markdown(root: type) -> str:
    """The configuration reference page (docs/configuration.md) written from ``config.py``."""
    lines = [
        "# Configuration reference",
        "",
        "Generated from the comments beside each field in `dreamtune/config.py` by",
        "`python -m dreamtune.config_help > docs/configuration.md` (a test keeps it current). A recipe is",
        "YAML with these sections; any key can be overridden on the command line (`train.lr=1e-4`). An",
        "unknown key is an error naming the closest valid one.",
        "",
    ]
    section = None
    for key, default, text in reference_rows(root):
        head = key.split(".")[0]
        if head != section:
            section = head
            lines += ["", f"## `{section}`", "", "| key | default | meaning |", "|---|---|---|"]
        lines.append(f"| `{key}` | `{default}` | {text.replace('|', '&#124;')} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    from dreamtune.config import Config

    print(reference_markdown(Config), end="")
