"""The training form: the settings people change, generated from the config dataclasses (type,
choices, the recipe's value, the help comment in config.py) — no second copy of names or defaults —
and the way back, from the submitted form to the CLI's dotted overrides."""

from __future__ import annotations

import json
import types
import typing
from dataclasses import dataclass
from pathlib import Path

from dreamtune import config
from dreamtune.config_help import field_type, help_text
from dreamtune.errors import UserError
from dreamtune.methods import method_of

# what the form shows, in order; everything else stays as the recipe has it
FORM_LABELS = {  # the settings people change, labelled in words (the config key is shown beside)
    "train.steps": "training steps",
    "train.lr": "learning rate",
    "method.lora.rank": "LoRA rank",
    "method.lora.alpha": "LoRA alpha",
    "train.batch_size": "photos per step",
    "data.resolution": "resolution (px)",
    "prior.enabled": "prior preservation",
    "prior.num_class_images": "class images",
    "prior.loss_weight": "prior loss weight",
    "train.seed": "seed",
    "train.mixed_precision": "precision",
    "train.validate_every": "sample every N steps",
    "train.checkpoint_every": "checkpoint every N steps",
    "monitor.every": "monitor every N steps",
    "monitor.select_best": "keep the best step by",
}
FORM_KEYS = tuple(FORM_LABELS)


@dataclass(frozen=True)
class Field:
    key: str
    kind: str  # "int", "float", "bool", "choice", "text"
    label: str  # in words
    value: object  # the recipe's value
    help: str
    choices: tuple = ()
    optional: bool = False  # may be left empty (None)

    def as_dict(self) -> dict:
        return {
            "key": self.key,
            "kind": self.kind,
            "label": self.label,
            "value": self.value,
            "help": self.help,
            "choices": list(self.choices),
            "optional": self.optional,
        }


def _kind(tp) -> tuple[str, tuple, bool]:
    optional = False
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        optional, tp = True, args[0]
    if typing.get_origin(tp) is typing.Literal:
        return "choice", typing.get_args(tp), optional
    names = {bool: "bool", int: "int", float: "float", str: "text"}
    if tp not in names:
        raise TypeError(f"the form cannot show a {tp} setting")
    return names[tp], (), optional


def _value(cfg: config.Config, key: str):
    value = cfg
    for part in key.split("."):
        value = getattr(value, part)
    return value


def form_fields(recipe: str | Path | None) -> list[Field]:
    """The form for ``recipe`` (a path or a shipped recipe's name): its values as defaults."""
    cfg = config.load(recipe)
    adds_lora = method_of(cfg.method).adds_lora
    fields = []
    for key, label in FORM_LABELS.items():
        if key.startswith("method.lora.") and not adds_lora:  # only the chosen method's settings
            continue
        kind, choices, optional = _kind(field_type(config.Config, key))
        fields.append(Field(key, kind, label, _value(cfg, key), help_text(config.Config, key), choices, optional))
    return fields


def _parse(field: Field, raw) -> object:
    text = raw if not isinstance(raw, str) else raw.strip()
    if field.optional and text in ("", None):
        return None
    try:
        if field.kind == "bool":
            if isinstance(text, bool):
                return text
            if str(text).lower() in ("true", "1", "yes", "on"):
                return True
            if str(text).lower() in ("false", "0", "no", "off", ""):
                return False
            raise ValueError
        if field.kind == "int":
            return int(text)
        if field.kind == "float":
            return float(text)
    except (TypeError, ValueError):
        raise UserError(
            f"{field.key} got {raw!r}; it must be "
            f"{'a whole number' if field.kind == 'int' else 'a number' if field.kind == 'float' else 'true or false'}."
        ) from None
    if field.kind == "choice" and text not in field.choices:
        raise UserError(f"{field.key} got {raw!r}; choose one of {', '.join(map(repr, field.choices))}.")
    return text


def overrides_from_form(recipe: str | Path | None, values: dict) -> list[str]:
    """Dotted overrides (``key=value``) for the form values that differ from the recipe's; an
    unknown key or a bad value is a one-sentence error. Values are written as JSON, which YAML reads
    back exactly (strings quoted, so ``no`` or ``1e-4`` keep their type)."""
    fields = {f.key: f for f in form_fields(recipe)}
    overrides = []
    for key, raw in values.items():
        if key not in fields:
            raise UserError(f"the form has no setting '{key}'; the settings it shows are {', '.join(fields)}.")
        value = _parse(fields[key], raw)
        if value != fields[key].value:
            overrides.append(f"{key}={json.dumps(value)}")
    return overrides


def key_named(sentence: str) -> str:
    """The form setting a sentence is about (the first config key of the form it names), else "settings"."""
    for key in sorted(FORM_KEYS, key=len, reverse=True):
        if key in sentence:
            return key
    return "settings"


def check(recipe: str | Path | None, overrides: list[str]) -> config.Config:
    """The config the CLI will build from ``recipe`` + ``overrides`` (its one-sentence errors)."""
    return config.load(recipe, overrides)
