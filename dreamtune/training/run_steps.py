"""The named steps of a training run, in the order ``training/run.py`` takes them: plan the
memory, prepare the photos, load the model and make it trainable, provide class images, build the
objective, set up the callbacks, run the loop (a stop or divergence becomes one sentence), export."""

from __future__ import annotations

import contextlib
import dataclasses
import signal
from dataclasses import dataclass
from pathlib import Path

import torch

from dreamtune.config import Config
from dreamtune.errors import TrainingDiverged
from dreamtune.methods import method_of
from dreamtune.models import quantize
from dreamtune.models.adapters import TrainableParts, make_trainable
from dreamtune.models.attention import use_short_attention_in_fp32
from dreamtune.models.components import Components
from dreamtune.models.loading import (
    ComponentDtypes,
    load_components,
    load_pending_denoiser,
    model_path,
    weight_dtype,
)
from dreamtune.models.precision import forward_in_weight_dtype
from dreamtune.sampling.pipeline import pipeline_from_components, sample
from dreamtune.training import checkpoint, memory_plan, offload, sharding
from dreamtune.training.assembly import RunPlan, place_frozen, settings_from
from dreamtune.training.callbacks import (
    Checkpointer,
    MetricLog,
    RestartOptimizer,
    TrackerLog,
    Validator,
    read_metric_log,
)
from dreamtune.training.checkpoint import TrainingState
from dreamtune.training.class_images import class_images_location, class_images_ready, provide_class_images
from dreamtune.training.instance_data import ensure_prepared, prepared_as_configured
from dreamtune.training.loop import LoopSettings, run_loop
from dreamtune.training.memory_report import MemoryReport, held_bytes
from dreamtune.training.outputs import export
from dreamtune.training.preflight import caption_list, check_captions
from dreamtune.training.report import write_run_report
from dreamtune.training.run_lock import RunStopped, StopOnSignal, StopRequested
from dreamtune.training.text_release import early_prompts, encode_and_free


def quiet(*_) -> None:
    """The log of a process that is not the main one."""


@dataclass(frozen=True)
class Photos:
    """The run's prepared photo folder (None where the method uses none) and its captions."""

    folder: Path | None
    captions: list[str]


def _renderer(
    components: Components,
    config: Config,
    parts: TrainableParts,
    resolution: int,
    steps: int | None = None,
    guidance_scale: float | None = None,
):
    guidance_scale = components.family.default_guidance if guidance_scale is None else guidance_scale
    scheduler = "default"
    if config.distill.steps:  # a few-step student is shown as it will sample
        from dreamtune.objectives.distill import few_step_sampling

        own = few_step_sampling(config, components)
        steps, guidance_scale, scheduler = own["steps"], own["guidance_scale"], own["scheduler"]

    def render(prompts: list[str], seeds: list[int]):
        prompts = [parts.rewrite_prompt(p) for p in prompts]
        pipeline = pipeline_from_components(components, scheduler)
        for module in parts.modules.values():
            module.eval()
        try:
            return sample(pipeline, prompts, seeds, steps or config.train.validation_steps, guidance_scale, resolution)
        finally:
            for module in parts.modules.values():
                module.train()

    return render


def photo_images(instance_dir: Path | None) -> list:
    from PIL import Image

    return (
        [Image.open(p).convert("RGB") for p in sorted((Path(instance_dir) / "images").glob("*"))]
        if instance_dir
        else []
    )


def _monitor(
    config: Config,
    components: Components,
    parts: TrainableParts,
    instance_dir: Path | None,
    output_dir: Path,
    main: bool,
    rewards=None,
):
    if not config.monitor.every:
        return None
    from dreamtune.evaluation.evaluate import load_features
    from dreamtune.training.monitor import Monitor

    m = config.monitor
    local = model_path(config.model.pretrained)
    features = load_features(m.clip or None, "none", local if local.is_dir() else None)
    identifier = parts.identifier(m.identifier)
    render = _renderer(components, config, parts, config.data.resolution, m.sample_steps, m.guidance_scale)
    (output_dir / "monitor").mkdir(parents=True, exist_ok=True)
    return Monitor(
        config,
        render,
        features,
        photo_images(instance_dir),
        parts.modules,
        output_dir / "monitor",
        identifier,
        enabled=main,
        rewards=rewards,
    )


