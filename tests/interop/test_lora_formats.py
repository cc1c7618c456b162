"""The LoRA files load where people use them, at the strength they were trained at.

* ``pytorch_lora_weights.safetensors`` through diffusers' ``load_lora_weights`` (alpha != rank
  must round-trip exactly: without the adapter metadata diffusers assumes alpha = rank);
* the kohya-format file through diffusers' own kohya loader, and by the key rules of
  ComfyUI (``comfy/lora.py``: ``model_lora_keys_unet`` / ``model_lora_keys_clip``, LoRA and
  DoRA ``weight_decompose`` on the output axis) and A1111 (``extensions-builtin/Lora/networks.py``:
  ``convert_diffusers_name_to_compvis``), re-implemented here from their documented behaviour.
"""

from __future__ import annotations

import re

import pytest
import torch
from diffusers import DiffusionPipeline, UNet2DConditionModel
from safetensors import safe_open
from safetensors.torch import load_file

from dreamtune import config
from dreamtune.models.kohya import unet_ldm_namer
from dreamtune.training.run import train
from tests.conftest import tiny_overrides

COMFY_CLIP_MODULES = (
    "mlp_fc1",
    "mlp_fc2",
    "self_attn_k_proj",
    "self_attn_q_proj",
    "self_attn_v_proj",
    "self_attn_out_proj",
)


def _train_lora(tiny_models, family, photos, tmp_path, dora=False, targets="to_q,to_k,to_v,to_out.0,conv1"):
    overrides = tiny_overrides(
        tiny_models[family],
        photos,
        tmp_path / "my run",
        **{"train.steps": 3, "train.lr": 1e-2, "data.instance_prompt": "a photo of sks dog"},
    )
    overrides += [
        "method.lora.rank=4",
        "method.lora.alpha=16",
        "method.lora.text_encoder=true",
        f"method.lora.dora={str(dora).lower()}",
        f"method.lora.target_modules=[{targets}]",
    ]
    return train(config.load(None, overrides), show_progress=False, log=lambda *_: None)


def _unet_inputs(unet):
    generator = torch.Generator().manual_seed(0)
    sample = torch.randn(1, 4, 8, 8, generator=generator)
    hidden = torch.randn(1, 77, unet.config.cross_attention_dim, generator=generator)
    extra = {}
    if unet.config.addition_embed_type == "text_time":
        extra = {
            "added_cond_kwargs": {
                "text_embeds": torch.randn(1, 32, generator=generator),
                "time_ids": torch.randn(1, 6, generator=generator),
            }
        }
    return sample, torch.tensor([500]), hidden, extra


@torch.no_grad()
def _unet_output(unet):
    sample, timestep, hidden, extra = _unet_inputs(unet)
    return unet.eval()(sample, timestep, hidden, **extra).sample


@torch.no_grad()
def _text_output(encoder):
    return encoder.eval()(torch.tensor([[1, 5, 9, 30, 2]])).last_hidden_state


def _kohya_file(model_dir):
    files = [p for p in model_dir.glob("*.safetensors") if p.name != "pytorch_lora_weights.safetensors"]
    assert len(files) == 1, files
    return files[0]


@pytest.mark.parametrize("family", ["sd1", "sdxl"])
def test_peft_file_alpha_not_rank_round_trips_exactly(tiny_models, family, photos, tmp_path):
    result = _train_lora(tiny_models, family, photos, tmp_path)
    pipeline = DiffusionPipeline.from_pretrained(str(tiny_models[family]))
    pipeline.load_lora_weights(str(result.model_dir), weight_name="pytorch_lora_weights.safetensors")
    assert torch.equal(_unet_output(pipeline.unet), _unet_output(result.components.denoiser))
    assert torch.equal(_text_output(pipeline.text_encoder), _text_output(result.components.text_encoders[0]))


@pytest.mark.parametrize("family", ["sd1", "sd2-v", "sdxl"])
def test_kohya_file_loads_in_diffusers_kohya_loader(tiny_models, family, photos, tmp_path):
    import os

    old_umask = os.umask(0o022)
    try:
        result = _train_lora(tiny_models, family, photos, tmp_path)
    finally:
        os.umask(old_umask)
    kohya = _kohya_file(result.model_dir)
    assert kohya.name == "my_run.safetensors"
    assert result.model_dir.stat().st_mode & 0o777 == 0o755 and kohya.stat().st_mode & 0o777 == 0o644  # others can read
    base = DiffusionPipeline.from_pretrained(str(tiny_models[family]))
    untouched = _unet_output(base.unet)
    base.load_lora_weights(str(kohya.parent), weight_name=kohya.name)
    trained = _unet_output(result.components.denoiser)
    loaded = _unet_output(base.unet)
    # fp16 file: the loaded model is the trained one up to fp16 rounding, far from the base
    assert (loaded - trained).abs().max() < 2e-3 * trained.abs().max()
    assert (untouched - trained).abs().mean() > 50 * (loaded - trained).abs().mean()
    assert torch.allclose(_text_output(base.text_encoder), _text_output(result.components.text_encoders[0]), atol=2e-3)
    with safe_open(str(kohya), "pt") as handle:
        metadata = handle.metadata()
        assert {handle.get_tensor(k).dtype for k in handle.keys()} == {torch.float16}
    assert metadata["ss_network_dim"] == "4" and metadata["ss_network_alpha"] == "16.0"
    assert metadata["modelspec.architecture"].endswith("/lora")
    assert metadata["ss_v2"] == str(family == "sd2-v")


