"""``train.shard: fsdp`` — a full fine-tune's weights, gradients and optimizer state split across the
processes of ``accelerate launch`` / ``torchrun`` with PyTorch's FSDP2 (``fully_shard``), the engine
accelerate and torchtitan build on: every block the model names as unsplittable (diffusers' and
transformers' ``_no_split_modules``: transformer blocks, ResNet blocks) is one unit, gathered for its
forward and backward and freed again; gradients are reduce-scattered, so each process steps only
its own slice. It runs on CUDA (NCCL) and on CPUs (gloo), which is how it is tested here.

Checkpoints stay the single-process files: weights and optimizer state are gathered into whole
tensors (collectives every process joins; the main process writes), and a resume hands each process
its slice of them again, so a sharded run resumes from its own checkpoints bit for bit and a
checkpoint does not depend on the number of processes. Export gathers the weights once the same way.
"""

from __future__ import annotations

import contextlib

from torch import nn

from dreamtune.errors import UserError


def _fsdp():
    from torch.distributed import fsdp

    return fsdp


def shard(module: nn.Module) -> nn.Module:
    """FSDP2 over ``module`` in place: each of its unsplittable blocks, then the whole."""
    fsdp = _fsdp()
    names = set(getattr(module, "_no_split_modules", None) or [])
    if not names:
        raise UserError(
            f"train.shard=fsdp needs the model's block classes (_no_split_modules) and {type(module).__name__} names none; "
            "set train.shard: none."
        )
    blocks = [m for m in module.modules() if type(m).__name__ in names and m is not module]
    for block in reversed(blocks):  # innermost first: a block inside another is its own unit
        if not isinstance(block, fsdp.FSDPModule):
            fsdp.fully_shard(block)
    fsdp.fully_shard(module)
    return module


def is_sharded(module: nn.Module) -> bool:
    return any(isinstance(m, _fsdp().FSDPModule) for m in module.modules())


def _options(**more):
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, cpu_offload=True, **more)


def whole_weights(module: nn.Module, names: list[str]) -> dict:
    """The trainable weights ``names`` as whole tensors (every process calls; the main one gets them)."""
    from torch.distributed.checkpoint.state_dict import get_model_state_dict

    full = get_model_state_dict(module, options=_options())
    return {name: full[name] for name in names if name in full}


def whole_optimizer_state(module: nn.Module, optimizer) -> dict:
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

    return get_optimizer_state_dict(module, optimizer, options=_options())


def load_whole_weights(module: nn.Module, weights: dict) -> None:
    """Every process read the same whole tensors; each keeps its slice."""
    from torch.distributed.checkpoint.state_dict import set_model_state_dict

    set_model_state_dict(module, weights, options=_options(strict=False))


def load_whole_optimizer_state(module: nn.Module, optimizer, state: dict) -> None:
    from torch.distributed.checkpoint.state_dict import set_optimizer_state_dict

    set_optimizer_state_dict(module, optimizer, state, options=_options())


@contextlib.contextmanager
def gathered(modules):
    """The sharded ``modules`` answer ``state_dict()`` with their whole weights while inside (what export
    saves); every process enters (the gathering is collective), the main one receives them."""
    from torch.distributed.checkpoint.state_dict import get_model_state_dict

    wholes = [(module, get_model_state_dict(module, options=_options())) for module in modules if is_sharded(module)]
    for module, whole in wholes:
        module.state_dict = lambda *args, whole=whole, **kwargs: whole
    try:
        yield
    finally:
        for module, _ in wholes:
            del module.state_dict
