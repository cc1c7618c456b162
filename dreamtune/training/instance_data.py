"""The subject's photos as training needs them: a prepared folder at the training resolution.

A raw folder is prepared into ``<output_dir>/data``; a prepared folder made at another
resolution is prepared again from its source photos there (never trained on at the wrong size,
never rewritten in place).
"""

from __future__ import annotations

from pathlib import Path

from dreamtune.config import Config
from dreamtune.data.prepare import PrepareOptions, is_prepared, options_from_report, prepare, read_report, summary
from dreamtune.errors import UserError


def ensure_prepared(config: Config, output_dir: Path, log=print) -> Path:
    """A prepared instance folder: the configured one, or one prepared now from raw photos."""
    source = Path(config.data.instance_dir)
    if not config.data.instance_dir:
        raise UserError(
            "data.instance_dir is empty; set it to your folder of subject photos, e.g. data.instance_dir=photos/."
        )
    if is_prepared(source):
        return _at_training_resolution(source, config, output_dir, log)
    options = PrepareOptions(
        resolution=config.data.resolution,
        crop=config.data.crop,
        buckets=config.data.buckets,
        grayscale=config.data.grayscale,
        background=config.data.background,
        caption=config.data.instance_prompt or None,
        seed=config.train.seed,
    )
    target = output_dir / "data"
    log(summary(prepare(source, target, options)))
    return target


def _at_training_resolution(prepared: Path, config: Config, output_dir: Path, log) -> Path:
    """A prepared folder made at another resolution is prepared again from its source photos into
    ``<output_dir>/data`` (never trained on at the wrong size, never rewritten in place)."""
    report = read_report(prepared)
    prepared_at = report.get("options", {}).get("resolution")
    wanted = config.data.resolution
    if prepared_at in (None, wanted):
        return prepared
    original = Path(str(report.get("source", "")))
    if not report.get("source") or not original.is_dir():
        raise UserError(
            f"{prepared} was prepared at {prepared_at} px but data.resolution is {wanted}, and its source folder "
            f"{original} is gone; run dreamtune prepare again with --resolution {wanted}, or set data.resolution={prepared_at}."
        )
    target = output_dir / "data"
    log(
        f"{prepared} was prepared at {prepared_at} px but data.resolution is {wanted}: preparing {original} again into {target}"
    )
    log(summary(prepare(original, target, options_from_report(report, resolution=wanted, min_size=None))))
    return target


def prepared_as_configured(folder: Path, config: Config) -> bool:
    return is_prepared(folder) and read_report(folder).get("options", {}).get("resolution") in (
        None,
        config.data.resolution,
    )