def _load_model(config: Config, dtypes: ComponentDtypes, captions: list[str], output_dir: Path, log) -> Components:
    """The model in memory. Where every prompt of the run is known and the frozen text encoders may go,
    they are loaded, used and freed before the denoiser loads (training/text_release.py)."""
    from_scratch = config.model.from_scratch or method_of(config.method).starts_from_scratch
    ready = not config.prior.enabled or class_images_ready(config.prior, output_dir, config.data.resolution)
    prompts = early_prompts(config, captions, ready)
    components = load_components(
        dataclasses.replace(config.model, from_scratch=from_scratch), dtypes, denoiser_later=prompts is not None
    )
    if prompts is not None:
        later = components.extra.get("denoiser_pending", False)  # families that can load their denoiser afterwards
        freed = encode_and_free(config, components, prompts, before="loading the denoiser" if later else "step 1")
        if freed:
            log(freed)
    load_pending_denoiser(components, config.model, dtypes)
    return components


def prepare_photos(config: Config, plan: RunPlan, accelerator, output_dir: Path, log) -> Photos:
    """The photos prepared (by the main process) and their captions checked against the method."""
    main = accelerator.is_main_process
    instance_dir = None
    if plan.uses_photos:
        instance_dir = ensure_prepared(config, output_dir, log) if main else Path(config.data.instance_dir)
    accelerator.wait_for_everyone()
    if plan.uses_photos and not main and not prepared_as_configured(instance_dir, config):
        instance_dir = output_dir / "data"
    captions = caption_list(instance_dir, config.data.instance_prompt) if plan.uses_photos else []
    if plan.denoises:
        check_captions(config, captions, instance_dir)
    return Photos(instance_dir, captions)


def offload_applies(config: Config, device: torch.device) -> bool:
    """train.offload moves weights only where host and device memory differ (CUDA)."""
    return config.train.offload and device.type == "cuda"


def load_trainable_model(
    config: Config, captions: list[str], accelerator, output_dir: Path, log
) -> tuple[Components, TrainableParts]:
    """The model loaded in the run's dtypes with its training noise process, its trained parts made
    trainable (seeded), frozen parts placed, and the CPU / memory policies applied."""
    main = accelerator.is_main_process
    say = log if main else quiet
    torch.manual_seed(config.train.seed)
    dtypes = ComponentDtypes.for_training(
        method_of(config.method),
        config.method.train_text_encoder,
        config.train.mixed_precision,
        config.train.trainable_dtype,
    )
    components = _load_model(config, dtypes, captions, output_dir, say)
    components = dataclasses.replace(
        components, noise=components.family.noise_process(components.noise_scheduler, config.train.timestep_sampling)
    )
    quantized = quantize.describe(components, config.model) if main else None
    if quantized:
        log(quantized)
    torch.manual_seed(config.train.seed)  # LoRA / from-scratch initialisation is part of the run's seed
    parts = make_trainable(components, config)
    offloading = offload_applies(config, accelerator.device)
    moved = place_frozen(components, parts, accelerator, weight_dtype(config.train.mixed_precision), offloading)
    if config.train.offload and main:
        log(offload.sentence(moved, accelerator.device))
    if dtypes.denoiser == torch.bfloat16 and components.family.forward_in_bf16:
        forward_in_weight_dtype(components.denoiser, dtypes.denoiser)
    if accelerator.device.type == "cpu":
        use_short_attention_in_fp32(components.denoiser)
    if offloading or memory_plan.decide(config, components, parts, accelerator, log):
        components.denoiser.enable_gradient_checkpointing()
        for encoder in components.text_encoders:
            if any(p.requires_grad for p in encoder.parameters()):  # frozen ones keep no activations for a backward
                encoder.gradient_checkpointing_enable()
    return components, parts


def class_images(
    config: Config, plan: RunPlan, components: Components, accelerator, output_dir: Path, show_progress: bool, log
) -> Path | None:
    """Prior preservation's class images, generated (by the main process) where they are missing."""
    if not (config.prior.enabled and plan.class_images):
        return None
    if accelerator.is_main_process:
        provide_class_images(
            components, config.prior, output_dir, config.data.resolution, config.train.seed, show_progress, log
        )
    accelerator.wait_for_everyone()
    return class_images_location(config.prior, output_dir)


def sharding_on(config: Config, accelerator, log) -> bool:
    """Whether the trained weights are split across processes (train.shard=fsdp with several)."""
    sharded = config.train.shard == "fsdp" and accelerator.num_processes > 1
    if config.train.shard == "fsdp" and not sharded and accelerator.is_main_process:
        log(
            "note: train.shard=fsdp with one process: nothing to split, the run trains unsharded (launch it with "
            "accelerate launch --num_processes N)"
        )
    return sharded


@dataclass
class Callbacks:
    """What runs around every step: the metric log, the monitor (or None), and the ordered list the loop calls."""

    metric_log: MetricLog
    monitor: object
    stop: StopOnSignal
    ordered: list


