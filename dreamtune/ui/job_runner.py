"""``python -m dreamtune.ui.job_runner RECORD``: run one UI job to its end, outside the UI.

Started by the UI (or by the runner of the job before it) in a session of its own, so it outlives the UI:
it runs the job's CLI command with its output in the job's log, writes the CLI's pid and then its exit
status into the record, and launches the next queued jobs (jobs.advance). SIGTERM / SIGINT to the runner
are passed on to the CLI, which checkpoints and stops.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from dreamtune.ui.jobs import advance, load, log_path, update


def main(record: str) -> int:
    path = Path(record)
    folder, job_id = path.parent, path.stem
    job = load(folder, job_id)
    if job is None or job.ended is not None:
        return 2
    with open(log_path(folder, job_id), "a", encoding="utf-8") as log:
        child = subprocess.Popen(
            job.argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=os.environ.copy()
        )
    update(folder, job_id, pid=child.pid)
    for number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(number, lambda n, frame: child.send_signal(n))
    code = child.wait()
    update(folder, job_id, ended=time.time(), exit_code=code if code >= 0 else 128 - code)
    advance(folder)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
