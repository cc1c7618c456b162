"""Full-size models too large to build whole in this machine's memory, written with random weights as
sharded fp16 safetensors folders with their index, as sharded downloads are laid out: the model is made
on the meta device and its layers are given memory, initialised and written one at a time.

Used by `full_size_smoke.py` (FLUX.1-dev's 12 B transformer, Qwen-Image's 20 B transformer and its
Qwen2.5-VL-7B text encoder) and `flux_width_probe.py`. Nothing here is a measurement.
"""

from __future__ import annotations

import gc
import json
from pathlib import Path

SHARD_BYTES = 5 * 2**30  # downloads ship 5-10 GB shards; each is held whole while written

# Qwen-Image's published architecture (transformer/config.json and text_encoder/config.json of the download)
QWEN_IMAGE_TRANSFORMER = dict(
    patch_size=2,
    in_channels=64,
    out_channels=16,
    num_layers=60,
    attention_head_dim=128,
    num_attention_heads=24,
    joint_attention_dim=3584,
    guidance_embeds=False,
    axes_dims_rope=(16, 56, 56),
)
QWEN25_VL_7B_TEXT = dict(
    vocab_size=152064,
    hidden_size=3584,
    intermediate_size=18944,
    num_hidden_layers=28,
    num_attention_heads=28,
    num_key_value_heads=4,
    max_position_embeddings=128000,
    rms_norm_eps=1e-6,
    rope_parameters={"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [16, 24, 24]},
    tie_word_embeddings=False,
)
QWEN25_VL_7B_VISION = dict(
    depth=32,
    hidden_size=1280,
    intermediate_size=3420,
    num_heads=16,
    out_hidden_size=3584,
    patch_size=14,
    spatial_merge_size=2,
    temporal_patch_size=2,
    window_size=112,
    fullatt_block_indexes=[7, 15, 23, 31],
)


def _initialise(module) -> None:
    """Random weights for one layer's own parameters (already given memory)."""
    import torch
    from torch import nn

    # torch's own layers, whose reset_parameters touches only their own weights
    if isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Embedding, nn.LayerNorm, nn.GroupNorm)):
        module.reset_parameters()
        return
    for name, parameter in module.named_parameters(recurse=False):
        with torch.no_grad():
            if parameter.dim() == 1:  # norms' scales and biases
                parameter.fill_(0.0 if name == "bias" else 1.0)
            else:
                parameter.normal_(0.0, 0.02)


def write_random_shards(model, target: Path, stem: str) -> Path:
    """Write ``model`` (made under ``accelerate.init_empty_weights``: parameters on the meta device) as
    fp16 shards ``{stem}-0000i-of-0000n.safetensors`` and ``{stem}.safetensors.index.json`` in
    ``target``, one layer in memory at a time. Buffers the model keeps in its checkpoint are written as
    they are; its config is the caller's to write."""
    import torch
    from safetensors.torch import save_file

    target.mkdir(parents=True, exist_ok=True)
    persistent_buffers = {
        key: value for key, value in model.state_dict().items() if not value.is_meta
    }  # init_empty_weights leaves buffers real
    shards, current, weight_map = [], {}, {}

    def flush():
        if current:
            name = f"{stem}-part{len(shards) + 1:05d}.safetensors"
            save_file(current, str(target / name), metadata={"format": "pt"})
            shards.append(name)
            weight_map.update({key: name for key in current})
            current.clear()
            gc.collect()

    seen = set()
    for module_name, module in model.named_modules():
        own = [(n, p) for n, p in module.named_parameters(recurse=False) if id(p) not in seen]
        if not own:
            continue
        seen.update(id(p) for _, p in own)
        buffers = {n: b for n, b in module.named_buffers(recurse=False)}
        module.to_empty(device="cpu", recurse=False)
        _initialise(module)
        prefix = f"{module_name}." if module_name else ""
        for name, _ in own:
            current[prefix + name] = module.get_parameter(name).detach().to(torch.float16).contiguous()
        module.to_empty(device="meta", recurse=False)  # its fp32 weights go: only the shard being filled stays
        for name, buffer in buffers.items():
            module._buffers[name] = buffer
        if sum(v.numel() * v.element_size() for v in current.values()) >= SHARD_BYTES:
            flush()
    for key, value in persistent_buffers.items():
        current[key] = value.to(torch.float16) if value.is_floating_point() else value
    flush()
    total, final_names = len(shards), {}
    for index, name in enumerate(shards, 1):
        final_names[name] = f"{stem}-{index:05d}-of-{total:05d}.safetensors"
        (target / name).rename(target / final_names[name])
    size = sum((target / f).stat().st_size for f in final_names.values())
    index = {"metadata": {"total_size": size}, "weight_map": {k: final_names[v] for k, v in sorted(weight_map.items())}}
    (target / f"{stem}.safetensors.index.json").write_text(json.dumps(index, indent=2))
    return target


