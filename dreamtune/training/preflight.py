"""Checks a run passes before any work is done: mistakes that would otherwise train for an
hour and report success (a placeholder that never appears in a caption trains nothing)."""

from __future__ import annotations

from pathlib import Path

from dreamtune.config import Config
from dreamtune.data.ingest import MANIFEST, prepared_records
from dreamtune.errors import UserError
from dreamtune.methods import method_of


def caption_list(prepared: Path, default_caption: str) -> list[str]:
    """Every instance image's caption, as training will see it (its own, else the default)."""
    return [record.get("text") or default_caption for record in prepared_records(Path(prepared))]


def check_captions(config: Config, captions: list[str], folder: Path) -> None:
    """Refuse a run whose captions cannot teach the subject: textual inversion whose placeholder
    no caption contains (its gradient is exactly zero), prior preservation whose instance
    captions are the class prompt itself (nothing tells the subject from its class), or a monitor
    whose identifier no caption contains (its CLIP-T would measure nothing)."""
    where = f"the captions of {folder / MANIFEST}"
    method = method_of(config.method)
    method.check_captions(config, captions, where)
    per_epoch = len(captions) * config.data.repeats
    if not config.rl.algorithm and config.train.batch_size > per_epoch:
        raise UserError(
            f"train.batch_size is {config.train.batch_size} but there are {len(captions)} photo(s) x data.repeats "
            f"{config.data.repeats} = {per_epoch} per epoch, so a batch would repeat photos; use train.batch_size<={per_epoch} "
            "(or raise data.repeats; train.grad_accum gives a larger effective batch)."
        )
    if config.monitor.every and not method.learns_token:  # a learned token names the subject itself
        identifier = config.monitor.identifier
        if identifier and not any(identifier in c for c in captions):
            raise UserError(
                f"monitor.identifier '{identifier}' appears in none of {where} (e.g. '{captions[0]}'); "
                "set monitor.identifier to the word that names your subject."
            )


TRACKER_PACKAGES = {"tensorboard": ("tensorboard", "dreamtune[tensorboard]"), "wandb": ("wandb", "wandb")}


def tracker_arguments(log_with: str, output_dir: Path) -> dict:
    """Accelerator arguments for ``train.log_with``; a tracker whose package is missing is one sentence."""
    import importlib.util

    if log_with == "none":
        return {}
    module, install = TRACKER_PACKAGES[log_with]
    if importlib.util.find_spec(module) is None:
        raise UserError(
            f"train.log_with={log_with} needs the {module} package; pip install '{install}', or set train.log_with=none."
        )
    return {"log_with": log_with, "project_dir": str(output_dir / "logs")}


def tracker_config(config: Config) -> dict:
    """The resolved config flattened to scalars (TensorBoard's hyper-parameter table takes no lists)."""
    from dreamtune.yaml_config import to_dict

    flat: dict = {}

    def walk(prefix: str, value) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                walk(f"{prefix}.{key}" if prefix else key, inner)
        else:
            flat[prefix] = value if isinstance(value, (int, float, str, bool)) else str(value)

    walk("", to_dict(config))
    return flat
