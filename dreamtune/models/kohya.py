"""The kohya / LyCORIS LoRA file that ComfyUI, A1111 / Forge and most model sites load.

Key names follow what kohya's sd-scripts write, so every consumer's existing rules find them:

* UNet, SD 1.x / 2.x: ``lora_unet_<diffusers module path, '.' -> '_'>``
  (``lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_q``);
* UNet, SDXL: ``lora_unet_<original (LDM/SGM) module path, '.' -> '_'>``
  (``lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q``);
* text encoders: ``lora_te_`` (SD) or ``lora_te1_`` / ``lora_te2_`` (SDXL) + the CLIP module path.

Each module has ``.lora_down.weight`` (PEFT's ``lora_A``), ``.lora_up.weight`` (``lora_B``),
``.alpha`` (a scalar: the scale is alpha / rank, as in PEFT) and, for DoRA, ``.dora_scale``:
PEFT's magnitude vector shaped (out, 1[, 1, 1]) — the norm on the output axis, which is how
LyCORIS writes it and ComfyUI recognises it.
"""

from __future__ import annotations

import datetime
import json
import re

import torch
from torch import nn

RESNET_LDM_NAMES = {
    "norm1": "in_layers.0",
    "conv1": "in_layers.2",
    "time_emb_proj": "emb_layers.1",
    "norm2": "out_layers.0",
    "conv2": "out_layers.3",
    "conv_shortcut": "skip_connection",
}
TOP_LEVEL_LDM_NAMES = {
    "conv_in": "input_blocks.0.0",
    "time_embedding.linear_1": "time_embed.0",
    "time_embedding.linear_2": "time_embed.2",
    "add_embedding.linear_1": "label_emb.0.0",
    "add_embedding.linear_2": "label_emb.0.2",
    "conv_norm_out": "out.0",
    "conv_out": "out.2",
}


def _resnet_part(rest: str) -> str:
    head, _, tail = rest.partition(".")
    return ".".join(filter(None, [RESNET_LDM_NAMES.get(head, head), tail]))


def unet_ldm_name(name: str, layers_per_block: int, up_blocks_with_attention: set[int]) -> str:
    """A diffusers ``UNet2DConditionModel`` module/parameter path -> the original (LDM/SGM) path.

    Down block i holds ``layers_per_block`` resnet(+attention) slots and a downsampler, so its
    slots are input_blocks 1 + i*(L+1) + j; up blocks hold L+1 slots (output_blocks i*(L+1) + j),
    the upsampler sharing the last slot after its attention when there is one.
    """
    for prefix, target in TOP_LEVEL_LDM_NAMES.items():
        if name == prefix or name.startswith(prefix + "."):
            return target + name[len(prefix) :]
    if m := re.fullmatch(r"down_blocks\.(\d+)\.(attentions|resnets)\.(\d+)\.(.+)", name):
        block, kind, index, rest = int(m[1]), m[2], int(m[3]), m[4]
        slot = 1 + block * (layers_per_block + 1) + index
        return (
            f"input_blocks.{slot}.1.{rest}" if kind == "attentions" else f"input_blocks.{slot}.0.{_resnet_part(rest)}"
        )
    if m := re.fullmatch(r"down_blocks\.(\d+)\.downsamplers\.0\.conv(.*)", name):
        return f"input_blocks.{(int(m[1]) + 1) * (layers_per_block + 1)}.0.op{m[2]}"
    if m := re.fullmatch(r"mid_block\.(attentions|resnets)\.(\d+)\.(.+)", name):
        return (
            f"middle_block.1.{m[3]}" if m[1] == "attentions" else f"middle_block.{2 * int(m[2])}.{_resnet_part(m[3])}"
        )
    if m := re.fullmatch(r"up_blocks\.(\d+)\.(attentions|resnets)\.(\d+)\.(.+)", name):
        block, kind, index, rest = int(m[1]), m[2], int(m[3]), m[4]
        slot = block * (layers_per_block + 1) + index
        return (
            f"output_blocks.{slot}.1.{rest}" if kind == "attentions" else f"output_blocks.{slot}.0.{_resnet_part(rest)}"
        )
    if m := re.fullmatch(r"up_blocks\.(\d+)\.upsamplers\.0\.conv(.*)", name):
        block = int(m[1])
        slot = block * (layers_per_block + 1) + layers_per_block
        return f"output_blocks.{slot}.{2 if block in up_blocks_with_attention else 1}.conv{m[2]}"
    raise ValueError(f"no original-layout name for UNet module {name}")


