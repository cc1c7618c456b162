"""Optimizers and learning-rate schedules, built per optimizer name of an objective."""

from __future__ import annotations

import torch
from torch import nn

from dreamtune.config import TrainConfig
from dreamtune.errors import UserError


def trainable_parameters(module: nn.Module) -> list[tuple[str, nn.Parameter]]:
    return [(name, p) for name, p in module.named_parameters() if p.requires_grad]


def build_optimizer(module: nn.Module, train: TrainConfig, lr: float | None = None) -> torch.optim.Optimizer:
    """AdamW (or bitsandbytes' 8-bit AdamW, or torch's Adafactor) over the trainable parameters of ``module``;
    parameters under a ``text_encoder`` prefix get ``train.text_encoder_lr`` when set."""
    lr = lr if lr is not None else train.lr
    named = trainable_parameters(module)
    if not named:
        raise UserError("the chosen method leaves no parameter to train; check method.kind and its settings.")
    text_lr = train.text_encoder_lr if train.text_encoder_lr is not None else lr
    groups = [
        {"params": [p for n, p in named if not n.startswith("text_encoder")], "lr": lr},
        {"params": [p for n, p in named if n.startswith("text_encoder")], "lr": text_lr},
    ]
    groups = [g for g in groups if g["params"]]
    kwargs = dict(betas=(train.adam_beta1, train.adam_beta2), weight_decay=train.weight_decay)
    if (
        train.trainable_dtype == "bf16"
    ):  # bf16 weights: updates added with stochastic rounding, so small ones are not lost
        return _torchao_optimizer(train.optimizer)(groups, **kwargs, bf16_stochastic_round=True)
    if train.optimizer == "adamw8bit":
        try:
            import bitsandbytes
        except ImportError:
            raise UserError(
                "train.optimizer is adamw8bit but bitsandbytes is not installed; "
                "pip install 'dreamtune[8bit]' or use train.optimizer=adamw."
            ) from None
        return bitsandbytes.optim.AdamW8bit(groups, **kwargs)
    if train.optimizer == "adafactor":  # row and column second-moment factors: a few bytes per row, not 8 per weight
        return torch.optim.Adafactor(groups, weight_decay=train.weight_decay)
    # fused: one kernel for every parameter (CPU and CUDA); bitwise deterministic, so resuming stays exact
    fused = all(
        p.device.type in ("cpu", "cuda")
        and p.dtype in (torch.float32, torch.float16, torch.bfloat16)
        and type(p).__name__ != "DTensor"
        for _, p in named
    )  # sharded weights (FSDP2) take the foreach kernels
    return torch.optim.AdamW(groups, **kwargs, fused=fused or None)


def _torchao_optimizer(name: str):
    try:
        from torchao import optim
    except ImportError:
        raise UserError(
            "train.trainable_dtype=bf16 updates weights with torchao's stochastic rounding and torchao is not installed; "
            "pip install 'dreamtune[quantize]' or set train.trainable_dtype: fp32."
        ) from None
    return {"adamw": optim._AdamW, "adamw8bit": optim.AdamW8bit}[name]


class FusedUpdate:
    """The optimizer step fused into the backward pass (``train.fused_update``): each weight is
    clipped (on its own, to ``max_grad_norm``) and stepped by a post-accumulate-grad hook as soon as
    its gradient is complete, and the gradient is dropped at once, so a full fine-tune never holds
    every gradient together. The optimizer, its state and its checkpoints are the ordinary ones:
    during a hook its parameter group is narrowed to the one weight, so the step touches nothing else."""

    def __init__(self, optimizer: torch.optim.Optimizer, max_grad_norm: float):
        self.optimizer = optimizer
        self.max_grad_norm = max_grad_norm
        self.squared_norm = torch.zeros(())
        self._hooks = [
            p.register_post_accumulate_grad_hook(self._hook(group))
            for group in optimizer.param_groups
            for p in group["params"]
        ]

    def _hook(self, group: dict):
        def step_one(parameter: torch.Tensor) -> None:
            norm = parameter.grad.detach().float().norm()
            self.squared_norm = self.squared_norm.to(norm.device) + norm.square()
            if self.max_grad_norm and self.max_grad_norm > 0:
                parameter.grad.mul_(torch.clamp(self.max_grad_norm / (norm + 1e-6), max=1.0).to(parameter.grad.dtype))
            everyone, group["params"] = group["params"], [parameter]
            try:
                self.optimizer.step()
            finally:
                group["params"] = everyone
            parameter.grad = None

        return step_one

    def take_norm(self) -> float:
        """The step's gradient norm before clipping (all weights together), and a fresh count."""
        norm, self.squared_norm = float(self.squared_norm.sqrt()), torch.zeros(())
        return norm


def build_schedule(optimizer: torch.optim.Optimizer, train: TrainConfig, switch: tuple[int, float] | None = None):
    """``train.lr_scheduler``; ``switch`` = (step, factor): from optimizer step ``step`` on the rate
    is multiplied by ``factor`` (rl.lr when a reward joins at rl.start_step)."""
    from diffusers.optimization import get_scheduler

    schedule = get_scheduler(
        train.lr_scheduler, optimizer=optimizer, num_warmup_steps=train.warmup_steps, num_training_steps=train.steps
    )
    if switch:
        at, factor = switch
        # plain closures: LambdaLR's state_dict leaves functions out, and a resumed run rebuilds them the same way
        schedule.lr_lambdas = [
            (lambda step, f=f: f(step) * (factor if step >= at else 1.0)) for f in schedule.lr_lambdas
        ]
    return schedule


def build_training_state(objective, train: TrainConfig, accelerator, switch: tuple[int, float] | None = None):
    """Optimizer, LR schedule (and EMA) for every trainable module the objective names; ``switch``
    (build_schedule) applies to the model's schedule, not to a discriminator's."""
    from dreamtune.training.checkpoint import TrainingState
    from dreamtune.training.ema import EMA

    modules = objective.trainable_modules()
    rates = objective.learning_rates()
    optimizers, schedules, emas, fused = {}, {}, {}, {}
    for name, module in modules.items():
        optimizer = build_optimizer(module, train, rates.get(name))
        schedules[name] = build_schedule(optimizer, train, switch if name == "model" else None)
        optimizers[name] = accelerator.prepare(optimizer)
        if train.fused_update:
            fused[name] = FusedUpdate(optimizer, train.max_grad_norm)
        if train.ema_decay and name == "model":  # EMA of the model only (not of a discriminator)
            emas[name] = EMA(module, train.ema_decay)
    extras = objective.checkpoint_extras()
    return TrainingState(modules, optimizers, schedules, emas, extras=extras, fused=fused)
