"""Read a user's photo folder: find images and captions, give every entry a verdict.

Nothing in the source folder is ever modified. Each entry ends up kept or skipped with a
one-line reason; hostile inputs (truncated files, decompression bombs, symlink loops, files
that only pretend to be images) become skip reasons, never tracebacks.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from dreamtune.data import masks
from dreamtune.errors import UserError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff", ".jfif"}
CAPTION_SUFFIXES = {".txt", ".caption"}
MANIFEST = "metadata.jsonl"
MAX_PIXELS = 64_000_000  # larger than any camera image; bigger is treated as a decompression bomb


@dataclass
class Entry:
    """One file or folder of the source, with its verdict."""

    path: Path
    caption: str | None = None
    kept: bool = False
    reason: str = ""
    notes: list[str] = field(default_factory=list)
    image: Image.Image | None = None
    content_hash: str = ""
    mask: Image.Image | None = None  # the subject's mask (L, upright photo's size), when the photo has one

    def skip(self, reason: str) -> "Entry":
        self.kept, self.reason, self.image, self.mask = False, reason, None, None
        return self


def _read_caption(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8").strip()
    except UnicodeDecodeError:
        raise ValueError(f"caption file {path.name} is not UTF-8 text; re-save it as UTF-8") from None


def prepared_records(folder: Path) -> list[dict]:
    """The records of a prepared folder's ``metadata.jsonl``, each naming an image inside the
    folder (a damaged line, or a ``file_name`` that is absolute or climbs out with '..' or a
    link, is one sentence: a prepared folder never leads training or the UI to other files)."""
    folder = Path(folder)
    manifest = folder / MANIFEST
    root = folder.resolve()
    try:
        lines = manifest.read_bytes().splitlines()
    except PermissionError:
        raise UserError(
            f"{manifest} cannot be read (permission denied); run as a user who may read {folder}."
        ) from None
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            record = None
        if not isinstance(record, dict) or not isinstance(record.get("file_name"), str):
            raise UserError(
                f"{manifest} line {number} is damaged (not a JSON record with a file_name); "
                f"prepare the photos again with dreamtune prepare."
            )
        for name in (record["file_name"], record.get("mask", "")):
            inside = isinstance(name, str) and "\x00" not in name and not Path(name).is_absolute()
            if not inside or not (root / name).resolve().is_relative_to(root):
                raise UserError(
                    f"{manifest} line {number} names {name!r}, outside the prepared folder; a prepared folder "
                    "lists only its own images — prepare the photos again with dreamtune prepare."
                )
        records.append(record)
    return records


def _read_manifest(src: Path, problems: list[Entry]) -> dict[str, str]:
    """Captions from a Hugging Face imagefolder ``metadata.jsonl``: {"file_name", "text"}."""
    captions: dict[str, str] = {}
    manifest = src / MANIFEST
    if not manifest.is_file():
        return captions
    root = src.resolve()
    for number, line in enumerate(manifest.read_bytes().splitlines(), start=1):
        where = Entry(manifest, reason="")
        try:
            record = json.loads(line.decode("utf-8")) if line.strip() else None
        except (UnicodeDecodeError, json.JSONDecodeError):
            problems.append(where.skip(f"{MANIFEST} line {number} is not UTF-8 JSON; fix or remove that line"))
            continue
        if record is None:
            continue
        if not isinstance(record, dict) or "file_name" not in record:
            problems.append(where.skip(f"{MANIFEST} line {number} has no file_name"))
            continue
        target = (src / str(record["file_name"])).resolve()
        if not target.is_relative_to(root):
            problems.append(
                Entry(Path(str(record["file_name"]))).skip(f"{MANIFEST} line {number} points outside the source folder")
            )
            continue
        captions[str(target.relative_to(root))] = str(record.get("text", "")).strip()
    return captions


def _decode(entry: Entry, min_size: int) -> Entry:
    """Open, fully decode and sanity-check one candidate image file."""
    try:
        size = entry.path.stat().st_size
    except OSError as exc:
        return entry.skip("symlink loop or unreadable link" if exc.errno == 40 else f"cannot be read ({exc.strerror})")
    if size == 0:
        return entry.skip("zero-byte file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(entry.path) as image:
                if image.width * image.height > MAX_PIXELS:
                    return entry.skip(f"decompression bomb ({image.width}x{image.height} pixels)")
                image.load()
                entry.image = image.copy()
                entry.image.info.update(image.info)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        return entry.skip("decompression bomb (too many pixels declared)")
    except UnidentifiedImageError:
        return entry.skip("not an image Pillow can read")
    except (OSError, SyntaxError, ValueError) as exc:
        text = str(exc)
        reason = (
            "truncated image file"
            if "truncated" in text.lower() or "broken data" in text
            else f"unreadable image ({text[:80]})"
        )
        return entry.skip(reason)
    if min(entry.image.size) < min_size:
        return entry.skip(
            f"too small ({entry.image.width}x{entry.image.height}, need at least {min_size} px on the short side)"
        )
    entry.content_hash = hashlib.sha256(entry.path.read_bytes()).hexdigest()
    entry.kept = True
    return entry


def scan(src: Path, min_size: int, default_caption: str | None) -> list[Entry]:
    """Every entry of ``src`` (top level) with a verdict; kept ones hold the decoded image."""
    if not src.is_dir():
        raise UserError(
            f"image folder {src} does not exist or is not a folder; pass the folder that holds your photos."
        )
    problems: list[Entry] = []
    manifest_captions = _read_manifest(src, problems)
    entries: list[Entry] = []
    seen_hashes: dict[str, Path] = {}
    mask_files: list[Path] = []
    for path in sorted(src.iterdir()):
        name = path.name
        if name == MANIFEST or name.startswith(".") or path.suffix.lower() in CAPTION_SUFFIXES:
            continue  # captions and the manifest are read with their images
        if masks.is_mask_file(path, IMAGE_SUFFIXES):
            mask_files.append(path)  # read with its photo
            continue
        entry = Entry(path)
        entries.append(entry)
        if path.is_symlink() and not path.exists():
            try:
                os.stat(path)
                entry.skip("broken symbolic link")
            except OSError as exc:
                entry.skip("symlink loop" if exc.errno == 40 else "broken symbolic link")
            continue
        if path.is_dir():
            entry.skip("is a folder (subfolders are not read; move its images to the top level)")
            continue
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            entry.skip(f"not an image file (suffix '{path.suffix or 'none'}')")
            continue
        if _decode(entry, min_size).kept is False:
            continue
        if entry.content_hash in seen_hashes:
            entry.skip(f"duplicate content of {seen_hashes[entry.content_hash].name}")
            continue
        seen_hashes[entry.content_hash] = path
        entry.caption = _caption_for(path, src, manifest_captions, default_caption, entry)
        _attach_mask(entry)
    return entries + _orphan_masks(mask_files, entries) + problems


def _attach_mask(entry: Entry) -> None:
    if not entry.kept:
        return
    try:
        entry.mask, source = masks.subject_mask(entry.path, entry.image, IMAGE_SUFFIXES)
    except ValueError as exc:
        entry.skip(str(exc))
        return
    if entry.mask is not None:
        entry.notes.append(f"subject mask from {source}")


def _orphan_masks(mask_files: list[Path], entries: list[Entry]) -> list[Entry]:
    """Mask files whose photo is not in the folder: reported, so a misspelt name does not pass in silence."""
    photos = {e.path.stem for e in entries if e.path.suffix.lower() in IMAGE_SUFFIXES}
    return [
        Entry(path).skip(f"a subject mask, but there is no photo named {Path(path.stem).stem}.* beside it")
        for path in mask_files
        if Path(path.stem).stem not in photos
    ]


def _caption_for(path: Path, src: Path, manifest: dict[str, str], default: str | None, entry: Entry) -> str | None:
    for suffix in CAPTION_SUFFIXES:
        side_file = path.with_suffix(suffix)
        if side_file.is_file():
            try:
                return _read_caption(side_file)
            except ValueError as exc:
                entry.skip(str(exc))
                return None
    relative = (
        str(path.resolve().relative_to(src.resolve())) if path.resolve().is_relative_to(src.resolve()) else path.name
    )
    if relative in manifest:
        return manifest[relative]
    return default
