"""Atomic writes: a crash never leaves a half-written file or folder where a good one is expected."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from dreamtune.errors import UserError

MARKER = ".dreamtune"  # written into every output folder dreamtune creates
# sets of files that together identify an output of an earlier dreamtune version (before the
# marker existed): a run, a prepared folder, a generate folder, a bench table, a checkpoint, a model
SIGNATURES = (
    {"config.yaml", "metrics.jsonl"},
    {"report.json", "metadata.jsonl"},
    {"generations.json", "contact_sheet.png"},
    {"table.json", "table.md"},
    {"state.json", "rng.pt"},
    {"dreamtune.json"},
)


def is_dreamtune_output(folder: Path) -> bool:
    """Marked as dreamtune's, or an earlier version's output: a signature file in it or in one of
    its subfolders (a demo folder holds run/config.yaml, floor/generations.json)."""
    folder = Path(folder)
    if (folder / MARKER).exists():
        return True
    places = [folder] + [child for child in folder.iterdir() if child.is_dir() and not child.is_symlink()]
    return any(all((place / name).is_file() for name in names) for place in places for names in SIGNATURES)


def _check_replaceable(folder: Path, what: str) -> None:
    """An existing folder may be written into (or replaced) only when it is empty or ours."""
    if folder.exists() and not folder.is_dir():
        raise UserError(f"{what} {folder} is a file, not a folder; choose a folder path.")
    if folder.is_dir() and any(folder.iterdir()) and not is_dreamtune_output(folder):
        raise UserError(
            f"{what} {folder} already holds files that dreamtune did not write; choose a new or empty folder "
            "(dreamtune never deletes or overwrites your files)."
        )


def check_output_dir(folder: Path, what: str = "output folder") -> None:
    """``claim_output_dir``'s refusals without creating anything (before slow work whose failure
    must leave nothing behind)."""
    folder = Path(folder)
    _check_replaceable(folder, what)
    existing = next(p for p in [folder, *folder.absolute().parents] if p.exists())
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(
            f"cannot write {what} {folder} (permission denied on {existing}); choose a folder you can write to."
        )


def claim_output_dir(folder: Path, what: str = "output folder") -> Path:
    """Make ``folder`` this command's output folder: refuse a user's non-empty folder, a file, or a
    place that cannot be written; mark it as dreamtune's (so a rerun may write into it again)."""
    folder = Path(folder)
    _check_replaceable(folder, what)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / MARKER).touch(exist_ok=True)
    except OSError as exc:
        raise _disk_error(folder, exc) from None
    return folder


def _disk_error(path: Path, exc: OSError) -> UserError:
    if exc.errno == errno.ENOSPC:
        return UserError(f"the disk holding {path} is full; free some space or choose another output folder.")
    if exc.errno == errno.EFBIG:
        return UserError(
            f"writing {path} hit the file-size limit (ulimit -f); raise the limit or choose another output folder."
        )
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return UserError(f"cannot write {path} (permission denied or read-only); choose a folder you can write to.")
    return UserError(f"cannot write {path} ({exc.strerror}); check the path and the disk.")


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def honour_umask(path: Path) -> None:
    """mkdtemp / mkstemp (and some writers, safetensors among them) create private 0700 / 0600
    paths; an output gets the permissions any new file would, so a ComfyUI container or another
    user reading a shared models folder can open it. Folders are walked."""
    mask = _umask()
    os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~mask)
    if path.is_dir():
        for root, folders, files in os.walk(path):
            for names, mode in ((folders, 0o777), (files, 0o666)):
                for name in names:
                    entry = os.path.join(root, name)
                    if not os.path.islink(entry):  # never reach through a link to someone else's file
                        os.chmod(entry, mode & ~mask)


@contextlib.contextmanager
def atomic_dir(final: Path, owned: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling folder; on success it replaces ``final`` in one rename.
    An existing ``final`` that is not dreamtune's is refused, unless the caller ``owned`` the
    place already (a stage folder inside a pretraining root, the packaged miniature model)."""
    final = Path(final)
    if not owned:
        _check_replaceable(final, "output folder")
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        temp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    except OSError as exc:
        raise _disk_error(final, exc) from None
    try:
        yield temp
        (temp / MARKER).touch()
        honour_umask(temp)
        if final.exists():
            old = final.with_name(f".{final.name}.old-{os.getpid()}")
            os.replace(final, old)
            os.replace(temp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(temp, final)
    except BaseException as exc:
        shutil.rmtree(temp, ignore_errors=True)
        if failed_write(exc):
            raise _disk_error(final, as_os_error(exc, final)) from None
        raise


@contextlib.contextmanager
def atomic_file(final: Path, mode: str = "wb") -> Iterator[Path]:
    """Yield a temporary path beside ``final``; it is renamed onto ``final`` on success."""
    final = Path(final)
    if final.is_dir():
        raise UserError(f"{final} is a folder; dreamtune needs to write a file there, choose another path.")
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{final.name}.tmp-", dir=final.parent)
    except OSError as exc:
        raise _disk_error(final, exc) from None
    os.close(fd)
    temp = Path(name)
    try:
        yield temp
        honour_umask(temp)
        os.replace(temp, final)
    except BaseException as exc:
        temp.unlink(missing_ok=True)
        if failed_write(exc):
            raise _disk_error(final, as_os_error(exc, final)) from None
        raise


WRITE_FAILURES = {
    "No space left on device": errno.ENOSPC,
    "File too large": errno.EFBIG,
    "file write failed": errno.EIO,
    "failed writing": errno.EIO,
    "Disk quota exceeded": errno.EDQUOT,
    "unexpected pos": errno.EIO,
    "iostream error": errno.EIO,
}  # torch.save's zip writer cut short


def failed_write(exc: BaseException) -> bool:
    """A write that failed for lack of room or rights: an OSError, or the RuntimeError /
    SafetensorError torch.save and safetensors wrap one in."""
    if isinstance(exc, OSError):
        return True
    return isinstance(exc, Exception) and any(text.lower() in str(exc).lower() for text in WRITE_FAILURES)


def as_os_error(exc: BaseException, path: Path | None = None) -> OSError:
    if isinstance(exc, OSError):
        return exc
    code = next((c for text, c in WRITE_FAILURES.items() if text.lower() in str(exc).lower()), errno.EIO)
    if code == errno.EIO and path is not None:  # the library hid the cause: a file-size limit or a full disk
        code = _likely_cause(path)
    return OSError(code, os.strerror(code))


def _likely_cause(path: Path) -> int:
    import resource

    if resource.getrlimit(resource.RLIMIT_FSIZE)[0] != resource.RLIM_INFINITY:
        return errno.EFBIG
    existing = next((p for p in [Path(path), *Path(path).absolute().parents] if p.exists()), Path("/"))
    return errno.ENOSPC if shutil.disk_usage(existing).free < 64 * 2**20 else errno.EIO


def write_json(path: Path, data) -> None:
    with atomic_file(path) as temp:
        temp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