def build_qwen_image(folder: Path, layers: int = 60, text_layers: int = 28, vision_depth: int = 32) -> Path:
    """Qwen-Image, random fp16 weights: the VAE, scheduler and tokenizer whole; the 20 B transformer (41 GB in
    fp16) and Qwen2.5-VL-7B (16.6 GB) shard by shard. The tokenizer is byte-level (random weights need no
    vocabulary), so the pipeline's prompt template costs ~135 caption tokens instead of ~20. ``layers``,
    ``text_layers`` and ``vision_depth`` make a model of the same width with fewer layers (a quick check)."""
    import torch
    from accelerate import init_empty_weights
    from diffusers import (
        AutoencoderKLQwenImage,
        QwenImagePipeline,
        QwenImageTransformer2DModel,
    )
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    from dreamtune.models.tiny_flow import flow_pipeline
    from dreamtune.models.tiny_text import build_qwen_tokenizer

    torch.manual_seed(0)
    tokenizer = build_qwen_tokenizer(folder.parent / ".qwen-image-tokenizer", model_max_length=2048)
    end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    stand_in = flow_pipeline("qwen-image", folder.parent / ".qwen-image-stand-in")  # replaced below
    torch.set_default_dtype(torch.float16)
    try:
        vae = AutoencoderKLQwenImage()  # its defaults are the published VAE
    finally:
        torch.set_default_dtype(torch.float32)
    pipeline = QwenImagePipeline(
        scheduler=stand_in.scheduler,  # the tiny pipeline's scheduler is the published configuration
        vae=vae,
        text_encoder=stand_in.text_encoder,
        tokenizer=tokenizer,
        transformer=stand_in.transformer,
    )
    pipeline.save_pretrained(folder, safe_serialization=True)
    del pipeline, stand_in, vae
    gc.collect()
    for part in ("transformer", "text_encoder"):
        for old in (folder / part).glob("*.safetensors*"):
            old.unlink()
    with init_empty_weights():
        transformer = QwenImageTransformer2DModel(**{**QWEN_IMAGE_TRANSFORMER, "num_layers": layers})
    transformer.save_config(folder / "transformer")
    write_random_shards(transformer, folder / "transformer", "diffusion_pytorch_model")
    del transformer
    text = {**QWEN25_VL_7B_TEXT, "num_hidden_layers": text_layers, "bos_token_id": end, "eos_token_id": end}
    config = Qwen2_5_VLConfig(
        text_config=text,
        vision_config={**QWEN25_VL_7B_VISION, "depth": vision_depth},
        vocab_size=text["vocab_size"],
        tie_word_embeddings=False,
    )
    with init_empty_weights():
        encoder = Qwen2_5_VLForConditionalGeneration(config)
    config.save_pretrained(folder / "text_encoder")
    write_random_shards(encoder, folder / "text_encoder", "model")
    return folder
