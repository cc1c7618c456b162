"""``train.memory: auto`` on a CPU without bf16 instructions: compute in fp32 where it fits.

``train.mixed_precision: bf16`` is fast on CPUs with AMX or AVX512-BF16 (and on recent GPUs). On a CPU
with neither (AVX2 machines: most desktop and many cloud CPUs) PyTorch emulates bf16 arithmetic: the
miniature's UNet forward (batch 4) takes 973 ms in bf16 against 63 ms in fp32 on a 2-core AMD EPYC with
AVX2 only (``benchmarks/cpu_precision.py``). There bf16 is only a memory saving, so auto mode takes it only
when the run needs it: when the run's weights, gradients and optimizer state fit in fp32 (the same
estimate as training/memory_auto.py, with no other saving), it computes in fp32 and says so in one
line; an int8 or nf4 base stays quantized and computes in fp32 too (0.3 s against 5.8 s per miniature
step with an int8 base on that CPU). A run that needs bf16 to fit, asks for bf16 trained weights or an
fp8 base (fp8 weights compute in bf16) keeps bf16 (with a line saying it will be slow). Decided before
the Accelerator exists, since accelerate fixes the precision when it is built; a resumed run keeps the
precision its first part used.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from dreamtune.config import Config
from dreamtune.training import memory_auto

GIB = 2**30


def native_bf16() -> bool | None:
    """Whether this CPU has bf16 instructions (AVX512-BF16 or AMX); None where PyTorch cannot tell
    (not x86, or a build without the probes)."""
    probes = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    if any(probe is None for probe in probes) or not getattr(torch.cpu, "_is_avx2_supported", lambda: False)():
        return None
    return any(probe() for probe in probes)


def _fp32_need(config: Config) -> int | None:
    """Bytes the run needs for weights, gradients and optimizer state computed in fp32 (None: unknown sizes)."""
    run = memory_auto.run_sizes(config)
    if run is None:
        return None
    fp32 = memory_auto.with_settings(config, {"train.mixed_precision": "no"})
    return memory_auto.need(fp32, run.sizes, run.denoiser_name, run.text_names, run.early).peak


def precision_for_this_cpu(
    config: Config, output_dir: Path, resume: str | None, log, native: bool | None = None, free: int | None = None
) -> Config:
    """``config`` with ``train.mixed_precision: no`` where auto mode, a CPU without bf16 instructions and
    the room for fp32 make bf16 only a cost; otherwise as it is. ``native`` / ``free`` default to this
    machine's (given by tests to stand for another CPU)."""
    t = config.train
    if t.memory != "auto" or t.mixed_precision != "bf16" or torch.cuda.is_available() or "WORLD_SIZE" in os.environ:
        return config
    if resume:
        return memory_auto.kept_choices(config, output_dir / "config.yaml")
    native = native_bf16() if native is None else native
    if native is not False:
        return config
    slow = "this CPU has no bf16 instructions (AVX512-BF16 or AMX), so bf16 runs emulated, many times slower than fp32"
    if t.trainable_dtype == "bf16" or "fp8" in (config.model.quantize, config.model.quantize_text_encoders):
        log(f"{slow}; keeping bf16 (the run asks for bf16 trained weights or an fp8 base, which compute in bf16)")
        return config
    needed = _fp32_need(config)
    if needed is None:
        return config
    if free is None:
        from dreamtune.training.memory_plan import free_memory

        free = free_memory(torch.device("cpu"))
    budget = memory_auto.STATIC_SHARE * free
    if needed > budget:
        log(f"{slow}; keeping bf16: in fp32 the run needs ~{needed / GIB:.1f} GiB of {free / GIB:.1f} GiB free")
        return config
    log(
        f"{slow}: computing in fp32 (train.mixed_precision=no; ~{needed / GIB:.1f} GiB of {free / GIB:.1f} GiB free); "
        "train.memory: manual keeps bf16"
    )
    return memory_auto.with_settings(config, {"train.mixed_precision": "no"})
