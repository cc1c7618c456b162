"""``dreamtune prepare SRC --out DST``: validated, standardized, cropped training images.

DST layout (written atomically, the whole folder at once):
    images/NNNN.png     standardized RGB images (square, or bucket-sized when buckets=True)
    masks/NNNN.png      the subject masks of the photos that have one, cropped and scaled as the image
    metadata.jsonl      {"file_name": "images/NNNN.png", "text": caption, "source": name[, "mask": "masks/NNNN.png"]}
    report.json         every source entry with kept/skipped and the reason
"""

from __future__ import annotations

import dataclasses
import json
import random
from dataclasses import dataclass
from pathlib import Path

from dreamtune.atomic import atomic_dir
from dreamtune.data import cropping, ingest, standardize
from dreamtune.errors import UserError

REPORT = "report.json"


@dataclass(frozen=True)
class PrepareOptions:
    resolution: int = 512
    crop: str = "center"
    buckets: bool = False
    grayscale: bool = False
    background: str = "white"
    resample: str = "lanczos"
    min_size: int | None = None  # default: half the resolution
    caption: str | None = None  # caption for images without their own
    seed: int = 0
    strict: bool = False


def _target_size(image_size, options: PrepareOptions) -> tuple[int, int]:
    if not options.buckets:
        return (options.resolution, options.resolution)
    return cropping.nearest_bucket(image_size, cropping.bucket_sizes(options.resolution))


def _standardize(entry: ingest.Entry, options: PrepareOptions, rng: random.Random):
    """(the standardized image, its subject mask cropped and scaled the same way, or None)."""
    image = standardize.to_rgb(entry.image, options.background, options.grayscale)
    target = _target_size(image.size, options)
    image = standardize.cover_resize(image, target, options.resample)
    decision = cropping.choose_crop(image, target, options.crop, rng)
    if decision.note:
        entry.notes.append(decision.note)
    mask = None
    if entry.mask is not None:
        mask = standardize.cover_resize(entry.mask, target, "bilinear").crop(decision.box)
    return image.crop(decision.box), mask


def prepare(src: Path, dst: Path, options: PrepareOptions) -> dict:
    """Validate and standardize every image of ``src`` into ``dst``; returns the report."""
    src, dst = Path(src), Path(dst)
    if dst.resolve() == src.resolve() or src.resolve() in dst.resolve().parents:
        raise UserError(
            f"output folder {dst} lies inside the source folder {src}; choose an output outside it (the source is never modified)."
        )
    if options.resolution < 8 or options.resolution % 8:
        raise UserError(
            f"--resolution {options.resolution} must be a positive multiple of 8 (the VAE downsamples by 8), e.g. 512."
        )
    if options.min_size is not None and options.min_size < 1:
        raise UserError(
            f"--min-size {options.min_size} must be a positive number of pixels (the shortest side a photo may have), "
            "or leave it out for half the resolution."
        )
    if options.resample not in standardize.RESAMPLING:
        raise UserError(
            f"resize filter '{options.resample}' is unknown; choose one of {', '.join(standardize.RESAMPLING)}."
        )
    standardize.parse_color(options.background)
    min_size = options.min_size if options.min_size is not None else options.resolution // 2
    entries = ingest.scan(src, min_size, options.caption)
    skipped = [e for e in entries if not e.kept]
    if options.strict and skipped:
        first = skipped[0]
        raise UserError(
            f"--strict: {first.path.name} was skipped ({first.reason}); fix or remove it, or drop --strict."
        )
    rng = random.Random(options.seed)
    records, verdicts = [], []
    with atomic_dir(dst) as temp:
        (temp / "images").mkdir()
        for entry in entries:
            if entry.kept:
                image, mask = _standardize(entry, options, rng)
                name = f"images/{len(records):04d}.png"
                image.save(temp / name)
                record = {
                    "file_name": name,
                    "text": entry.caption or "",
                    "source": entry.path.name,
                    "content_hash": entry.content_hash,
                    "size": list(image.size),
                }
                if mask is not None:
                    (temp / "masks").mkdir(exist_ok=True)
                    record["mask"] = f"masks/{len(records):04d}.png"
                    mask.save(temp / record["mask"])
                records.append(record)
            verdicts.append(
                {
                    "file": entry.path.name if entry.path.parent == src else str(entry.path),
                    "kept": entry.kept,
                    "reason": entry.reason,
                    "notes": entry.notes,
                    "caption": entry.caption,
                }
            )
        if not records:
            example = f"; e.g. {skipped[0].path.name}: {skipped[0].reason}" if skipped else ""
            raise UserError(
                f"no usable image in {src} ({len(entries)} entries, all skipped{example}); add JPEG or PNG photos."
            )
        with open(temp / ingest.MANIFEST, "w", encoding="utf-8") as manifest:
            for record in records:
                manifest.write(json.dumps(record, ensure_ascii=False) + "\n")
        report = {
            "source": str(src),
            "options": options.__dict__,
            "kept": len(records),
            "skipped": len(skipped),
            "entries": verdicts,
        }
        (temp / REPORT).write_text(json.dumps(report, indent=2, ensure_ascii=False), encoding="utf-8")
    return report


def summary(report: dict) -> str:
    """A short human summary of a prepare report."""
    lines = [f"prepared {report['kept']} image(s), skipped {report['skipped']}"]
    for verdict in report["entries"]:
        if not verdict["kept"]:
            lines.append(f"  skipped {verdict['file']}: {verdict['reason']}")
        elif verdict["notes"]:
            lines.append(f"  note {verdict['file']}: {'; '.join(verdict['notes'])}")
        elif not verdict["caption"]:
            lines.append(f"  note {verdict['file']}: no caption (give --instance-prompt or a .txt beside it)")
    return "\n".join(lines)


def read_report(folder: Path) -> dict:
    """A prepared folder's report.json; a damaged one is a one-sentence error."""
    path = Path(folder) / REPORT
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        raise UserError(f"{path} is unreadable or damaged; run dreamtune prepare on your photos again.") from None
    if not isinstance(report, dict):
        raise UserError(f"{path} is not a dreamtune prepare report; run dreamtune prepare on your photos again.")
    return report


def options_from_report(report: dict, **changes) -> PrepareOptions:
    """The options a folder was prepared with, with ``changes`` applied (unknown old keys ignored)."""
    known = {f.name for f in dataclasses.fields(PrepareOptions)}
    options = {k: v for k, v in report.get("options", {}).items() if k in known}
    return PrepareOptions(**{**options, **changes})


def is_prepared(folder: Path) -> bool:
    return (Path(folder) / REPORT).is_file() and (Path(folder) / ingest.MANIFEST).is_file()
