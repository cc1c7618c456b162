"""A frozen bf16 denoiser with a LoRA runs without autocast and matches the autocast result."""

import copy

import torch
from peft import LoraConfig

from dreamtune.models.precision import forward_in_weight_dtype
from dreamtune.models.tiny import _unet


def _lora_unet():
    torch.manual_seed(0)
    unet = _unet("sdxl").to(torch.bfloat16).requires_grad_(False)
    unet.add_adapter(
        LoraConfig(r=4, lora_alpha=4, target_modules=["to_q", "to_k", "to_v", "to_out.0"], init_lora_weights="gaussian")
    )
    for p in unet.parameters():
        if p.requires_grad:
            p.data = p.data.float()
    return unet


def _inputs(unet):
    torch.manual_seed(1)
    c = unet.config
    sample = torch.randn(2, c.in_channels, 16, 16)
    context = torch.randn(2, 7, c.cross_attention_dim)
    added = {
        "text_embeds": torch.randn(2, c.projection_class_embeddings_input_dim - 6 * c.addition_time_embed_dim),
        "time_ids": torch.tensor([[1023.0, 997.0, 3.0, 5.0, 1023.0, 997.0]] * 2),
    }
    return sample, torch.tensor([999, 17]), context, added


def test_forward_in_weight_dtype_matches_autocast_and_trains_the_lora_in_fp32():
    plain, fast = _lora_unet(), _lora_unet()
    forward_in_weight_dtype(fast, torch.bfloat16)
    sample, timesteps, context, added = _inputs(plain)
    seen = {}
    fast.add_embedding.register_forward_pre_hook(lambda m, args: seen.update(add=args[0].dtype))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        reference = plain(sample, timesteps, context, added_cond_kwargs=copy.deepcopy(added)).sample
        out = fast(sample, timesteps, context, added_cond_kwargs=copy.deepcopy(added)).sample
    assert out.dtype == torch.bfloat16 and seen["add"] == torch.bfloat16
    assert (out.float() - reference.float()).abs().max() < 0.05 * reference.float().abs().max()
    out.float().square().mean().backward()
    grads = [p.grad for p in fast.parameters() if p.requires_grad]
    assert grads and all(g is not None and g.dtype == torch.float32 and torch.isfinite(g).all() for g in grads)
    assert not any(p.grad is not None for p in fast.parameters() if not p.requires_grad)


def test_the_runs_autocast_keeps_no_copy_of_the_trained_weights(tmp_path):
    """Autocast's cast cache would hold a bf16 copy of every trained weight until the forward ends — under FSDP
    the whole unsharded model in each process. The run's accelerator turns it off; results are the same."""
    from dreamtune import config
    from dreamtune.training.run import _accelerator

    cfg = config.load(
        None,
        ["model.pretrained=x", "train.mixed_precision=bf16", f"train.output_dir={tmp_path}", "train.memory=manual"],
    )
    accelerator = _accelerator(cfg, lambda *_: None)
    layer, x = torch.nn.Linear(8, 8), torch.randn(2, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        cached = layer(x)
    with accelerator.autocast():
        assert torch.is_autocast_enabled("cpu") and not torch.is_autocast_cache_enabled()
        uncached = layer(x)
    assert uncached.dtype == torch.bfloat16 and torch.equal(cached, uncached)
