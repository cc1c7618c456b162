"""The machine the UI trains on, in words: what it is (said once) and how busy it is now (each look)."""

from __future__ import annotations

import contextlib
import functools
import platform
import shutil
import subprocess
import time

GIB = 2**30
GPU_QUERY = "index,name,memory.used,memory.total,utilization.gpu,temperature.gpu"
GPU_LOOK_EVERY = 2.0  # seconds: nvidia-smi answers in ~0.1 s; several open pages share one look
_last_gpu_look: tuple[float, list[dict]] = (-GPU_LOOK_EVERY, [])


@functools.lru_cache(maxsize=1)
def device_summary() -> str:
    """What trains here: the accelerator (name, memory) or the CPU (cores, memory)."""
    import psutil
    import torch

    memory = psutil.virtual_memory()
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        count = torch.cuda.device_count()
        return (
            f"{count} x {props.name}, {props.total_memory / GIB:.0f} GiB each"
            if count > 1
            else (f"{props.name}, {props.total_memory / GIB:.0f} GiB")
        )
    cpu = platform.machine()
    with contextlib.suppress(OSError):
        names = [line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")]
        cpu = names[0] if names else cpu
    return f"CPU ({cpu}, {psutil.cpu_count()} threads), {memory.total / GIB:.0f} GiB memory, no GPU"


def machine_load() -> dict:
    """The whole machine now: memory in use (total less what the OS could hand out) and CPU use since the
    previous look (psutil's own bookkeeping: the first look of a process reads 0). The run's own memory
    (on a GPU: the device memory its allocator holds) comes from its metrics.jsonl, not from here: the UI
    never opens a CUDA context of its own."""
    import psutil

    memory = psutil.virtual_memory()
    return {
        "memory_used_gib": round((memory.total - memory.available) / GIB, 1),
        "memory_total_gib": round(memory.total / GIB, 1),
        "cpu_percent": round(psutil.cpu_percent(interval=None)),
        "gpus": gpu_load(),
    }


def gpu_load() -> list[dict]:
    """Every NVIDIA GPU as the driver sees it (all processes' memory, utilization, temperature), read with the
    driver's own ``nvidia-smi`` at most every GPU_LOOK_EVERY seconds; [] where there is none or it fails."""
    global _last_gpu_look
    looked, gpus = _last_gpu_look
    if time.monotonic() - looked < GPU_LOOK_EVERY:
        return gpus
    gpus = []
    tool = shutil.which("nvidia-smi")
    if tool:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            answer = subprocess.run(
                [tool, f"--query-gpu={GPU_QUERY}", "--format=csv,noheader,nounits"],
                capture_output=True,
                text=True,
                timeout=5,
                check=True,
            )
            gpus = [gpu for line in answer.stdout.splitlines() if (gpu := _gpu_row(line))]
    _last_gpu_look = (time.monotonic(), gpus)
    return gpus


def _gpu_row(line: str) -> dict | None:
    """One CSV line of GPU_QUERY (MiB, %, °C; "[N/A]" where a card does not say) as numbers, None if malformed."""
    fields = [f.strip() for f in line.split(",")]
    if len(fields) != len(GPU_QUERY.split(",")):
        return None

    def number(text: str) -> float | None:
        try:
            return float(text)
        except ValueError:
            return None

    index, name, used, total, busy, temperature = fields
    if number(used) is None or number(total) is None:
        return None
    return {
        "index": int(number(index) or 0),
        "name": name,
        "memory_used_gib": round(number(used) / 1024, 1),
        "memory_total_gib": round(number(total) / 1024, 1),
        "utilization_percent": number(busy),
        "temperature_c": number(temperature),
    }