def _ldm_names(unet) -> dict[str, str]:
    """LDM parameter name -> diffusers parameter name, checked against diffusers' own converter
    of original-layout checkpoints (what ``from_single_file`` runs)."""
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint

    namer = unet_ldm_namer(unet)
    state = unet.state_dict()
    names = {namer(k): k for k in state}
    converted = convert_ldm_unet_checkpoint(
        {f"model.diffusion_model.{k}": state[v] for k, v in names.items()}, dict(unet.config)
    )
    assert set(converted) == set(state) and all(torch.equal(converted[k], state[k]) for k in state)
    return names


def test_original_layout_names_match_diffusers_converter_for_sd_layouts():
    """SD 1.x/2.x and SDXL UNet layouts (2 layers per block, as the real models)."""
    common = dict(
        block_out_channels=(8, 16, 16),
        layers_per_block=2,
        sample_size=16,
        norm_num_groups=4,
        cross_attention_dim=32,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4, 4),
    )
    _ldm_names(UNet2DConditionModel(**common))
    _ldm_names(
        UNet2DConditionModel(
            **common,
            use_linear_projection=True,
            transformer_layers_per_block=(1, 2, 2),
            addition_embed_type="text_time",
            addition_time_embed_dim=8,
            projection_class_embeddings_input_dim=32 + 6 * 8,
        )
    )


def _comfy_key_map(pipeline, family) -> dict[str, tuple[torch.nn.Module, str]]:
    """ComfyUI's LoRA key -> (module, parameter path) rules for an SD / SDXL model."""
    key_map = {}
    unet = pipeline.unet
    ldm = _ldm_names(unet)
    for ldm_name, diffusers_name in ldm.items():
        if diffusers_name.endswith(".weight"):
            path = diffusers_name[: -len(".weight")]
            key_map["lora_unet_" + path.replace(".", "_")] = (unet, path)  # unet_to_diffusers rule
            key_map["lora_unet_" + ldm_name[: -len(".weight")].replace(".", "_")] = (unet, path)  # state-dict rule
    encoders = (
        [("lora_te_", pipeline.text_encoder)]
        if family != "sdxl"
        else [("lora_te1_", pipeline.text_encoder), ("lora_te2_", pipeline.text_encoder_2)]
    )
    for prefix, encoder in encoders:
        for layer in range(encoder.config.num_hidden_layers):
            for module in COMFY_CLIP_MODULES:
                dotted = module.replace("self_attn_", "self_attn.").replace("mlp_", "mlp.")
                key_map[f"{prefix}text_model_encoder_layers_{layer}_{module}"] = (
                    encoder,
                    f"text_model.encoder.layers.{layer}.{dotted}",
                )
    return key_map


@torch.no_grad()
def _apply_like_comfy(tensors: dict[str, torch.Tensor], key_map) -> set[str]:
    """W += alpha/rank * up @ down; with dora_scale, W *= dora_scale / ||W||_row (output axis)."""
    consumed = set()
    for key in {k.split(".")[0] for k in tensors}:
        module, path = key_map[key]
        if not hasattr(module, "text_model") and path.startswith("text_model."):
            path = path[len("text_model.") :]  # transformers 5's CLIPTextModel has no text_model level
        weight = module.get_submodule(path).weight
        down, up = tensors[f"{key}.lora_down.weight"].float(), tensors[f"{key}.lora_up.weight"].float()
        alpha = tensors[f"{key}.alpha"].item()
        diff = (up.flatten(1) @ down.flatten(1)).reshape(weight.shape) * (alpha / down.shape[0])
        new = weight.float() + diff
        consumed |= {f"{key}.lora_down.weight", f"{key}.lora_up.weight", f"{key}.alpha"}
        if f"{key}.dora_scale" in tensors:
            scale = tensors[f"{key}.dora_scale"].float()
            assert scale.shape[0] == weight.shape[0]  # ComfyUI: output-axis decomposition
            new = new * scale / new.flatten(1).norm(dim=1).reshape(scale.shape)
            consumed.add(f"{key}.dora_scale")
        weight.copy_(new)
    return consumed