def callbacks(
    config: Config,
    components: Components,
    parts: TrainableParts,
    photos: Photos,
    accelerator,
    output_dir: Path,
    sharded: bool,
    rewards,
    log,
) -> Callbacks:
    main = accelerator.is_main_process
    t = config.train
    device = accelerator.device
    metric_log = MetricLog(output_dir / "metrics.jsonl", enabled=main, memory=lambda: held_bytes(device))
    checkpointer = Checkpointer(output_dir, t.checkpoint_every, t.keep_checkpoints, enabled=main or sharded, write=main)
    validator = Validator(
        _renderer(components, config, parts, config.data.resolution),
        list(t.validation_prompts),
        list(t.validation_seeds),
        t.validate_every,
        output_dir / "validation",
        enabled=main,
    )
    monitor = _monitor(config, components, parts, photos.folder, output_dir, main, rewards)
    trackers = [TrackerLog(accelerator, t.log_every, enabled=main)] if t.log_with != "none" else []
    memory = MemoryReport(
        [components.denoiser, components.vae, *components.text_encoders], accelerator.device, t.steps, log, enabled=main
    )
    stop = StopOnSignal(enabled=main or sharded)
    restart = [RestartOptimizer(config.rl.start_step)] if config.rl.handover else []  # before the checkpointer
    ordered = [*restart, metric_log, memory, checkpointer, validator, *trackers, *([monitor] if monitor else []), stop]
    return Callbacks(metric_log, monitor, stop, ordered)


def loop_settings(config: Config, accelerator, show_progress: bool) -> LoopSettings:
    return settings_from(
        LoopSettings,
        config.train,
        process_index=accelerator.process_index,
        show_progress=show_progress and accelerator.is_main_process,
    )


def run_with_stops(
    objective,
    source,
    state: TrainingState,
    accelerator,
    settings: LoopSettings,
    around: Callbacks,
    config: Config,
    output_dir: Path,
    sharded: bool,
) -> None:
    """The loop; a stop the user asked for saves the step and pauses, a divergence names its likely cause."""
    main = accelerator.is_main_process
    t = config.train
    try:
        if around.monitor:
            around.monitor.observe(state.step)
        run_loop(objective, source, state, accelerator, settings, around.ordered)
    except StopRequested as request:
        saved = checkpoint.save(state, output_dir, max(1, t.keep_checkpoints), write=main) if main or sharded else None
        name = signal.Signals(request.signal_number).name
        raise RunStopped(
            f"paused after step {state.step} ({name}); {saved} holds it; continue with the same command "
            "and --resume latest.",
            request.signal_number,
        ) from None
    except TrainingDiverged as exc:
        last = checkpoint.list_checkpoints(output_dir)
        kept = f"the last good checkpoint {last[-1]} is intact" if last else "no checkpoint was written yet"
        overflow = " or fp16 overflow (try train.mixed_precision=bf16)" if t.mixed_precision == "fp16" else ""
        raise TrainingDiverged(
            f"{exc}: likely a learning rate too high (train.lr={t.lr}; try a tenth of it){overflow}; {kept}."
        ) from None
    finally:
        around.stop.restore()
    accelerator.wait_for_everyone()


def export_run(
    config: Config,
    components: Components,
    parts: TrainableParts,
    state: TrainingState,
    accelerator,
    output_dir: Path,
    monitor,
    captions: list[str],
    sharded: bool,
    log,
) -> Path:
    """The model folder, written once by the main process with whole weights; the report beside it."""
    main = accelerator.is_main_process
    model_dir = output_dir / "model"
    if sharded:  # the optimizer's work is done: its state goes before the main process gathers the whole weights
        for optimizer in state.optimizers.values():
            getattr(optimizer, "optimizer", optimizer).state.clear()
    with sharding.gathered([components.denoiser]) if sharded else contextlib.nullcontext():  # whole weights to export
        if main:
            selected = monitor.selection() if monitor else None
            if selected and selected["step"] is not None and monitor.restore_best():
                log(f"monitor selected step {selected['step']}: {selected['reason']}")
            model_dir = export(parts, state, config, output_dir, selected, captions[0] if captions else "")
            write_run_report(output_dir, read_metric_log(output_dir / "metrics.jsonl"), monitor, selected, config)
        accelerator.wait_for_everyone()  # the processes leave together: one that exits while another exports
    accelerator.end_training()  # once left its partner hung in gloo's teardown (a CI run's 300 s timeout)
    if accelerator.num_processes > 1 and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    return model_dir
