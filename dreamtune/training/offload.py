"""``train.offload`` — frozen weights kept in host memory and copied to the GPU at each use.

A LoRA on a model whose frozen weights do not fit the GPU (FLUX.1-dev's 24 GB on a 16 GB card) can
still train if each frozen weight is on the GPU only while a layer computes with it. Here every frozen
weight inside the denoiser's gradient-checkpointed blocks (``ModelFamily.offload_blocks``) and every
frozen VAE weight leaves the module's parameters for pinned host memory; the layer reads it through a
property that copies it to the device at that moment. Gradient checkpointing is switched on with it, so
autograd keeps none of these copies: the backward recomputes each block, copying its weights again, and
frees them when the block's gradient is done. The GPU holds one block's weights at a time, at the cost
of copying the frozen weights twice per step (forward and recompute).

Why not diffusers' group offloading (``apply_group_offloading``): it moves whole modules, so a LoRA's
trained weights inside a block would travel (and with CUDA streams be restored from a stale host copy),
and it swaps the storage of weights that autograd saved for the backward, which then reads host memory.
A copy made at use is what a training step needs; it is also exact (the same values reach the layer).

On CPU the weights already live in host memory: the run says so in one line and changes nothing.
"""

from __future__ import annotations

import re

import torch
from torch import nn

from dreamtune.models.quantize import is_quantized, plain_tensors

_SUBCLASSES: dict[tuple[type, tuple[str, ...]], type] = {}


def _host_class(cls: type, names: tuple[str, ...]) -> type:
    """``cls`` whose ``names`` attributes are read from host memory and copied to the compute device."""
    key = (cls, names)
    if key not in _SUBCLASSES:
        properties = {
            name: property(lambda self, n=name: self._host_weights[n].to(self._compute_device, non_blocking=True))
            for name in names
        }
        _SUBCLASSES[key] = type(f"HostResident{cls.__name__}", (cls,), properties)
    return _SUBCLASSES[key]


def _frozen_names(module: nn.Module) -> tuple[str, ...]:
    return tuple(name for name, p in module.named_parameters(recurse=False) if p is not None and not p.requires_grad)


def keep_in_host_memory(module: nn.Module, device: torch.device) -> int:
    """Move ``module``'s own frozen parameters to (pinned, on CUDA) host memory, read at each use as
    copies on ``device``; returns the bytes moved. Trainable parameters and buffers stay where they are."""
    names = _frozen_names(module)
    if not names or hasattr(module, "_host_weights"):
        return 0
    held, moved = {}, 0
    for name in names:
        parameter = module._parameters.pop(name)
        plain = not is_quantized(parameter)
        data = (parameter.data if plain else parameter.detach()).to("cpu")  # a quantized weight's .data is a shell
        if device.type == "cuda" and plain:
            data = data.pin_memory()  # page-locked: the copy to the GPU runs at full bus speed
        held[name] = data
        moved += sum(t.numel() * t.element_size() for t in plain_tensors(data))
    module._host_weights = held
    module._compute_device = device
    module.__class__ = _host_class(type(module), names)
    return moved


def restore(module: nn.Module) -> None:
    """Undo ``keep_in_host_memory`` on every submodule: the weights are parameters again (in host memory)."""
    for sub in module.modules():
        held = sub.__dict__.pop("_host_weights", None)
        if held is None:
            continue
        sub.__class__ = sub.__class__.__mro__[1]
        del sub._compute_device
        for name, data in held.items():
            sub.register_parameter(name, nn.Parameter(data, requires_grad=False))


def offload_blocks(denoiser: nn.Module, pattern: str | None) -> list[nn.Module]:
    """The denoiser's submodules whose names match ``pattern`` (the family's checkpointed blocks; None: none)."""
    if not pattern:
        return []
    matcher = re.compile(pattern)
    return [module for name, module in denoiser.named_modules() if matcher.fullmatch(name)]


def offload_frozen(components, device: torch.device) -> tuple[int, int]:
    """Frozen weights of the denoiser's checkpointed blocks and of the VAE into host memory (module doc);
    returns the bytes moved (denoiser, VAE). The VAE module that holds its first parameter stays, so the
    device diffusers reads from ``vae.device`` is still the compute device."""
    denoiser_bytes = sum(
        keep_in_host_memory(sub, device)
        for block in offload_blocks(components.denoiser, components.family.offload_blocks)
        for sub in block.modules()
    )
    vae = components.vae
    first = next(vae.parameters())
    vae_bytes = sum(
        keep_in_host_memory(sub, device)
        for sub in vae.modules()
        if not any(p is first for p in sub.parameters(recurse=False))
    )
    return denoiser_bytes, vae_bytes


def sentence(moved: tuple[int, int] | None, device: torch.device) -> str:
    if moved is None:
        return "train.offload: on CPU every weight already lives in host memory; nothing to move"
    denoiser, vae = (b / 2**30 for b in moved)
    return (
        f"offload: {denoiser:.2f} GiB of frozen denoiser weights and {vae:.2f} GiB of VAE weights kept in host memory, "
        f"copied to {device} at each use (gradient checkpointing on, so the GPU holds one block's weights at a time)"
    )
