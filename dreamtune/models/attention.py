"""Attention kernel choice where PyTorch's default is slow: on CPU, the bf16/fp16 flash-attention
kernel runs its backward several times slower than the fp32 one when the key sequence is short
(measured on this project's CPU, fwd+bwd, B4 H4 d32: 64x64 tokens 6.1 ms bf16 vs 1.0 ms fp32;
64x32 3.3 vs 0.6; 256x256 10.6 vs 4.5), while for long self-attention (1024x1024 and up) bf16 wins,
and without a backward (sampling) bf16 is the faster one (64x64: 0.21 vs 0.43 ms). So on CPU,
attention that will be differentiated over at most ``SHORT_KEYS`` keys runs in fp32 and is cast back. Every model
family's attention ends in ``F.scaled_dot_product_attention`` (diffusers' processors or its
dispatcher); the mode below is entered by the attention processor itself (``ShortAttentionProcessor``,
installed on CPU training by ``use_short_attention_in_fp32``), so that a recomputation inside the
backward (gradient checkpointing, DRaFT's checkpointed sampler steps) takes the same path as the
forward did — a mode entered around the forward alone is not active there. GPUs keep PyTorch's choice.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import AttnProcessor2_0
from torch.overrides import TorchFunctionMode

SHORT_KEYS = 256


ARGUMENTS = ("query", "key", "value", "attn_mask", "dropout_p", "is_causal", "scale", "enable_gqa")


class ShortAttentionInFp32(TorchFunctionMode):
    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is not F.scaled_dot_product_attention:
            return func(*args, **kwargs)
        bound = {**dict(zip(ARGUMENTS, args)), **kwargs}
        query, key, value = bound["query"], bound["key"], bound["value"]
        needs_backward = torch.is_grad_enabled() and (query.requires_grad or key.requires_grad or value.requires_grad)
        if (not needs_backward or query.device.type != "cpu" or query.dtype not in (torch.bfloat16, torch.float16)
                or key.shape[-2] > SHORT_KEYS):
            return func(**bound)
        upcast = {name: (value.float() if isinstance(value, torch.Tensor) and value.is_floating_point() else value)
                  for name, value in bound.items()}
        with torch.autocast("cpu", enabled=False):
            return func(**upcast).to(query.dtype)


class ShortAttentionProcessor(AttnProcessor2_0):
    """diffusers' SDPA attention processor with the CPU policy above."""

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, *args, **kwargs):
        with ShortAttentionInFp32():
            return super().__call__(attn, hidden_states, encoder_hidden_states, attention_mask, temb, *args, **kwargs)


def use_short_attention_in_fp32(denoiser) -> int:
    """Give every plain SDPA processor of ``denoiser`` the CPU policy (others are left as they are);
    returns how many were replaced."""
    processors = getattr(denoiser, "attn_processors", None)
    if not processors:
        return 0
    replaced = {name: ShortAttentionProcessor() if type(p) is AttnProcessor2_0 else p for name, p in processors.items()}
    count = sum(type(p) is ShortAttentionProcessor for p in replaced.values())
    denoiser.set_attn_processor(replaced)   # (it empties the dict it is given)
    return count
