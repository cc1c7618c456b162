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
    """``{field name: its trailing comment}`` for a dataclass defined in source."""
    comments: dict[str, str] = {}
    names = {f.name for f in dataclasses.fields(cls)}
    line_names: dict[int, str] = {}
    source = inspect.getsource(cls)
    tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    for index, token in enumerate(tokens):
        following = tokens[index + 1] if index + 1 < len(tokens) else None
        if token.type == tokenize.NAME and token.string in names and following is not None and following.string == ":" \
                and token.start[0] not in line_names and token.start[1] == 4:
            line_names[token.start[0]] = token.string
        elif token.type == tokenize.COMMENT and token.start[0] in line_names:
            comments[line_names[token.start[0]]] = token.string.lstrip("#").strip()
    return comments


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
