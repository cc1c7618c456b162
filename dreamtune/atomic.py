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


def _disk_error(path: Path, exc: OSError) -> UserError:
    if exc.errno == errno.ENOSPC:
        return UserError(f"the disk holding {path} is full; free some space or choose another output folder.")
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
                    if not os.path.islink(entry):   # never reach through a link to someone else's file
                        os.chmod(entry, mode & ~mask)


@contextlib.contextmanager
def atomic_dir(final: Path) -> Iterator[Path]:
    """Yield a temporary sibling folder; on success it replaces ``final`` in one rename."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    temp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    try:
        yield temp
        honour_umask(temp)
        if final.exists():
            old = final.with_name(f".{final.name}.old-{os.getpid()}")
            os.replace(final, old)
            os.replace(temp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(temp, final)
    except OSError as exc:
        shutil.rmtree(temp, ignore_errors=True)
        raise _disk_error(final, exc) from None
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise


@contextlib.contextmanager
def atomic_file(final: Path, mode: str = "wb") -> Iterator[Path]:
    """Yield a temporary path beside ``final``; it is renamed onto ``final`` on success."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{final.name}.tmp-", dir=final.parent)
    os.close(fd)
    temp = Path(name)
    try:
        yield temp
        honour_umask(temp)
        os.replace(temp, final)
    except OSError as exc:
        temp.unlink(missing_ok=True)
        raise _disk_error(final, exc) from None
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def write_json(path: Path, data) -> None:
    with atomic_file(path) as temp:
        temp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
