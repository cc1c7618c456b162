"""Strict, typed loading of frozen dataclasses from YAML plus dotted overrides (config.py's
machinery; any schema works, e.g. the miniature's PretrainConfig)."""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from pathlib import Path
from typing import Any, Literal

import yaml

from dreamtune.errors import UserError


def _type_name(tp) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _describe(tp) -> str:
    """How a user would write a value of ``tp``."""
    if typing.get_origin(tp) is Literal:
        return "one of " + ", ".join(map(repr, typing.get_args(tp)))
    return {bool: "true or false", int: "a whole number", float: "a number", str: "text"}.get(tp, _type_name(tp))


def _coerce(value: Any, tp, key: str):
    """Check and convert one YAML value to the annotated type ``tp``; error names ``key``."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise UserError(f"config key '{key}' must be a mapping of settings, not {value!r}.")
        return _build(tp, value, key + ".")
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(tp)
        if value is None and type(None) in options:
            return None
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(value, option, key)
            except UserError:
                continue
        raise UserError(
            f"config key '{key}' got {value!r}; expected {', or '.join(_describe(o) for o in options if o is not type(None))}."
        )
    if origin is Literal:
        choices = typing.get_args(tp)
        if value is False and "no" in choices:
            value = "no"  # YAML 1.1 reads a bare `no` as false
        if value not in choices:
            raise UserError(f"config key '{key}' got {value!r}; choose one of {', '.join(map(repr, choices))}.")
        return value
    if origin is tuple:
        if isinstance(value, (str, int, float)):
            value = [value]
        if not isinstance(value, (list, tuple)):
            raise UserError(f"config key '{key}' must be a list, not {value!r}.")
        (item_type, _) = typing.get_args(tp)
        return tuple(_coerce(v, item_type, key) for v in value)
    if tp is float:
        try:  # YAML 1.1 reads "3e-5" as a string; accept any number spelled as text
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        except (TypeError, ValueError):
            raise UserError(f"config key '{key}' must be a number, not {value!r}.") from None
    if tp is bool and not isinstance(value, bool):
        raise UserError(f"config key '{key}' must be true or false, not {value!r}.")
    if tp in (int, str) and (not isinstance(value, tp) or isinstance(value, bool)):
        raise UserError(f"config key '{key}' must be {tp.__name__}, not {value!r}.")
    return value


def _build(cls, raw: dict, prefix: str = ""):
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    for key in raw:
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1, cutoff=0.5)
            hint = f"; did you mean '{prefix}{close[0]}'?" if close else f"; valid keys here: {', '.join(names)}."
            raise UserError(f"unknown config key '{prefix}{key}'{hint}")
    kwargs = {k: _coerce(v, hints[k], prefix + k) for k, v in raw.items()}
    return cls(**kwargs)


def apply_override(raw: dict, override: str) -> None:
    """Apply one ``a.b.c=value`` override to the nested dict ``raw`` (value parsed as YAML)."""
    if "=" not in override:
        raise UserError(f"override '{override}' has no '='; write it as section.key=value, e.g. train.lr=1e-4.")
    dotted, text = override.split("=", 1)
    parts = dotted.strip().split(".")
    node = raw
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise UserError(f"override '{override}': '{part}' is a value, not a section.")
    try:
        node[parts[-1]] = yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError as exc:
        problem = str(getattr(exc, "problem", None) or "not valid YAML")
        raise UserError(
            f"override '{override}': the value is not valid YAML ({problem}); quote text with braces, colons or "
            f"commas, e.g. {dotted}='[\"a {{subject}} on the beach\"]'."
        ) from None


def load_as(schema, path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()):
    """Load a YAML recipe and overrides into the frozen dataclass ``schema`` (strict keys)."""
    raw: dict = {}
    if path is not None:
        from dreamtune.recipes import find_recipe, recipe_names

        path = find_recipe(path)
        if not path.is_file():
            raise UserError(
                f"config file {path} does not exist; pass the path of a YAML recipe or a shipped recipe's name "
                f"({', '.join(n for n in recipe_names() if '/' not in n)})."
            )
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except UnicodeDecodeError:
            raise UserError(f"config file {path} is not UTF-8 text; save it as UTF-8.") from None
        except OSError as exc:
            raise UserError(f"cannot read config file {path} ({exc.strerror}); check its permissions.") from None
        except yaml.YAMLError as exc:
            raise UserError(
                f"config file {path} is not valid YAML ({str(exc).splitlines()[0]}); fix its syntax."
            ) from None
        if not isinstance(raw, dict):
            raise UserError(f"config file {path} must hold a mapping of sections (model:, data:, ...).")
    for override in overrides:
        apply_override(raw, override)
    return _build(schema, raw)


def to_dict(config) -> dict:
    """Plain nested dict (tuples as lists) for saving beside outputs."""

    def plain(value):
        if isinstance(value, tuple):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value

    return plain(dataclasses.asdict(config))


def replace(config, **sections):
    """Return a copy with whole sections or ``section__key`` fields replaced."""
    updates = {}
    for key, value in sections.items():
        if "__" in key:
            section, name = key.split("__", 1)
            current = updates.get(section, getattr(config, section))
            updates[section] = dataclasses.replace(current, **{name: value})
        else:
            updates[key] = value
    return dataclasses.replace(config, **updates)
