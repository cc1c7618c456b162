"""Callbacks of the training loop: metric log, periodic checkpoints, validation images, and the
optimizer restart of a run whose personalization hands over to a reward."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

from dreamtune.sampling.contact_sheet import contact_sheet, save_png
from dreamtune.training import checkpoint
from dreamtune.training.checkpoint import TrainingState


def read_metric_log(path: Path) -> list[dict]:
    """A run's ``metrics.jsonl`` as one record per step, in step order: after a resume the steps the
    interrupted part logged past its last checkpoint appear twice, and the resumed part's record is
    the one that counts; a line still being written is skipped."""
    by_step: dict[int, dict] = {}
    path = Path(path)
    if path.is_file():
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict) and isinstance(record.get("step"), int):
                by_step[record["step"]] = record
    return [by_step[step] for step in sorted(by_step)]


class MetricLog:
    """Appends one JSON line of metrics per step to ``log_path``; ``memory`` (bytes the run holds now)
    adds ``memory_gib`` to each line, the figure the UI shows live."""

    def __init__(self, log_path: Path, enabled: bool = True, memory: Callable[[], int] | None = None):
        self.log_path = Path(log_path)
        self.enabled = enabled
        self.memory = memory
        self.history: list[dict] = []
        self.started = time.perf_counter()

    def on_step_end(self, state: TrainingState, metrics: dict[str, float]) -> None:
        record = {
            "step": state.step,
            "seconds": round(time.perf_counter() - self.started, 4),
            **{k: round(v, 6) for k, v in metrics.items()},
        }
        if self.memory is not None:
            record["memory_gib"] = round(self.memory() / 2**30, 3)
        self.history.append(record)
        if self.enabled:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.log_path, "a", encoding="utf-8") as log:
                log.write(json.dumps(record) + "\n")


class RestartOptimizer:
    """When ``step`` steps are done, the model's optimizer forgets its moments (and step count), as
    a new run's would: with ``rl.handover`` the reward starts from fresh AdamW state, not from the
    personalization's momentum and gradient scale. Runs before the checkpointer, so a checkpoint
    taken at ``step`` holds the restarted state and resuming from it is exact."""

    def __init__(self, step: int, name: str = "model"):
        self.step, self.name = step, name

    def on_step_end(self, state: TrainingState, metrics: dict[str, float]) -> None:
        if state.step == self.step:
            state.optimizers[self.name].state.clear()


class Checkpointer:
    """Every ``every`` steps a checkpoint; ``write``: this process writes it (under train.shard every process
    takes part in gathering it and the main one writes)."""

    def __init__(self, output_dir: Path, every: int, keep: int, enabled: bool = True, write: bool = True):
        self.output_dir, self.every, self.keep, self.enabled, self.write = Path(output_dir), every, keep, enabled, write
        self.last_saved: Path | None = None

    def on_step_end(self, state: TrainingState, metrics: dict[str, float]) -> None:
        if self.enabled and self.every and state.step % self.every == 0:
            self.last_saved = checkpoint.save(state, self.output_dir, self.keep, write=self.write)


class Validator:
    """Every ``every`` steps, renders the validation prompts with fixed seeds into a contact sheet."""

    def __init__(self, render, prompts: list[str], seeds: list[int], every: int, folder: Path, enabled: bool = True):
        self.render, self.prompts, self.seeds = render, prompts, seeds
        self.every, self.folder, self.enabled = every, Path(folder), enabled

    def on_step_end(self, state: TrainingState, metrics: dict[str, float]) -> None:
        if self.enabled and self.every and self.prompts and state.step % self.every == 0:
            self.run(state.step)

    def run(self, step: int) -> Path:
        pairs = [(p, s) for p in self.prompts for s in self.seeds]
        images = self.render([p for p, _ in pairs], [s for _, s in pairs])
        sheet = contact_sheet(
            images,
            [f"{p} (seed {s})" for p, s in pairs],
            columns=len(self.seeds) * min(4, len(self.prompts)),
            title=f"step {step}",
        )
        return save_png(sheet, self.folder / f"step-{step:06d}.png")


class TrackerLog:
    """Every ``every`` steps, the step's metrics to accelerate's trackers (TensorBoard, W&B)."""

    def __init__(self, accelerator, every: int, enabled: bool = True):
        self.accelerator, self.every, self.enabled = accelerator, every, enabled

    def on_step_end(self, state: TrainingState, metrics: dict[str, float]) -> None:
        if self.enabled and state.step % self.every == 0:
            self.accelerator.log(dict(metrics), step=state.step)
