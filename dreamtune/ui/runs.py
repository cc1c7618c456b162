"""What the UI knows about a run, read from its folder only (the CLI's files: ``config.yaml``,
``metrics.jsonl``, ``.lock``, ``checkpoint-*``, ``validation/``, ``monitor.jsonl``, ``model/``,
``report.html``), so runs started from the CLI show up too."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import yaml

from dreamtune.training.checkpoint import PREFIX as CHECKPOINT_PREFIX
from dreamtune.training.run_lock import LOCK

SKIPPED_METRICS = ("step", "seconds")
MEMORY = "memory_gib"  # metrics.jsonl: what the run held at each step (memory_report.held_bytes)
SKIPPED_PREFIXES = ("lr/", "grad_norm/")
MAX_POINTS = 400


def is_run(folder: Path) -> bool:
    """A training run's folder: its lock (taken first), resolved config or metrics."""
    return any((Path(folder) / name).is_file() for name in (LOCK, "config.yaml", "metrics.jsonl"))


def is_photo_set(folder: Path) -> bool:
    return (Path(folder) / "report.json").is_file() and (Path(folder) / "metadata.jsonl").is_file()


def lock_holder(folder: Path) -> int | None:
    """The pid of a live run holding ``folder/.lock`` on this machine (read, never taken)."""
    try:
        text = (Path(folder) / LOCK).read_text(encoding="utf-8").split()
    except OSError:
        return None
    if len(text) < 4 or text[0] != "pid" or text[3] != socket.gethostname():
        return None
    pid = int(text[1])
    return pid if process_alive(pid) else None


def process_alive(pid: int | None) -> bool:
    """A live process (a zombie child counts as ended)."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return True


def read_metrics(folder: Path) -> list[dict]:
    from dreamtune.training.callbacks import read_metric_log

    return read_metric_log(Path(folder) / "metrics.jsonl")


def _thin(points: list[tuple[int, float]]) -> list[tuple[int, float]]:
    if len(points) <= MAX_POINTS:
        return points
    stride = len(points) / MAX_POINTS
    return [points[int(i * stride)] for i in range(MAX_POINTS)] + [points[-1]]


def curves(records: list[dict]) -> dict[str, list]:
    """Every logged series (loss, prior loss, rewards, discriminator...) as (step, value), thinned."""
    series: dict[str, list] = {}
    for record in records:
        for key, value in record.items():
            if key in SKIPPED_METRICS or key.startswith(SKIPPED_PREFIXES) or not isinstance(value, (int, float)):
                continue
            series.setdefault(key, []).append((record["step"], value))
    return {key: _thin(points) for key, points in series.items()}


def held_memory(records: list[dict]) -> dict | None:
    """The run's memory now (its last logged step) and its peak so far, in GiB; None for runs that do not log it."""
    held = [r[MEMORY] for r in records if isinstance(r.get(MEMORY), (int, float))]
    return {"now_gib": held[-1], "peak_gib": max(held)} if held else None


def eta_seconds(records: list[dict], total: int) -> float | None:
    """Seconds left at the pace of the last (up to) 20 logged steps."""
    timed = [r for r in records if "seconds" in r]
    if len(timed) < 2:
        return None
    first, last = timed[max(0, len(timed) - 21)], timed[-1]
    if last["step"] <= first["step"] or last["seconds"] < first["seconds"]:
        return None
    per_step = (last["seconds"] - first["seconds"]) / (last["step"] - first["step"])
    return max(0.0, per_step * (total - last["step"]))


def total_steps(folder: Path) -> int | None:
    try:
        settings = yaml.safe_load((Path(folder) / "config.yaml").read_text(encoding="utf-8"))
        return int(settings["train"]["steps"])
    except (OSError, KeyError, TypeError, ValueError, yaml.YAMLError):
        return None


def checkpoints(folder: Path) -> list[str]:
    return sorted(p.name for p in Path(folder).glob(f"{CHECKPOINT_PREFIX}*") if (p / "state.json").is_file())


def run_status(folder: Path) -> str:
    """running (a live process holds its lock), finished (model/ written), stopped (a checkpoint to
    resume from), or incomplete (nothing to resume: start it again)."""
    folder = Path(folder)
    if lock_holder(folder):
        return "running"
    if (folder / "model" / "dreamtune.json").is_file():
        return "finished"
    if checkpoints(folder):
        return "stopped"
    return "incomplete"


def files_of(folder: Path, runs: Path) -> dict:
    """Links (relative to the runs folder) to what a person looks at or downloads."""
    folder = Path(folder)

    def rel(path: Path) -> str:
        return path.relative_to(runs).as_posix()

    sheets = sorted((folder / "validation").glob("step-*.png"))
    model = folder / "model"
    return {
        "validation": [rel(p) for p in sheets],
        "report": rel(folder / "report.html") if (folder / "report.html").is_file() else None,
        "weights": [rel(p) for p in sorted(model.glob("*.safetensors"))] if model.is_dir() else [],
        "model_card": rel(model / "README.md") if (model / "README.md").is_file() else None,
        "generations": [rel(p.parent) for p in sorted(folder.glob("generations/*/*/generations.json"))],
    }


def monitor_records(folder: Path) -> list[dict]:
    path = Path(folder) / "monitor" / "monitor.jsonl"
    if not path.is_file():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def describe(folder: Path, runs: Path) -> dict:
    """Everything the run page shows, from the folder alone."""
    records = read_metrics(folder)
    total = total_steps(folder)
    step = records[-1]["step"] if records else 0
    status = run_status(folder)
    return {
        "name": Path(folder).relative_to(runs).as_posix(),
        "status": status,
        "step": step,
        "total": total,
        "eta_s": eta_seconds(records, total) if status == "running" and total else None,
        "curves": curves(records),
        "held": held_memory(records),
        "monitor": monitor_records(folder),
        "checkpoints": checkpoints(folder),
        "files": files_of(folder, runs),
        "modified": Path(folder).stat().st_mtime,
    }


def model_sampling(folder: Path) -> dict | None:
    """A finished few-step model's own sampling (its dreamtune.json): the Generate form starts from it."""
    try:
        return json.loads((Path(folder) / "model" / "dreamtune.json").read_text(encoding="utf-8")).get("sampling")
    except (OSError, ValueError, AttributeError):
        return None


def discover(runs: Path) -> list[dict]:
    """The training runs directly under ``runs`` (newest first), summarised."""
    found = []
    for folder in Path(runs).iterdir():
        if folder.is_dir() and not folder.is_symlink() and not folder.name.startswith(".") and is_run(folder):
            records = read_metrics(folder)
            found.append(
                {
                    "name": folder.name,
                    "status": run_status(folder),
                    "step": records[-1]["step"] if records else 0,
                    "total": total_steps(folder),
                    "modified": folder.stat().st_mtime,
                    "has_report": (folder / "report.html").is_file(),
                    "sampling": model_sampling(folder),
                }
            )
    return sorted(found, key=lambda r: -r["modified"])
