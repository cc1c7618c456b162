"""The UI's work runs as CLI subprocesses (``python -m dreamtune.cli ...``): a crash or a stop never
takes the UI down, and resuming is the CLI's own ``--resume latest``. Each job leaves a record and
its output under ``<runs>/.ui-jobs/`` so that a restarted UI still knows its runs."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from dreamtune.atomic import write_json
from dreamtune.ui.runs import process_alive

JOBS = ".ui-jobs"
ERROR_LINE = re.compile(r"^error: (.+)$", re.M)
TQDM = re.compile(r"(?:(\w[\w ]*): +)?\d+%\|[^|\r\n]*\| *(\d+)/(\d+) \[[^\]<]*<([0-9:?]+)")


@dataclass
class Job:
    id: str
    kind: str  # prepare, train, resume, generate
    argv: list[str]
    target: str  # the folder it writes (a run, a prepared folder, a generation)
    started: float = field(default_factory=time.time)
    pid: int | None = None
    ended: float | None = None
    exit_code: int | None = None

    @property
    def running(self) -> bool:
        return self.ended is None


def _cli(*arguments: str) -> list[str]:
    return [sys.executable, "-m", "dreamtune.cli", *arguments]


class JobManager:
    """Starts, watches and stops the UI's subprocesses; one record + log per job."""

    def __init__(self, runs: Path):
        self.folder = Path(runs) / JOBS
        self.folder.mkdir(parents=True, exist_ok=True)
        self.processes: dict[str, subprocess.Popen] = {}
        self.lock = threading.Lock()
        self._count = 0

    def _new_id(self, kind: str) -> str:
        with self.lock:
            self._count += 1
            return f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-{self._count}-{kind}"

    def log_path(self, job_id: str) -> Path:
        return self.folder / f"{job_id}.log"

    def _save(self, job: Job) -> None:
        write_json(self.folder / f"{job.id}.json", asdict(job))

    def start(self, kind: str, arguments: list[str], target: Path, on_exit=None) -> Job:
        """Start ``dreamtune <arguments>`` in the background; ``on_exit(job)`` runs when it ends."""
        job = Job(self._new_id(kind), kind, _cli(*arguments), str(target))
        log = open(self.log_path(job.id), "w", encoding="utf-8")
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        env.setdefault("DREAMTUNE_CACHE", str(self.folder.parent / ".cache"))  # the UI writes only under --runs
        process = subprocess.Popen(
            job.argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, start_new_session=True
        )
        log.close()
        job.pid = process.pid
        self.processes[job.id] = process
        self._save(job)
        threading.Thread(target=self._watch, args=(job, process, on_exit), daemon=True).start()
        return job

    def run(self, kind: str, arguments: list[str], target: Path, timeout: float = 600) -> Job:
        """Run ``dreamtune <arguments>`` to its end (short jobs: prepare)."""
        done = threading.Event()
        job = self.start(kind, arguments, target, on_exit=lambda _: done.set())
        done.wait(timeout)
        return self.get(job.id) or job

    def _watch(self, job: Job, process: subprocess.Popen, on_exit) -> None:
        job.exit_code = process.wait()
        job.ended = time.time()
        self._save(job)
        self.processes.pop(job.id, None)
        if on_exit:
            on_exit(job)

    def get(self, job_id: str) -> Job | None:
        path = self.folder / f"{job_id}.json"
        if not path.is_file():
            return None
        job = Job(**json.loads(path.read_text(encoding="utf-8")))
        if job.ended is None and job.id not in self.processes and not process_alive(job.pid):
            job.ended, job.exit_code = time.time(), -1  # its UI died with it; the run's own files tell the rest
        return job

    def jobs(self) -> list[Job]:
        found = [self.get(p.stem) for p in sorted(self.folder.glob("*.json"))]
        return [j for j in found if j is not None]

    def latest_for(self, target: Path) -> Job | None:
        mine = [j for j in self.jobs() if Path(j.target) == Path(target)]
        return max(mine, key=lambda j: j.started) if mine else None

    def stop(self, job_id: str) -> bool:
        """SIGTERM: a training run saves a checkpoint of its last finished step and stops."""
        process = self.processes.get(job_id)
        if process is None or process.poll() is not None:
            return False
        process.send_signal(signal.SIGTERM)
        return True

    def stop_all(self, wait: float = 30) -> None:
        for job_id in list(self.processes):
            self.stop(job_id)
        deadline = time.time() + wait
        for process in list(self.processes.values()):
            try:
                process.wait(max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                process.kill()

    def output(self, job_id: str, limit: int = 20_000) -> str:
        """The tail of a job's output, tqdm's carriage returns resolved to their last state."""
        path = self.log_path(job_id)
        if not path.is_file():
            return ""
        with open(path, "rb") as handle:
            handle.seek(max(0, path.stat().st_size - limit))
            text = handle.read().decode("utf-8", "replace")
        return "\n".join(line.rsplit("\r", 1)[-1] for line in text.split("\n"))

    def error(self, job_id: str) -> str:
        """The CLI's one-sentence error of a failed job ("" when there is none)."""
        job = self.get(job_id)
        if job is None or job.running or job.exit_code == 0:
            return ""
        found = ERROR_LINE.findall(self.output(job_id))
        if found:
            return found[-1]
        if job.exit_code == -1:
            return "the UI that started this job stopped while it ran; resume the run to go on."
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
