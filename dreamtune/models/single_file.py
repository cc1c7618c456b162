"""Single-file checkpoints in the original (LDM / SGM) layout — what most people download and
what ComfyUI / A1111 load — read through diffusers' ``from_single_file`` and written here.

Written layout (the one diffusers' single-file loader, ComfyUI and A1111 read):
    model.diffusion_model.*                 UNet (names: ``kohya.unet_ldm_name``)
    first_stage_model.*                     VAE (encoder.down.i.block.j, mid.attn_1.{q,k,v,proj_out} as 1x1 convs)
    cond_stage_model.transformer.*          SD 1.x CLIP-L
    cond_stage_model.model.*                SD 2.x OpenCLIP (fused in_proj)
    conditioner.embedders.0.transformer.*   SDXL CLIP-L;  conditioner.embedders.1.model.* SDXL OpenCLIP-G
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from torch import nn

from dreamtune.models.kohya import unet_ldm_namer

VAE_RESNET = {"conv_shortcut": "nin_shortcut"}
VAE_ATTENTION = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}
OPENCLIP_LAYER = {
    "layer_norm1": "ln_1",
    "layer_norm2": "ln_2",
    "mlp.fc1": "mlp.c_fc",
    "mlp.fc2": "mlp.c_proj",
    "self_attn.out_proj": "attn.out_proj",
}


def _vae_name(name: str, num_up_blocks: int) -> str:
    top = {"encoder.conv_norm_out": "encoder.norm_out", "decoder.conv_norm_out": "decoder.norm_out"}
    for old, new in top.items():
        if name.startswith(old + "."):
            return new + name[len(old) :]
    if m := re.fullmatch(r"(encoder|decoder)\.(down|up)_blocks\.(\d+)\.resnets\.(\d+)\.(\w+)\.(\w+)", name):
        block = int(m[3]) if m[2] == "down" else num_up_blocks - 1 - int(m[3])
        return f"{m[1]}.{m[2]}.{block}.block.{m[4]}.{VAE_RESNET.get(m[5], m[5])}.{m[6]}"
    if m := re.fullmatch(r"encoder\.down_blocks\.(\d+)\.downsamplers\.0\.conv\.(\w+)", name):
        return f"encoder.down.{m[1]}.downsample.conv.{m[2]}"
    if m := re.fullmatch(r"decoder\.up_blocks\.(\d+)\.upsamplers\.0\.conv\.(\w+)", name):
        return f"decoder.up.{num_up_blocks - 1 - int(m[1])}.upsample.conv.{m[2]}"
    if m := re.fullmatch(r"(encoder|decoder)\.mid_block\.resnets\.(\d+)\.(\w+)\.(\w+)", name):
        return f"{m[1]}.mid.block_{int(m[2]) + 1}.{VAE_RESNET.get(m[3], m[3])}.{m[4]}"
    if m := re.fullmatch(r"(encoder|decoder)\.mid_block\.attentions\.0\.(.+)\.(weight|bias)", name):
        return f"{m[1]}.mid.attn_1.{VAE_ATTENTION[m[2]]}.{m[3]}"
    return name  # conv_in, conv_out, quant_conv, post_quant_conv keep their names


def _vae_state(vae: nn.Module) -> dict[str, torch.Tensor]:
    out = {}
    num_up = len(vae.config.up_block_types)
    for name, tensor in vae.state_dict().items():
        target = _vae_name(name, num_up)
        if ".mid.attn_1." in target and target.endswith("weight") and tensor.dim() == 2:
            tensor = tensor[:, :, None, None]  # the original attention projections are 1x1 convs
        out["first_stage_model." + target] = tensor
    return out


def _text_model_keys(encoder: nn.Module) -> dict[str, torch.Tensor]:
    """State dict with the ``text_model.`` level (transformers 5's CLIPTextModel drops it)."""
    return {
        k if k.startswith(("text_model.", "text_projection")) else f"text_model.{k}": v
        for k, v in encoder.state_dict().items()
    }


def _openclip_state(encoder: nn.Module, prefix: str) -> dict[str, torch.Tensor]:
    """A transformers CLIP text model -> OpenCLIP keys (q/k/v fused into in_proj)."""
    state, out = _text_model_keys(encoder), {}
    fused: dict[str, dict[str, torch.Tensor]] = {}
    for name, tensor in state.items():
        if name == "text_projection.weight":
            out[prefix + "text_projection"] = tensor.T.contiguous()
        elif name == "text_model.embeddings.position_embedding.weight":
            out[prefix + "positional_embedding"] = tensor
        elif name == "text_model.embeddings.token_embedding.weight":
            out[prefix + "token_embedding.weight"] = tensor
        elif name.startswith("text_model.final_layer_norm."):
            out[prefix + "ln_final." + name.rsplit(".", 1)[1]] = tensor
        elif m := re.fullmatch(r"text_model\.encoder\.layers\.(\d+)\.self_attn\.([qkv])_proj\.(weight|bias)", name):
            fused.setdefault(f"{prefix}transformer.resblocks.{m[1]}.attn.in_proj_{m[3]}", {})[m[2]] = tensor
        elif m := re.fullmatch(r"text_model\.encoder\.layers\.(\d+)\.(.+)\.(weight|bias)", name):
            out[f"{prefix}transformer.resblocks.{m[1]}.{OPENCLIP_LAYER[m[2]]}.{m[3]}"] = tensor
    for name, parts in fused.items():
        out[name] = torch.cat([parts["q"], parts["k"], parts["v"]], dim=0)
    return out


def original_layout_state_dict(
    unet: nn.Module, vae: nn.Module, text_encoders: list[nn.Module], family
) -> dict[str, torch.Tensor]:
    """Every weight of an SD 1.x / 2.x / SDXL pipeline under its original single-file name (``family``: its ModelFamily)."""
    namer = unet_ldm_namer(unet)
    state = {"model.diffusion_model." + namer(k): v for k, v in unet.state_dict().items()}
    state.update(_vae_state(vae))
    if family.single_file_conditioner:
        state.update(
            {"conditioner.embedders.0.transformer." + k: v for k, v in _text_model_keys(text_encoders[0]).items()}
        )
        state.update(_openclip_state(text_encoders[1], "conditioner.embedders.1.model."))
    elif text_encoders[0].config.hidden_act == "gelu":  # SD 2.x: OpenCLIP-H (GELU); SD 1.x: CLIP-L (quick GELU)
        state.update(_openclip_state(text_encoders[0], "cond_stage_model.model."))
    else:
        state.update({"cond_stage_model.transformer." + k: v for k, v in _text_model_keys(text_encoders[0]).items()})
    return state


def save_single_file(pipeline, path: Path, dtype: torch.dtype = torch.float16) -> Path:
    """Write an SD 1.x / 2.x / SDXL diffusers pipeline as one original-layout ``.safetensors`` file (fp16 by default)."""
    from safetensors.torch import save_file

    from dreamtune.models.families import family_for

    family = family_for({"_class_name": type(pipeline).__name__})
    encoders = [getattr(pipeline, name) for name in family.text_encoder_names]
    state = original_layout_state_dict(pipeline.unet, pipeline.vae, encoders, family)
    save_file({k: v.detach().to(dtype).contiguous() for k, v in state.items()}, str(path))
    return Path(path)


def is_single_file(path: Path) -> bool:
    return path.is_file() and path.suffix in (".safetensors", ".ckpt", ".pt", ".pth")


def single_file_layout(path: Path) -> str:
    """ "sd1", "sd2", "sdxl" or another layout's name, from the checkpoint's header (no weights read)."""
    from safetensors import safe_open

    with safe_open(str(path), "pt") as handle:
        keys = set(handle.keys())
        conv_in = (
            handle.get_slice("model.diffusion_model.input_blocks.0.0.weight").get_shape()
            if "model.diffusion_model.input_blocks.0.0.weight" in keys
            else None
        )
    if conv_in is None:
        raise ValueError("no original-layout UNet keys (model.diffusion_model.*)")
    if conv_in[1] != 4:
        return f"inpainting or other {conv_in[1]}-channel UNet"
    if any(k.startswith("conditioner.embedders.1.model.") for k in keys):
        return "sdxl"
    if any(k.startswith("conditioner.embedders.0.model.") for k in keys):
        return "sdxl-refiner"
    if any(k.startswith("cond_stage_model.model.") for k in keys):
        return "sd2"
    if any(k.startswith("cond_stage_model.transformer.") for k in keys):
        return "sd1"
    raise ValueError("no text-encoder keys of SD 1.x, 2.x or SDXL")


def single_file_family(path: Path):
    """The ModelFamily of an original-layout checkpoint, from its key names (read from the header only)."""
    from dreamtune.models.families import StableDiffusion, StableDiffusionXL

    return StableDiffusionXL() if single_file_layout(path).startswith("sdxl") else StableDiffusion()


def export_single_file(model_dir: Path, out: Path | None = None, dtype: torch.dtype = torch.float16) -> Path:
    """A full fine-tune's pipeline folder -> one original-layout file that ComfyUI / A1111 load."""
    from dreamtune.atomic import atomic_file
    from dreamtune.config import ModelConfig
    from dreamtune.errors import UserError
    from dreamtune.models.loading import load_base_pipeline

    model_dir = Path(model_dir)
    if not (model_dir / "model_index.json").is_file():
        raise UserError(
            f"{model_dir} is not a full fine-tune (no model_index.json); --single-file exports DreamBooth / "
            "from-scratch runs (a LoRA already has its kohya-format file beside it)."
        )
    out = Path(out) if out else model_dir.parent / f"{model_dir.resolve().parent.name}.safetensors"
    if out.exists():
        raise UserError(f"{out} already exists; choose another --out (dreamtune never overwrites a file).")
    pipeline = load_base_pipeline(ModelConfig(pretrained=str(model_dir)), torch.float32)
    with atomic_file(out) as temp:
        save_single_file(pipeline, temp, dtype)
    return out
