"""The one training loop. Every method is an objective plus a batch source; nothing else.

run_loop -> run_step -> forward_backward, as in guided-diffusion's train_util; callbacks
(logging, checkpoints, validation, monitors) observe each step, as in minGPT's trainer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Protocol

import torch
from tqdm.auto import tqdm

from dreamtune.errors import TrainingDiverged
from dreamtune.objectives.base import Objective
from dreamtune.training.checkpoint import TrainingState


class BatchSource(Protocol):
    def batch(self, step: int) -> Mapping:
        """The micro-batch for micro-step ``step``; a pure function of the step."""


class Callback(Protocol):
    def on_step_end(self, state: TrainingState, metrics: dict[str, float]) -> None: ...


@dataclass(frozen=True)
class LoopSettings:
    steps: int
    grad_accum: int
    max_grad_norm: float
    seed: int
    log_every: int  # steps between loss reports on the progress bar
    process_index: int = 0
    show_progress: bool = True


def forward_backward(
    objective: Objective, batch: Mapping, micro_step: int, accelerator, scale: float
) -> dict[str, float]:
    with accelerator.autocast():
        output = objective(batch, micro_step)
    total = sum(output.losses.values())
    value = float(total.detach())
    if not math.isfinite(value):
        raise TrainingDiverged(f"the loss became {value}")
    accelerator.backward(total * scale)
    return output.metrics


def run_step(
    objective: Objective, source: BatchSource, state: TrainingState, accelerator, settings: LoopSettings
) -> dict[str, float]:
    """One optimizer step: accumulate ``grad_accum`` micro-batches, clip, step every optimizer."""
    # dropout and other global-RNG users draw from a per-step seed: resuming is exact
    torch.manual_seed((settings.seed * 1_000_003 + state.step * 7_919 + settings.process_index) % (2**63 - 1))
    totals: dict[str, float] = {}
    for k in range(settings.grad_accum):
        micro_step = state.step * settings.grad_accum + k
        try:
            metrics = forward_backward(
                objective, source.batch(micro_step), micro_step, accelerator, 1.0 / settings.grad_accum
            )
        except TrainingDiverged as exc:  # name the step the user sees (1-based), not the internal micro-step
            within = f" (micro-batch {k + 1} of {settings.grad_accum})" if settings.grad_accum > 1 else ""
            raise TrainingDiverged(f"{exc} at step {state.step + 1}{within}") from None
        for key, value in metrics.items():
            totals[key] = totals.get(key, 0.0) + value / settings.grad_accum
    for name, optimizer in state.optimizers.items():
        if name in state.fused:  # already stepped, weight by weight, inside the backward pass
            totals[f"grad_norm/{name}"] = state.fused[name].take_norm()
        else:
            step_optimizer(optimizer, accelerator, settings.max_grad_norm, totals, name)
        state.schedules[name].step()
        totals[f"lr/{name}"] = float(state.schedules[name].get_last_lr()[0])  # torchao keeps rates as tensors
        if name in state.emas:
            state.emas[name].update()
    return totals


def step_optimizer(optimizer, accelerator, max_grad_norm: float, totals: dict[str, float], name: str) -> None:
    """Clip the gradients of ``optimizer``'s parameters together, step, and drop the gradients."""
    params = [
        p for group in optimizer.param_groups for p in group["params"]
    ]  # the trainable ones, without walking the model
    if max_grad_norm and max_grad_norm > 0:
        norm = accelerator.clip_grad_norm_(params, max_grad_norm)
        totals[f"grad_norm/{name}"] = float(
            norm.full_tensor() if hasattr(norm, "full_tensor") else norm
        )  # sharded: a DTensor
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def run_loop(
    objective: Objective,
    source: BatchSource,
    state: TrainingState,
    accelerator,
    settings: LoopSettings,
    callbacks: list[Callback] = (),
) -> TrainingState:
    """Train from ``state.step`` to ``settings.steps``; callbacks see every finished step."""
    progress = tqdm(
        total=settings.steps,
        initial=state.step,
        desc="training",
        unit="step",
        disable=not settings.show_progress,
        dynamic_ncols=True,
    )
    for module in state.modules.values():
        module.train()
    try:
        while state.step < settings.steps:
            metrics = run_step(objective, source, state, accelerator, settings)
            state.step += 1
            progress.update(1)
            if "loss" in metrics and state.step % settings.log_every == 0:
                progress.set_postfix(loss=f"{metrics['loss']:.4f}")
            for callback in callbacks:
                callback.on_step_end(state, metrics)
    finally:
        progress.close()  # an error message then starts on a line of its own
    return state
