"""The UI's work runs as CLI subprocesses (``python -m dreamtune.cli ...``): a crash or a stop never
takes the UI down, and resuming is the CLI's own ``--resume latest``.

Jobs outlive the UI. Each is started through a small runner (``python -m dreamtune.ui.job_runner``) in
its own session, which records the CLI's exit status and then starts the next queued job — so a run keeps
training and the queue keeps moving when the UI is closed, and a UI started again reads the records under
``<runs>/.ui-jobs/`` and follows them (re-attached). Jobs that need the device (train, resume) wait in a
queue, at most ``max_device_jobs`` at once (``dreamtune ui --max-jobs``, default 1); prepare and generate
start at once. Queued jobs can be reordered and cancelled. Every change to a record happens under one
file lock, so the UI and the runners never write over each other."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from dreamtune.atomic import write_json
from dreamtune.ui.runs import process_alive

JOBS = ".ui-jobs"
SETTINGS = "queue.json"
DEVICE_KINDS = ("train", "resume")  # jobs that hold the accelerator: one after another by default
PAUSED_CODES = (128 + 15, 128 + 2)  # the CLI's exit status after SIGTERM / Ctrl-C: a checkpoint, then a pause
ERROR_LINE = re.compile(r"^error: (.+)$", re.M)
TQDM = re.compile(r"(?:(\w[\w ]*): +)?\d+%\|[^|\r\n]*\| *(\d+)/(\d+) \[[^\]<]*<([0-9:?]+)")


@dataclass
class Job:
    id: str
    kind: str  # prepare, train, resume, generate
    argv: list[str]
    target: str  # the folder it writes (a run, a prepared folder, a generation)
    started: float = field(default_factory=time.time)  # when it was asked for
    pid: int | None = None  # the CLI process
    ended: float | None = None
    exit_code: int | None = None
    launched: float | None = None  # None while it waits in the queue
    runner_pid: int | None = None
    position: float = field(default_factory=time.time)  # order in the queue
    cancelled: bool = False

    @property
    def running(self) -> bool:
        """Not ended: waiting in the queue or launched."""
        return self.ended is None

    @property
    def state(self) -> str:
        """queued, running, finished, paused (stopped on request), cancelled or failed."""
        if self.cancelled:
            return "cancelled"
        if self.ended is None:
            return "queued" if self.launched is None else "running"
        if self.exit_code == 0:
            return "finished"
        return "paused" if self.exit_code in PAUSED_CODES else "failed"


def _cli(*arguments: str) -> list[str]:
    return [sys.executable, "-m", "dreamtune.cli", *arguments]


def record_path(folder: Path, job_id: str) -> Path:
    return Path(folder) / f"{job_id}.json"


def log_path(folder: Path, job_id: str) -> Path:
    return Path(folder) / f"{job_id}.log"


def load(folder: Path, job_id: str) -> Job | None:
    path = record_path(folder, job_id)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    known = {f.name for f in fields(Job)}
    return Job(**{k: v for k, v in data.items() if k in known})


def save(folder: Path, job: Job) -> None:
    write_json(record_path(folder, job.id), asdict(job))


@contextlib.contextmanager
def locked(folder: Path):
    """The queue's lock: every read-modify-write of records, by the UI or a runner, holds it."""
    with open(Path(folder) / ".lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def update(folder: Path, job_id: str, **changes) -> Job | None:
    with locked(folder):
        job = load(folder, job_id)
        if job is not None:
            for key, value in changes.items():
                setattr(job, key, value)
            save(folder, job)
        return job


def all_jobs(folder: Path) -> list[Job]:
    found = [load(folder, p.stem) for p in sorted(Path(folder).glob("*.json")) if p.name != SETTINGS]
    return [j for j in found if j is not None]


def max_device_jobs(folder: Path) -> int:
    try:
        return max(1, int(json.loads((Path(folder) / SETTINGS).read_text())["max_device_jobs"]))
    except (OSError, ValueError, KeyError, TypeError):
        return 1


def _launch(folder: Path, job: Job) -> None:
    """Start ``job``'s runner in its own session (it survives the UI); called under the lock."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.setdefault("DREAMTUNE_CACHE", str(Path(folder).parent / ".cache"))  # the UI writes only under --runs
    runner = subprocess.Popen(
        [sys.executable, "-m", "dreamtune.ui.job_runner", str(record_path(folder, job.id))],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=open(log_path(folder, job.id), "a", encoding="utf-8"),  # noqa: SIM115 (the child keeps it)
        env=env,
        start_new_session=True,
    )
    job.launched, job.runner_pid = time.time(), runner.pid
    save(folder, job)


def advance(folder: Path) -> list[str]:
    """Launch what may run now: every waiting job that does not need the device, and queued device jobs
    in queue order while fewer than ``max_device_jobs`` run. Returns the ids launched."""
    launched = []
    with locked(folder):
        jobs = [_settled(folder, j) for j in all_jobs(folder)]
        busy = sum(1 for j in jobs if j.state == "running" and j.kind in DEVICE_KINDS)
        for job in sorted((j for j in jobs if j.state == "queued"), key=lambda j: j.position):
            if job.kind in DEVICE_KINDS:
                if busy >= max_device_jobs(folder):
                    continue
                busy += 1
            _launch(folder, job)
            launched.append(job.id)
    return launched


def _settled(folder: Path, job: Job) -> Job:
    """``job``, marked ended when its runner is gone without saying so (killed, or the machine restarted)."""
    if job.ended is None and job.launched is not None and not process_alive(job.runner_pid):
        if not process_alive(job.pid):
            job.ended, job.exit_code = time.time(), -1
            save(folder, job)
    return job


class JobManager:
    """The UI's view of the jobs: start (queue), follow, stop, cancel, reorder; one record + log per job."""

    def __init__(self, runs: Path, max_device_jobs: int = 1):
        self.folder = Path(runs) / JOBS
        self.folder.mkdir(parents=True, exist_ok=True)
        write_json(self.folder / SETTINGS, {"max_device_jobs": max(1, int(max_device_jobs))})
        self.lock = threading.Lock()
        self._count = 0
        advance(self.folder)  # what waited while no UI ran (its runners normally start it themselves)

    def _new_id(self, kind: str) -> str:
        with self.lock:
            self._count += 1
            return f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-{self._count}-{kind}"

    def log_path(self, job_id: str) -> Path:
        return log_path(self.folder, job_id)

    def start(self, kind: str, arguments: list[str], target: Path, on_exit=None) -> Job:
        """Queue ``dreamtune <arguments>`` (it starts at once when the device has room);
        ``on_exit(job)`` runs when it ends, if this UI is still up."""
        job = Job(self._new_id(kind), kind, _cli(*arguments), str(target))
        self.log_path(job.id).touch()
        with locked(self.folder):
            save(self.folder, job)
        advance(self.folder)
        if on_exit:
            threading.Thread(target=self._follow, args=(job.id, on_exit), daemon=True).start()
        return self.get(job.id) or job

    def _follow(self, job_id: str, on_exit, poll: float = 0.3) -> Job | None:
        while True:
            job = self.get(job_id)
            if job is None or not job.running:
                if on_exit and job is not None:
                    on_exit(job)
                return job
            time.sleep(poll)

    def run(self, kind: str, arguments: list[str], target: Path, timeout: float = 600) -> Job:
        """Run ``dreamtune <arguments>`` to its end (short jobs: prepare)."""
        done = threading.Event()
        job = self.start(kind, arguments, target, on_exit=lambda _: done.set())
        done.wait(timeout)
        return self.get(job.id) or job

    def get(self, job_id: str) -> Job | None:
        job = load(self.folder, job_id)
        if job is None or job.ended is not None or job.launched is None:
            return job
        with locked(self.folder):
            return _settled(self.folder, load(self.folder, job_id))

    def jobs(self) -> list[Job]:
        return [j for j in (self.get(p.stem) for p in sorted(self.folder.glob("*.json")) if p.name != SETTINGS) if j]

    def latest_for(self, target: Path) -> Job | None:
        mine = [j for j in self.jobs() if Path(j.target) == Path(target)]
        return max(mine, key=lambda j: j.started) if mine else None

    def queue(self) -> list[Job]:
        """The jobs that wait, in the order they will start."""
        return sorted((j for j in self.jobs() if j.state == "queued"), key=lambda j: j.position)

    def stop(self, job_id: str) -> bool:
        """SIGTERM to a launched job (a training run saves a checkpoint of its last finished step and
        stops); a queued one is cancelled. False when it has ended."""
        job = self.get(job_id)
        if job is None or not job.running:
            return False
        if job.launched is None:
            return self.cancel(job_id)
        for _ in range(50):  # its runner writes the CLI's pid a moment after the launch
            if job.pid:
                break
            time.sleep(0.1)
            job = self.get(job_id)
        if not job.pid or not process_alive(job.pid):
            return False
        os.kill(job.pid, signal.SIGTERM)
        return True

    def cancel(self, job_id: str) -> bool:
        """A queued job leaves the queue (it never starts); a running one is stopped."""
        with locked(self.folder):
            job = load(self.folder, job_id)
            if job is None or job.ended is not None:
                return False
            if job.launched is None:
                job.cancelled, job.ended = True, time.time()
                save(self.folder, job)
                return True
        return self.stop(job_id)

    def move(self, job_id: str, by: int) -> list[Job]:
        """Move a queued job ``by`` places (negative: sooner); the new queue."""
        with locked(self.folder):
            waiting = sorted(
                (j for j in all_jobs(self.folder) if j.ended is None and j.launched is None), key=lambda j: j.position
            )
            index = next((i for i, j in enumerate(waiting) if j.id == job_id), None)
            if index is not None:
                other = min(max(index + by, 0), len(waiting) - 1)
                job = waiting.pop(index)
                waiting.insert(other, job)
                base = min(j.position for j in waiting)
                for offset, queued in enumerate(waiting):
                    queued.position = base + offset * 1e-3
                    save(self.folder, queued)
        return self.queue()

    def stop_all(self, wait: float = 30) -> None:
        """Cancel the queue and stop every running job (tests and benchmarks clean up with it; closing the
        UI leaves jobs running)."""
        for job in self.queue():
            self.cancel(job.id)
        running = [j for j in self.jobs() if j.state == "running"]
        for job in running:
            self.stop(job.id)
        deadline = time.time() + wait
        for job in running:
            while time.time() < deadline and (self.get(job.id) or job).running:
                time.sleep(0.1)
            current = self.get(job.id)
            if current and current.running and process_alive(current.pid):
                os.kill(current.pid, signal.SIGKILL)

    def output(self, job_id: str, limit: int = 20_000) -> str:
        """The tail of a job's output, tqdm's carriage returns resolved to their last state."""
        path = self.log_path(job_id)
        if not path.is_file():
            return ""
        with open(path, "rb") as handle:
            handle.seek(max(0, path.stat().st_size - limit))
            text = handle.read().decode("utf-8", "replace")
        return "\n".join(line.rsplit("\r", 1)[-1] for line in text.split("\n"))

    def head(self, job_id: str, limit: int = 256 * 2**10) -> str:
        """The start of a job's output (what a run says once, early: its plan, its memory after step 2)."""
        path = self.log_path(job_id)
        if not path.is_file():
            return ""
        with open(path, "rb") as handle:
            return handle.read(limit).decode("utf-8", "replace")

    def error(self, job_id: str) -> str:
        """The CLI's one-sentence error of a failed job ("" when there is none)."""
        job = self.get(job_id)
        if job is None or job.running or job.exit_code == 0 or job.cancelled:
            return ""
        found = ERROR_LINE.findall(self.output(job_id))
        if found:
            return found[-1]
        if job.exit_code == -1:
            return "the job's runner stopped while it ran (was the machine restarted?); resume the run to go on."
        tail = [line for line in self.output(job_id).splitlines() if line.strip()]
        return f"the command ended with exit status {job.exit_code}: {tail[-1] if tail else 'no output'}"

    def progress(self, job_id: str) -> dict | None:
        """The newest tqdm figures of a job's output: its label (class images, training, ...), done,
        total, and the estimate in seconds (None while tqdm has none)."""
        found = TQDM.findall(self.output(job_id, 4000))
        if not found:
            return None
        label, done, total, eta = found[-1]
        return {"label": label.strip(), "done": int(done), "total": int(total), "eta_s": _seconds(eta)}


def _seconds(clock: str) -> int | None:
    """tqdm's ``MM:SS`` / ``H:MM:SS`` estimate in seconds; None for ``?``."""
    if "?" in clock:
        return None
    seconds = 0
    for part in clock.split(":"):
        seconds = seconds * 60 + int(part)
    return seconds