def _lora_layers(module: nn.Module):
    """(module path, PEFT LoRA layer) for every layer with a 'default' adapter."""
    for name, layer in module.named_modules():
        if hasattr(layer, "lora_A") and "default" in getattr(layer, "lora_A", {}):
            yield name, layer


def _prefix(component: str, family) -> str:
    if component == "unet":
        return "lora_unet_"
    return family.kohya_text_prefixes[family.text_encoder_names.index(component)]


def kohya_state_dict(
    modules: dict[str, nn.Module], family, dtype: torch.dtype = torch.float16
) -> dict[str, torch.Tensor]:
    """Tensors of a kohya-format LoRA from PEFT-adapted modules {"unet"|"text_encoder"|"text_encoder_2": module};
    ``family``: the model's ModelFamily (its kohya_* attributes say the names)."""
    tensors: dict[str, torch.Tensor] = {}
    for component, module in modules.items():
        names = unet_ldm_namer(module) if component == "unet" and family.kohya_unet_original_names else (lambda n: n)
        if component != "unet":  # transformers 5 dropped CLIPTextModel's text_model level; the format keeps it
            names = lambda n: n if n.startswith("text_model.") else f"text_model.{n}"
        for path, layer in _lora_layers(module):
            key = _prefix(component, family) + names(path).replace(".", "_")
            down, up = layer.lora_A["default"].weight, layer.lora_B["default"].weight
            tensors[f"{key}.lora_down.weight"] = down.detach().to(dtype).contiguous()
            tensors[f"{key}.lora_up.weight"] = up.detach().to(dtype).contiguous()
            tensors[f"{key}.alpha"] = torch.tensor(float(layer.lora_alpha["default"]), dtype=dtype)
            magnitudes = getattr(layer, "lora_magnitude_vector", {})
            if "default" in magnitudes:
                weight = layer.get_base_layer().weight
                scale = magnitudes["default"].weight.detach().reshape(weight.shape[0], *[1] * (weight.dim() - 1))
                tensors[f"{key}.dora_scale"] = scale.to(dtype).contiguous()
    return tensors


def unet_ldm_namer(unet: nn.Module):
    config = unet.config
    layers = config.layers_per_block if isinstance(config.layers_per_block, int) else config.layers_per_block[0]
    with_attention = {i for i, kind in enumerate(config.up_block_types) if "CrossAttn" in kind}
    return lambda path: unet_ldm_name(path, layers, with_attention)


MODELSPEC_PREDICTION = {"epsilon": "epsilon", "v_prediction": "v"}  # diffusers' name -> the model spec's


def kohya_metadata(
    family,
    prediction_type: str,
    rank: int,
    alpha: float,
    dora: bool,
    title: str,
    base_model: str,
    steps: int,
    trains_text_encoder: bool,
    usage_hint: str = "",
) -> dict[str, str]:
    """The ``ss_*`` (kohya) and ``modelspec.*`` (Stability's model spec) header fields, all strings;
    ``usage_hint`` (a few-step model's sampling) goes to modelspec.usage_hint and the training comment."""
    base_version, architecture = family.kohya_versions[prediction_type]
    metadata = {
        "ss_network_module": "lycoris.kohya" if dora else "networks.lora",
        "ss_network_dim": str(rank),
        "ss_network_alpha": str(alpha),
        "ss_base_model_version": base_version,
        "ss_v2": str(base_version == "sd_v2"),
        "ss_sd_model_name": base_model,
        "ss_output_name": title,
        "ss_steps": str(steps),
        "ss_network_train_unet_only": str(not trains_text_encoder),
        "ss_training_comment": "trained with dreamtune",
        "modelspec.sai_model_spec": "1.0.0",
        "modelspec.architecture": f"{architecture}/lora",
        "modelspec.implementation": family.modelspec_implementation,
        "modelspec.title": title,
        "modelspec.prediction_type": MODELSPEC_PREDICTION[prediction_type],
        "modelspec.date": datetime.date.today().isoformat(),
    }
    if usage_hint:
        metadata["modelspec.usage_hint"] = usage_hint
        metadata["ss_training_comment"] += f"; {usage_hint}"
    if dora:
        metadata["ss_network_args"] = json.dumps({"algo": "lora", "dora_wd": "True"})
    return metadata
