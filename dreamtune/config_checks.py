"""Checks across config sections that would crowd config.py: each refusal one sentence naming the
setting and the fix (called from ``Config.__post_init__``)."""
from __future__ import annotations

from dreamtune.errors import UserError


def check_quantization(config) -> None:
    """Quantization applies to frozen weights only, and fp8 weights compute in bf16."""
    m = config.model
    full = config.method.kind in ("dreambooth", "scratch") or m.from_scratch
    if m.quantize != "none" and full:
        raise UserError(f"model.quantize={m.quantize} quantizes frozen weights, but method {config.method.kind} trains the denoiser's "
                        "weights themselves; set model.quantize: none, or train a LoRA (method.kind: lora) on the quantized base.")
    if m.quantize_text_encoders != "none" and (config.method.kind == "textual_inversion" or (full and config.method.train_text_encoder)):
        raise UserError(f"model.quantize_text_encoders={m.quantize_text_encoders} cannot be combined with {config.method.kind}, which "
                        "trains inside the text encoders; set model.quantize_text_encoders: none.")
    if "fp8" in (m.quantize, m.quantize_text_encoders) and config.train.mixed_precision != "bf16":
        raise UserError(f"fp8 weights compute in bf16, and train.mixed_precision is {config.train.mixed_precision}; "
                        "set train.mixed_precision: bf16, or quantize to int8 instead.")
