"""One run per output folder: ``<output_dir>/.lock`` held with ``flock`` for the whole run.

The kernel releases an flock when its process ends in any way (kill -9 included), so a lock
file left by a dead run is simply taken over; a live holder makes a second run stop in one
sentence before it writes anything. Holding the lock also makes it safe to sweep the temp
folders (``.checkpoint-*.tmp-*``, ``.model.tmp-*``) a killed run left behind.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import socket
from pathlib import Path

from dreamtune.errors import UserError
from dreamtune.training.checkpoint import list_checkpoints

LOCK = ".lock"


class RunLock:
    def __init__(self, output_dir: Path):
        self.path = Path(output_dir) / LOCK
        self.handle = None

    def acquire(self) -> "RunLock":
        try:
            handle = open(self.path, "a+", encoding="utf-8")
        except OSError as exc:
            raise UserError(
                f"cannot write in {self.path.parent} ({exc.strerror}); choose a folder you can write to."
            ) from None
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise UserError(
                f"{self.path.parent} is in use by another dreamtune run ({holder}); wait for it to finish "
                "or set train.output_dir to another folder."
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {socket.gethostname()}")
        handle.flush()
        self.handle = handle
        return self

    def release(self) -> None:
        if self.handle is not None:
            fcntl.flock(self.handle, fcntl.LOCK_UN)
            self.handle.close()
            self.handle = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def sweep_leftovers(output_dir: Path) -> list[str]:
    """Remove the temp folders/files of runs that died mid-write (call while holding the lock)."""
    removed = []
    for entry in Path(output_dir).iterdir():
        if entry.name.startswith(".") and (".tmp-" in entry.name or ".old-" in entry.name):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
            removed.append(entry.name)
    return removed


class RunStopped(UserError):
    """A run ended by SIGTERM / SIGINT after saving a checkpoint of its last finished step."""

    def __init__(self, message: str, signal_number: int):
        super().__init__(message)
        self.exit_code = 128 + signal_number


class StopRequested(Exception):
    def __init__(self, signal_number: int):
        super().__init__(signal_number)
        self.signal_number = signal_number


class StopOnSignal:
    """A loop callback: SIGTERM (what schedulers and container runtimes send before killing) or
    SIGINT (Ctrl-C) ends the run after the current step, so that a checkpoint of it can be saved.
    A second SIGINT interrupts at once."""

    def __init__(self, enabled: bool = True):
        import signal
        import threading

        self.received: int | None = None
        self.previous = {}
        if enabled and threading.current_thread() is threading.main_thread():
            for number in (signal.SIGTERM, signal.SIGINT):
                self.previous[number] = signal.signal(number, self._handle)

    def _handle(self, number, frame) -> None:
        import signal

        if self.received is not None and number == signal.SIGINT:
            raise KeyboardInterrupt
        self.received = number

    def on_step_end(self, state, metrics) -> None:
        if self.received is not None:
            raise StopRequested(self.received)

    def restore(self) -> None:
        import signal

        for number, handler in self.previous.items():
            signal.signal(number, handler)
        self.previous = {}


def refuse_earlier_run(output_dir: Path) -> None:
    """A new run never silently replaces an earlier one in the same folder: a finished run's model
    and report, or a stopped run's checkpoints (continue those with ``--resume latest``)."""
    if (output_dir / "model" / "dreamtune.json").is_file():
        raise UserError(
            f"train.output_dir {output_dir} already holds a finished run (its model/ and report); choose another "
            "train.output_dir for this run — dreamtune never replaces a finished run."
        )
    earlier = list_checkpoints(output_dir) if output_dir.is_dir() else []
    if earlier:
        raise UserError(
            f"train.output_dir {output_dir} holds a stopped run ({earlier[-1].name}); continue it with "
            "--resume latest, or choose another train.output_dir to start over."
        )
