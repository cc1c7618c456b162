"""``dreamtune train``: build the pieces from a config and hand them to the one loop.

config -> data (prepare, class images) -> models (load, make trainable)
       -> objective + batch source (training/assembly.py) -> loop -> export

``train`` reads as the run's script; each step is a function of ``training/run_steps.py``.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from dreamtune.atomic import claim_output_dir
from dreamtune.config import Config
from dreamtune.errors import UserError
from dreamtune.models.adapters import TrainableParts
from dreamtune.models.components import Components
from dreamtune.models.loading import resolve_model
from dreamtune.training import checkpoint
from dreamtune.training import run_steps as steps
from dreamtune.training.assembly import Ingredients, RunPlan, build, wrap_trainable
from dreamtune.training.checkpoint import TrainingState
from dreamtune.training.cpu_precision import precision_for_this_cpu
from dreamtune.training.memory_setup import plan_memory
from dreamtune.training.optim import build_training_state
from dreamtune.training.outputs import save_resolved_config
from dreamtune.training.preflight import tracker_arguments, tracker_config
from dreamtune.training.run_lock import RunLock, refuse_earlier_run, sweep_leftovers
from dreamtune.training.text_release import release_text_encoders


@dataclass
class RunResult:
    output_dir: Path
    model_dir: Path
    history: list[dict]
    state: TrainingState
    components: Components
    parts: TrainableParts


def train(
    config: Config, resume: str | None = None, show_progress: bool = True, log=print, replace: bool = False
) -> RunResult:
    """One training run into ``config.train.output_dir``. ``replace`` lets a caller that owns the
    folder (the demo) start over in it; otherwise an earlier run there is refused."""
    output_dir = Path(config.train.output_dir)
    config = precision_for_this_cpu(config, output_dir, resume, log)  # before accelerate fixes the precision
    accelerator = _accelerator(config, log)
    main = accelerator.is_main_process
    say = log if main else steps.quiet
    with _claimed(output_dir, accelerator, resume, replace, config, log):
        config = plan_memory(config, accelerator, output_dir, resume, say)
        plan = RunPlan.of(config)
        photos = steps.prepare_photos(config, plan, accelerator, output_dir, log)
        components, parts = steps.load_trainable_model(config, photos.captions, accelerator, output_dir, log)
        class_dir = steps.class_images(config, plan, components, accelerator, output_dir, show_progress, log)
        if config.train.compile:
            components.denoiser.compile()  # in place: parameter names, checkpoints and exports stay as they are
        sharded = steps.sharding_on(config, accelerator, log)
        cache = Path(config.data.cache_dir or output_dir / "cache")
        trainable = wrap_trainable(components, accelerator, sharded)
        ingredients = Ingredients(
            config,
            components,
            trainable,
            parts,
            accelerator,
            photos.folder,
            class_dir,
            cache,
            steps.photo_images(photos.folder),
        )
        objective, source, rewards = build(ingredients, plan)
        released = release_text_encoders(config, components, objective, source)
        if released and main:
            log(released)
        state = _training_state(config, objective, accelerator, output_dir, resume, log)
        around = steps.callbacks(config, components, parts, photos, accelerator, output_dir, sharded, rewards, log)
        settings = steps.loop_settings(config, accelerator, show_progress)
        steps.run_with_stops(objective, source, state, accelerator, settings, around, config, output_dir, sharded)
        model_dir = steps.export_run(
            config, components, parts, state, accelerator, output_dir, around.monitor, photos.captions, sharded, log
        )
    return RunResult(output_dir, model_dir, around.metric_log.history, state, components, parts)


def _accelerator(config: Config, log):
    """accelerate's Accelerator for this run; refusals of what this machine or launch cannot do."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState
    from accelerate.utils import AutocastKwargs

    if config.train.mixed_precision == "fp16" and not torch.cuda.is_available():
        raise UserError(
            "train.mixed_precision=fp16 needs a CUDA GPU and this machine has none; "
            "set train.mixed_precision=bf16 (fast on CPUs with AMX) or train.mixed_precision=no."
        )
    if "WORLD_SIZE" not in os.environ:  # a second run in one process may use another precision
        AcceleratorState._reset_state(reset_partial_state=True)
    # without cpu=True accelerate ignores torchrun's WORLD_SIZE on GPU-less machines. Autocast's cast cache
    # would keep a bf16 copy of every trained weight until the forward ends (checkpointed or not): half the
    # trained weights' fp32 size more in a full fine-tune, and under FSDP a copy of the *whole* model in each
    # process, which no sharding removes (SD 1.5, 2 processes: 9.60 -> 9.01 GiB each). A training forward casts
    # each weight once anyway; a sampled rollout recasts its trained weights (LoRA: small) at every step.
    accelerator = Accelerator(
        mixed_precision=config.train.mixed_precision,
        cpu=not torch.cuda.is_available(),
        kwargs_handlers=[AutocastKwargs(cache_enabled=False)],
        **tracker_arguments(config.train.log_with, Path(config.train.output_dir)),
    )
    if config.train.fused_update and accelerator.num_processes > 1:
        raise UserError(
            f"train.fused_update steps each weight before the {accelerator.num_processes} processes have averaged "
            "its gradient; set train.fused_update: false for a multi-process run."
        )
    if accelerator.is_main_process:
        log(
            f"training on {accelerator.num_processes} process(es), device "
            f"{accelerator.device}, mixed precision {accelerator.mixed_precision}"
        )
    return accelerator


@contextlib.contextmanager
def _claimed(output_dir: Path, accelerator, resume: str | None, replace: bool, config: Config, log):
    """The output folder checked, claimed and locked (by the main process) for the run's length."""
    resolve_model(config.model)  # a wrong model path fails before any work is done
    if not resume and not replace:
        refuse_earlier_run(output_dir)
    lock = None
    if accelerator.is_main_process:
        claim_output_dir(output_dir, "train.output_dir")
        lock = RunLock(output_dir).acquire()
        swept = sweep_leftovers(output_dir)
        if swept:
            log(f"removed {len(swept)} unfinished temp file(s) of an interrupted earlier run: {', '.join(swept[:3])}")
    accelerator.wait_for_everyone()
    try:
        yield
    finally:
        if lock:
            lock.release()


def _training_state(config: Config, objective, accelerator, output_dir: Path, resume: str | None, log) -> TrainingState:
    """Optimizers and schedulers for the objective's parts, restored from a checkpoint on resume;
    the resolved config saved and the trackers started."""
    switch = (config.rl.start_step, config.rl.lr / config.train.lr) if config.rl.lr is not None else None
    state = build_training_state(objective, config.train, accelerator, switch)
    if resume:
        found = checkpoint.resume(state, output_dir, resume, log)
        log(f"resumed from {found} at step {state.step}")
    if accelerator.is_main_process:
        save_resolved_config(config, output_dir)
    if config.train.log_with != "none":
        accelerator.init_trackers(output_dir.resolve().name, config=tracker_config(config))
    return state
