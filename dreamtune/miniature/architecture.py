"""Sizes of the miniature's networks: Stable Diffusion's component classes, scaled to 64×64.

text:  CLIP text transformer, 4 layers × 128 wide, 32 tokens (the mini CLIP's text tower)
image: CLIP ViT, 64×64 input, 8×8 patches, 4 layers × 128 wide (metrics and rewards)
VAE:   AutoencoderKL 64×64×3 <-> 16×16×4 (downsampling 4, where SD's is 8), 3.5 M parameters
       (the first build's 0.7 M VAE, channels 16/32/64 × 1 layer, was the sharpness bottleneck)
UNet:  10.9 M parameters; bf16 training step at batch 32 ≈ 0.67 s on 2 AMX cores
UNet:  UNet2DConditionModel on 16×16×4 latents, cross-attention to the 128-wide text states
"""

from __future__ import annotations

from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
from transformers import CLIPConfig, CLIPModel

TEXT_WIDTH = 128
MAX_TOKENS = 32


def clip_model(vocab_size: int, eos_token_id: int, bos_token_id: int) -> CLIPModel:
    text = dict(
        vocab_size=vocab_size,
        hidden_size=TEXT_WIDTH,
        intermediate_size=512,
        num_hidden_layers=4,
        num_attention_heads=4,
        max_position_embeddings=MAX_TOKENS,
        eos_token_id=eos_token_id,
        bos_token_id=bos_token_id,
        pad_token_id=eos_token_id,
    )
    vision = dict(
        image_size=64, patch_size=8, hidden_size=128, intermediate_size=512, num_hidden_layers=4, num_attention_heads=4
    )
    return CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=128))


def vae() -> AutoencoderKL:
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        block_out_channels=(32, 64, 128),
        down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3,
        layers_per_block=2,
        norm_num_groups=16,
        sample_size=64,
    )


SHIPPED_HEADS = (32, 32, 32)  # the shipped build: 32 heads of dim 4 / 6 (see unet)
HEAD_DIM_32 = (2, 4, 6)  # the same widths as heads of dim 32: 64 / 2, 128 / 4, 192 / 6


def unet(heads: tuple[int, ...] = SHIPPED_HEADS) -> UNet2DConditionModel:
    """``heads``: attention heads per down block (diffusers' ``attention_head_dim``, which in SD-1 UNet
    configs is the number of heads; the first block has no attention).

    Attention only at 8×8 and 4×4: at 16×16 it costs 2.4× the step time on a CPU. Known flaw of the
    shipped build: 32 heads of dim 4 / 6, where PyTorch's CPU attention runs at ~2 % of the matmul peak
    (benchmarks/op_ceiling.py). ``HEAD_DIM_32`` costs the same weights and makes attention ~5x faster, but
    computes a different function: the UNet must be pretrained again with it (issue 34)."""
    return UNet2DConditionModel(
        sample_size=16,
        in_channels=4,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=(64, 128, 192),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=TEXT_WIDTH,
        attention_head_dim=tuple(heads),
        norm_num_groups=32,
    )


def noise_scheduler() -> DDPMScheduler:
    """Stable Diffusion's training schedule (scaled linear β from 0.00085 to 0.012, 1000 steps)."""
    return DDPMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        num_train_timesteps=1000,
        clip_sample=False,
        steps_offset=1,
        prediction_type="epsilon",
    )
