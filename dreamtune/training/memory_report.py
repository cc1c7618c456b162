"""Where a run's memory goes, said once in one line: weights (frozen and trained), gradients,
optimizer state, and the peak of one whole step, of which the rest is activations and the
allocator's working room. On CUDA from PyTorch's allocator; on the CPU from the process's resident
set, whose peak (VmHWM) is reset after the first step (Linux ``clear_refs``) so that the second
step's peak is the one reported (the first includes warm-up and, on the CPU, loading)."""

from __future__ import annotations

import functools
from pathlib import Path

import torch
from torch import nn

from dreamtune.models.quantize import plain_tensors
from dreamtune.training.checkpoint import TrainingState

GIB = 2**30


def resident_bytes(tensors) -> int:
    """Bytes the tensors hold in memory (quantized ones as stored; freed ``meta`` ones hold none)."""
    return sum(p.numel() * p.element_size() for t in tensors for p in plain_tensors(t) if not p.is_meta)


def state_bytes(optimizer) -> int:
    return resident_bytes(v for s in optimizer.state.values() for v in s.values() if torch.is_tensor(v))


def held_bytes(device: torch.device) -> int:
    """Memory the run holds now, read cheaply every step (metrics.jsonl's ``memory_gib``): on CUDA what
    PyTorch's allocator has reserved on the device (what the driver counts against the card, less the
    CUDA context), elsewhere the process's resident set."""
    if device.type == "cuda":
        return torch.cuda.memory_reserved(device)
    return _this_process().memory_info().rss


@functools.lru_cache(maxsize=1)
def _this_process():
    import psutil

    return psutil.Process()


def _peak_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    line = next(x for x in Path("/proc/self/status").read_text().splitlines() if x.startswith("VmHWM:"))
    return int(line.split()[1]) * 1024


def _reset_peak(device: torch.device) -> bool:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return True
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
        return True
    except OSError:
        return False


def size(count: int) -> str:
    return f"{count / GIB:.2f} GiB" if count >= GIB / 10 else f"{count / 2**20:.1f} MiB"


class MemoryReport:
    """Logs the split after the second step (or the first, in a one-step run)."""

    def __init__(self, modules: list[nn.Module], device: torch.device, steps: int, log, enabled: bool = True):
        self.modules, self.device, self.log, self.enabled = modules, device, log, enabled
        self.report_at = 2 if steps >= 2 else 1
        self.first = None

    def on_step_end(self, state: TrainingState, metrics: dict[str, float]) -> None:
        if not self.enabled:
            return
        if self.first is None:
            self.first = state.step
            if self.report_at == 2 and not _reset_peak(self.device):
                self.report_at = 1
        if state.step - self.first + 1 == self.report_at:
            self.log(self.sentence(state))
            self.enabled = False

    def sentence(self, state: TrainingState) -> str:
        trained = [p for m in state.modules.values() for p in m.parameters() if p.requires_grad]
        weights = resident_bytes(t for m in self.modules for t in [*m.parameters(), *m.buffers()])
        trained_bytes = resident_bytes(trained)
        fused = bool(state.fused)
        gradients = max((resident_bytes([p]) for p in trained), default=0) if fused else trained_bytes
        optimizer = sum(state_bytes(o) for o in state.optimizers.values())
        peak = _peak_bytes(self.device)
        rest = peak - weights - optimizer - (0 if fused else gradients)
        where = "GPU memory" if self.device.type == "cuda" else "resident memory"
        return (
            f"memory after step {self.report_at}: weights {size(weights)} (trained {size(trained_bytes)}), "
            f"gradients {size(gradients)}{' (fused: one weight at a time)' if fused else ''}, optimizer state "
            f"{size(optimizer)}; peak {where} of the step {size(peak)}, of which ~{size(max(0, rest))} "
            f"activations and working room"
        )
