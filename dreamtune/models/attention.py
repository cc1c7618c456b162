"""Attention kernel choice where PyTorch's default is slow: on CPU, the bf16/fp16 flash-attention
kernel runs its backward several times slower than the fp32 one when the key sequence is short
(measured on this project's CPU, fwd+bwd, B4 H4 d32: 64x64 tokens 6.1 ms bf16 vs 1.0 ms fp32;
64x32 3.3 vs 0.6; 256x256 10.6 vs 4.5), while for long self-attention (1024x1024 and up) bf16 wins,
and without a backward (sampling) bf16 is the faster one (64x64: 0.21 vs 0.43 ms). So on CPU,
attention that will be differentiated over at most ``SHORT_KEYS`` keys runs in fp32 and is cast back
(``short_attention``).

The UNets' attention processor (``ShortAttentionProcessor``, installed on CPU training by
``use_short_attention_in_fp32``) calls it directly, so that a recomputation inside the backward
(gradient checkpointing, DRaFT's checkpointed sampler steps) takes the same path as the forward did.
It is diffusers' standard SDPA attention written out once, with only the kernel call changed: an
earlier version wrapped diffusers' processor in a TorchFunctionMode, which sent every torch call of
the processor (projections, LoRA branches, reshapes) through Python — 15 % of a miniature training
step (benchmarks/step_floor.py). GPUs and the transformer families (SD3, FLUX) keep PyTorch's choice.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import AttnProcessor2_0

SHORT_KEYS = 256


def short_attention(query, key, value, attn_mask=None, scale=None):
    """``F.scaled_dot_product_attention`` with the CPU policy above; same dtype out as in."""
    needs_backward = torch.is_grad_enabled() and (query.requires_grad or key.requires_grad or value.requires_grad)
    if (
        not needs_backward
        or query.device.type != "cpu"
        or query.dtype not in (torch.bfloat16, torch.float16)
        or key.shape[-2] > SHORT_KEYS
    ):
        return F.scaled_dot_product_attention(query, key, value, attn_mask=attn_mask, scale=scale)
    if attn_mask is not None and attn_mask.is_floating_point():
        attn_mask = attn_mask.float()
    with torch.autocast("cpu", enabled=False):
        return F.scaled_dot_product_attention(
            query.float(), key.float(), value.float(), attn_mask=attn_mask, scale=scale
        ).to(query.dtype)


class ShortAttentionProcessor(AttnProcessor2_0):
    """Self- and cross-attention of diffusers' ``Attention`` blocks (the UNets'), through ``short_attention``."""

    def __call__(
        self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, *args, **kwargs
    ):
        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        image_shape = hidden_states.shape if hidden_states.ndim == 4 else None
        if image_shape is not None:  # (B, C, H, W) -> (B, H*W, C)
            hidden_states = hidden_states.flatten(2).transpose(1, 2)
        batch = hidden_states.shape[0]
        if attention_mask is not None:
            keys = hidden_states.shape[1] if encoder_hidden_states is None else encoder_hidden_states.shape[1]
            attention_mask = attn.prepare_attention_mask(attention_mask, keys, batch)
            attention_mask = attention_mask.view(batch, attn.heads, -1, attention_mask.shape[-1])
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
        query = attn.to_q(hidden_states)
        if encoder_hidden_states is None:
            encoder_hidden_states = hidden_states
        elif attn.norm_cross:
            encoder_hidden_states = attn.norm_encoder_hidden_states(encoder_hidden_states)
        key, value = attn.to_k(encoder_hidden_states), attn.to_v(encoder_hidden_states)
        head_dim = key.shape[-1] // attn.heads

        def heads(x):  # (B, N, heads*d) -> (B, heads, N, d)
            return x.view(batch, -1, attn.heads, head_dim).transpose(1, 2)

        query, key, value = heads(query), heads(key), heads(value)
        if attn.norm_q is not None:
            query = attn.norm_q(query)
        if attn.norm_k is not None:
            key = attn.norm_k(key)
        out = short_attention(query, key, value, attn_mask=attention_mask)
        out = out.transpose(1, 2).reshape(batch, -1, attn.heads * head_dim).to(query.dtype)
        out = attn.to_out[1](attn.to_out[0](out))  # projection, dropout
        if image_shape is not None:
            out = out.transpose(1, 2).reshape(image_shape)
        if attn.residual_connection:
            out = out + residual
        return out / attn.rescale_output_factor


def use_short_attention_in_fp32(denoiser) -> int:
    """Give every plain SDPA processor of ``denoiser`` the CPU policy (others are left as they are);
    returns how many were replaced."""
    processors = getattr(denoiser, "attn_processors", None)
    if not processors:
        return 0
    replaced = {name: ShortAttentionProcessor() if type(p) is AttnProcessor2_0 else p for name, p in processors.items()}
    count = sum(type(p) is ShortAttentionProcessor for p in replaced.values())
    denoiser.set_attn_processor(replaced)  # (it empties the dict it is given)
    return count
