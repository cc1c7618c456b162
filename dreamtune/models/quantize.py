"""Weight-only quantization of frozen weights (``model.quantize`` for the denoiser,
``model.quantize_text_encoders`` for the text encoders) through torchao, applied by diffusers' and
transformers' own ``TorchAoConfig`` while the weights load: each layer is quantized as it arrives,
so the full-precision model never sits in memory at once.

* ``int8``: per-channel int8 weights, computed in the activations' dtype (CPU and CUDA).
* ``fp8``: float8 (e4m3) weights; computes in bf16, so it needs ``train.mixed_precision: bf16``.
* ``nf4``: QLoRA's 4-bit NormalFloat with double-quantized scales (blocks of 64). A layer whose
  weight does not split into such blocks stays in the weight dtype.

LoRA / DoRA layers wrap the quantized layers and train in fp32; the exported files hold only the
adapters, so they load on the unquantized base as any other dreamtune LoRA does.
"""

from __future__ import annotations

import torch
from torch import nn

from dreamtune.errors import UserError

KINDS = ("int8", "fp8", "nf4")
NF4_BLOCK = 64  # weights per 4-bit block (QLoRA's)
NF4_MAX_SCALER_BLOCK = 256  # block scales quantized in groups of up to this many (QLoRA's double quantization)


def require_torchao():
    try:
        import torchao  # noqa: F401
    except ImportError:
        raise UserError(
            "model.quantize needs the torchao library; install it with pip install 'dreamtune[quantize]' "
            "(or set model.quantize: none)."
        ) from None


def _nf4(weight_numel: int):
    """The NF4 config for a weight of this size, or None when it does not split into 64-weight blocks."""
    from torchao.prototype._nf4tensor_api import NF4WeightOnlyConfig

    if weight_numel % NF4_BLOCK:
        return None
    blocks, scaler = weight_numel // NF4_BLOCK, NF4_MAX_SCALER_BLOCK
    while blocks % scaler:
        scaler //= 2
    config = NF4WeightOnlyConfig()
    config.block_size, config.scaler_block_size = NF4_BLOCK, scaler
    return config


def layer_config(kind: str, layer: nn.Linear):
    """torchao's config for one linear layer of a model (None: leave it unquantized)."""
    from torchao.quantization import Float8WeightOnlyConfig, Int8WeightOnlyConfig

    if kind == "nf4":
        return _nf4(layer.weight.numel())
    return {"int8": Int8WeightOnlyConfig, "fp8": Float8WeightOnlyConfig}[kind]()


def loading_arguments(cls, location: str, subfolder: str, kind: str, revision: str | None = None) -> dict:
    """``from_pretrained`` keyword arguments that quantize ``cls``'s linear layers while loading."""
    if kind == "none":
        return {}
    require_torchao()
    from torchao.quantization import FqnToConfig

    from dreamtune.models.loading import empty_model

    model = empty_model(cls, location, subfolder, revision)
    # a weight shared with an embedding (a language model's tied output head) stays as it is
    shared = {id(p) for m in model.modules() if not isinstance(m, nn.Linear) for p in m.parameters(recurse=False)}
    plan = {
        f"{name}.weight": None if id(layer.weight) in shared else layer_config(kind, layer)
        for name, layer in model.named_modules()
        if isinstance(layer, nn.Linear)
    }
    if cls.__module__.startswith("diffusers"):
        from diffusers import TorchAoConfig
    else:
        from transformers import TorchAoConfig
    return {"quantization_config": TorchAoConfig(FqnToConfig(plan))}


def is_quantized(tensor: torch.Tensor) -> bool:
    """A torchao tensor subclass (its data must not be cast like a plain tensor's)."""
    data = tensor.data if isinstance(tensor, nn.Parameter) else tensor
    return type(data) is not torch.Tensor


def quantized_share(module: nn.Module) -> float:
    """The share of ``module``'s linear layers whose weights are quantized (for the run's note)."""
    layers = [m for m in module.modules() if isinstance(m, nn.Linear) and not m.weight.requires_grad]
    return sum(is_quantized(m.weight) for m in layers) / max(1, len(layers))


def plain_tensors(tensor: torch.Tensor) -> list[torch.Tensor]:
    """The ordinary tensors that hold a tensor's data (a quantized weight keeps several inside)."""
    if type(tensor) in (torch.Tensor, nn.Parameter) or not hasattr(tensor, "__tensor_flatten__"):
        return [tensor]
    if hasattr(tensor, "to_local"):  # a sharded weight (FSDP2's DTensor): this process's slice
        return plain_tensors(tensor.to_local())
    names, _ = tensor.__tensor_flatten__()
    return [plain for name in names for plain in plain_tensors(getattr(tensor, name))]


def describe(components, model_config) -> str | None:
    """One line saying what was quantized (None when nothing was asked)."""
    parts = [
        (model_config.quantize, "denoiser", [components.denoiser]),
        (model_config.quantize_text_encoders, "text encoders", components.text_encoders),
    ]
    said = [
        f"{name} {kind} ({100 * sum(quantized_share(m) for m in modules) / max(1, len(modules)):.0f} % of its linear layers, "
        f"{sum(weight_bytes(m) for m in modules) / 2**30:.2f} GiB{_freed(modules)})"
        for kind, name, modules in parts
        if kind != "none"
    ]
    return f"quantized frozen weights: {', '.join(said)}" if said else None


def _freed(modules) -> str:
    return ", freed after encoding" if modules and all(p.is_meta for m in modules for p in m.parameters()) else ""


def weight_bytes(module: nn.Module) -> int:
    """The bytes ``module``'s parameters and buffers hold, quantized ones as stored."""
    tensors = [*module.parameters(), *module.buffers()]
    return sum(t.numel() * t.element_size() for tensor in tensors for t in plain_tensors(tensor))
