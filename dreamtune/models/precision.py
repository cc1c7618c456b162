"""A frozen denoiser stored in bf16 runs its forward in bf16 outright instead of under autocast.

When only adapters (LoRA) or embeddings (textual inversion) train, every weight the denoiser's forward
touches is already bf16, so autocast only adds work: it re-checks and re-casts the inputs of every op
and runs the norms in fp32 with a cast on each side. Measured on this project's CPU (miniature UNet,
LoRA r4, batch 4, fwd+bwd+AdamW): 165 -> 135-155 ms per step. The LoRA layers still compute in fp32
(peft casts their input to their weights' dtype) and their gradients are fp32. Inputs are cast to the
weight dtype on the way in — activations and embeddings (floating tensors of two or more dimensions),
never timesteps, guidance or position ids, which lose precision in bf16.
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor, nn

KEPT_IN_FP32 = ("time_ids", "txt_ids", "img_ids")


def forward_in_weight_dtype(module: nn.Module, dtype: torch.dtype) -> None:
    """Make ``module``'s forward cast its activation inputs to ``dtype`` and run without autocast.
    Install it before ``accelerator.prepare`` wraps the forward, so that it runs inside that wrapper."""
    forward = module.forward
    device_type = next(module.parameters()).device.type

    def cast(value, name: str | None = None):
        if isinstance(value, dict):
            return {key: cast(item, key) for key, item in value.items()}
        if isinstance(value, Tensor) and value.is_floating_point() and value.ndim >= 2 and name not in KEPT_IN_FP32:
            return value.to(dtype)
        return value

    @functools.wraps(forward)
    def forward_without_autocast(*args, **kwargs):
        with torch.autocast(device_type, enabled=False):
            return forward(*[cast(a) for a in args], **{key: cast(v, key) for key, v in kwargs.items()})

    module.forward = forward_without_autocast