@pytest.mark.parametrize("family, dora", [("sd1", False), ("sd1", True), ("sdxl", False), ("sdxl", True)])
def test_kohya_file_by_comfyui_rules_every_key_consumed_same_model(tiny_models, family, dora, photos, tmp_path):
    result = _train_lora(tiny_models, family, photos, tmp_path, dora=dora)
    tensors = load_file(str(_kohya_file(result.model_dir)))
    pipeline = DiffusionPipeline.from_pretrained(str(tiny_models[family]))
    key_map = _comfy_key_map(pipeline, family)
    assert {k.split(".")[0] for k in tensors} <= set(key_map), sorted(
        set(k.split(".")[0] for k in tensors) - set(key_map)
    )[:3]
    assert _apply_like_comfy(tensors, key_map) == set(tensors)
    trained = _unet_output(result.components.denoiser)
    assert (_unet_output(pipeline.unet) - trained).abs().max() < 2e-3 * trained.abs().max()
    for name, trained_encoder in zip(("text_encoder", "text_encoder_2"), result.components.text_encoders):
        expected = _text_output(trained_encoder)
        assert (_text_output(getattr(pipeline, name)) - expected).abs().max() < 5e-3 * expected.abs().max()


def _a1111_compvis_name(key: str) -> str:
    """A1111 ``convert_diffusers_name_to_compvis`` for the UNet (SD 1.x/2.x: 3 slots per block);
    a key already in the original layout passes through and is looked up as diffusion_model_*."""
    resnet = {
        "conv1": "in_layers_2",
        "conv2": "out_layers_3",
        "norm1": "in_layers_0",
        "norm2": "out_layers_0",
        "time_emb_proj": "emb_layers_1",
        "conv_shortcut": "skip_connection",
    }
    if m := re.match(r"lora_unet_down_blocks_(\d+)_(attentions|resnets)_(\d+)_(.+)", key):
        suffix = m[4] if m[2] == "attentions" else resnet.get(m[4], m[4])
        return (
            f"diffusion_model_input_blocks_{1 + int(m[1]) * 3 + int(m[3])}_{1 if m[2] == 'attentions' else 0}_{suffix}"
        )
    if m := re.match(r"lora_unet_mid_block_(attentions|resnets)_(\d+)_(.+)", key):
        suffix = m[3] if m[1] == "attentions" else resnet.get(m[3], m[3])
        return f"diffusion_model_middle_block_{1 if m[1] == 'attentions' else int(m[2]) * 2}_{suffix}"
    if m := re.match(r"lora_unet_up_blocks_(\d+)_(attentions|resnets)_(\d+)_(.+)", key):
        suffix = m[4] if m[2] == "attentions" else resnet.get(m[4], m[4])
        return f"diffusion_model_output_blocks_{int(m[1]) * 3 + int(m[3])}_{1 if m[2] == 'attentions' else 0}_{suffix}"
    return key.replace("lora_unet_", "diffusion_model_")


@pytest.mark.parametrize("sdxl", [False, True])
def test_kohya_unet_keys_resolve_by_a1111_rules(tmp_path, sdxl):
    """On the real SD layout (2 layers per block), every UNet key names an original-layout module."""
    from peft import LoraConfig

    from dreamtune.models.families import family_named
    from dreamtune.models.kohya import kohya_state_dict

    common = dict(
        block_out_channels=(8, 16, 16),
        layers_per_block=2,
        sample_size=16,
        norm_num_groups=4,
        cross_attention_dim=32,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4, 4),
    )
    if sdxl:
        common.update(
            use_linear_projection=True,
            addition_embed_type="text_time",
            addition_time_embed_dim=8,
            projection_class_embeddings_input_dim=32 + 6 * 8,
        )
    unet = UNet2DConditionModel(**common)
    compvis = {
        "diffusion_model_" + name[: -len(".weight")].replace(".", "_")
        for name in _ldm_names(unet)
        if name.endswith(".weight")
    }
    unet.add_adapter(
        LoraConfig(r=2, lora_alpha=2, target_modules=["to_q", "to_k", "to_v", "to_out.0", "conv1", "conv2"])
    )
    keys = {k.split(".")[0] for k in kohya_state_dict({"unet": unet}, family_named("sdxl" if sdxl else "sd"))}
    assert keys and all(_a1111_compvis_name(k) in compvis for k in keys), [
        k for k in keys if _a1111_compvis_name(k) not in compvis
    ][:3]
