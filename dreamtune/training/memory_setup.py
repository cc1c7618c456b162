"""The run's memory decisions before anything loads: ``train.memory: auto`` (training/memory_auto.py, from
the model files' headers and the device's free memory) and ``train.release_freed_memory`` (a CPU process
setting), called by ``training/run.py``."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from dreamtune.config import Config
from dreamtune.training import memory_auto


def plan_memory(config: Config, accelerator, output_dir: Path, resume: str | None, log) -> Config:
    """train.memory: auto — the cheapest savings that fit, decided before loading (training/memory_auto.py);
    then train.release_freed_memory applied (a CPU process setting, before anything loads)."""
    config = _planned(config, accelerator, output_dir, resume, log)
    if config.train.release_freed_memory:
        from dreamtune.models.loading import RETURNED_BUFFER_BYTES, return_large_buffers_at_once

        if accelerator.device.type != "cpu":
            log("train.release_freed_memory: a CPU setting; on CUDA PyTorch's own allocator manages the GPU's memory")
        elif return_large_buffers_at_once():
            log(
                f"freed buffers of {RETURNED_BUFFER_BYTES // 2**20} MiB or more go back to the system at once "
                "(train.release_freed_memory): less memory, slower steps"
            )
        else:
            log("train.release_freed_memory: this C library has no mallopt (not glibc); nothing changed")
    return config


def _planned(config: Config, accelerator, output_dir: Path, resume: str | None, log) -> Config:
    if config.train.memory != "auto":
        return config
    if resume:
        return memory_auto.kept_choices(config, output_dir / "config.yaml")
    from dreamtune.training import memory_plan

    run = memory_auto.run_sizes(config)
    if run is None:
        return _sharded_on_cpu(config, accelerator, log)
    free = accelerator.gather(
        torch.tensor([memory_plan.free_memory(accelerator.device)], device=accelerator.device)
    ).min()
    if accelerator.device.type == "cpu":  # the processes on one machine share its memory
        free = free // int(os.environ.get("LOCAL_WORLD_SIZE", accelerator.num_processes))
    where = (
        f"{accelerator.device}"
        if accelerator.device.type == "cuda"
        else "this machine" + (" per process" if accelerator.num_processes > 1 else "")
    )
    chosen, sentence = memory_auto.choose(
        config,
        run.sizes,
        run.denoiser_name,
        run.text_names,
        run.early,
        int(free),
        where,
        accelerator.num_processes,
        cuda=accelerator.device.type == "cuda",
    )
    log(sentence)
    return _sharded_on_cpu(chosen, accelerator, log)


def _sharded_on_cpu(config: Config, accelerator, log) -> Config:
    """Each process of a sharded run on a CPU loads the whole model, shards it and frees the rest; glibc keeps
    such freed buffers in its heap (~1.3 GiB a process for SD 1.5), so they are returned to the system at once."""
    sharded = config.train.shard == "fsdp" and accelerator.num_processes > 1
    if not sharded or accelerator.device.type != "cpu" or config.train.release_freed_memory:
        return config
    if accelerator.is_main_process:
        log(
            "memory auto: each process loads the whole model before sharding it, so freed buffers go back to the "
            "system at once (train.release_freed_memory=true)"
        )
    return memory_auto.with_settings(config, {"train.release_freed_memory": True})
