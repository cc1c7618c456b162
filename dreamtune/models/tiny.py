"""Tiny, randomly initialised diffusers pipelines built from configs (tests, smoke runs).

Same component classes as Stable Diffusion 1.x / 2.x (v-prediction) / SDXL, a few
thousand parameters each, so every real code path runs in seconds on a CPU with nothing
downloaded (the pattern of diffusers' ``get_dummy_components``).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch
from diffusers import (
    AutoencoderKL,
    DDPMScheduler,
    StableDiffusionPipeline,
    StableDiffusionXLPipeline,
    UNet2DConditionModel,
)
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

from dreamtune.models.tokenizer import build_clip_tokenizer

FAMILIES = ("sd1", "sd2-v", "sdxl", "sd3", "flux", "flux-schnell", "flux2-klein", "z-image")
FLOW_FAMILIES = ("sd3", "flux", "flux-schnell", "flux2-klein", "z-image")
QWEN_CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SDXL_SECOND_ENCODER_WIDTH = 48


def _text_config(
    vocab_size: int, projection_dim: int = 32, hidden_size: int = 32, hidden_act: str = "quick_gelu"
) -> CLIPTextConfig:
    return CLIPTextConfig(
        bos_token_id=vocab_size - 2,
        eos_token_id=vocab_size - 1,
        pad_token_id=vocab_size - 1,
        hidden_act=hidden_act,
        hidden_size=hidden_size,
        intermediate_size=37,
        num_attention_heads=4,
        num_hidden_layers=2,
        vocab_size=vocab_size,
        max_position_embeddings=77,
        projection_dim=projection_dim,
    )


def _vae() -> AutoencoderKL:
    return AutoencoderKL(
        block_out_channels=(8, 16),
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        norm_num_groups=4,
        sample_size=32,
    )


def _unet(family: str) -> UNet2DConditionModel:
    common = dict(
        block_out_channels=(8, 16),
        layers_per_block=1,
        sample_size=16,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        norm_num_groups=4,
    )
    if family == "sdxl":
        # the two text encoders differ in width, as SDXL's (768 / 1280): single-file loaders tell them apart by it
        return UNet2DConditionModel(
            **common,
            cross_attention_dim=32 + SDXL_SECOND_ENCODER_WIDTH,
            attention_head_dim=(2, 4),
            use_linear_projection=True,
            addition_embed_type="text_time",
            addition_time_embed_dim=8,
            projection_class_embeddings_input_dim=32 + 6 * 8,
        )
    return UNet2DConditionModel(
        **common, cross_attention_dim=32, attention_head_dim=(2, 4), use_linear_projection=family == "sd2-v"
    )


def build_t5_tokenizer(
    folder: str | Path,
    words: tuple[str, ...] = ("a", "photo", "of", "dog", "sks", "the", "on", "in"),
    model_max_length: int = 24,
):
    """A T5 tokenizer built locally (``tokenizers`` Unigram over characters and a few words, the
    SentencePiece model T5 uses), saved in ``folder``; any lower-case prompt tokenizes."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import T5Tokenizer

    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)]
    pieces += [(c, -3.0) for c in "abcdefghijklmnopqrstuvwxyz0123456789<>-_.,!?'"] + [("▁" + w, -1.0) for w in words]
    model = Tokenizer(models.Unigram(pieces, unk_id=2, byte_fallback=False))
    model.pre_tokenizer, model.decoder = pre_tokenizers.Metaspace(), decoders.Metaspace()
    tokenizer = T5Tokenizer(
        tokenizer_object=model,
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        extra_ids=0,
        model_max_length=model_max_length,
    )
    tokenizer.save_pretrained(str(folder))
    return T5Tokenizer.from_pretrained(str(folder))


def build_qwen_tokenizer(folder: str | Path, model_max_length: int = 48):
    """A Qwen2-style tokenizer built locally: byte-level BPE over the 256 byte symbols (no merges),
    the chat special tokens and a chat template, saved in ``folder``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import Qwen2Tokenizer

    from dreamtune.models.tokenizer import byte_symbols

    vocab = {symbol: index for index, symbol in enumerate(byte_symbols())}
    for special in ("<|endoftext|>", "<|im_start|>", "<|im_end|>"):
        vocab[special] = len(vocab)
    model = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    model.pre_tokenizer, model.decoder = pre_tokenizers.ByteLevel(add_prefix_space=False), decoders.ByteLevel()
    tokenizer = Qwen2Tokenizer(
        tokenizer_object=model,
        vocab=vocab,
        merges=[],
        chat_template=QWEN_CHAT_TEMPLATE,
        model_max_length=model_max_length,
    )
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    tokenizer.save_pretrained(str(folder))
    return Qwen2Tokenizer.from_pretrained(str(folder))


def _flux2_klein(scratch: Path):
    """A tiny FLUX.2 klein base: Qwen3 with 28 layers (the pipeline reads layers 9, 18, 27), the
    FLUX.2 VAE with non-trivial batch-norm statistics, no guidance embedding (CFG)."""
    from diffusers import (
        AutoencoderKLFlux2,
        FlowMatchEulerDiscreteScheduler,
        Flux2KleinPipeline,
        Flux2Transformer2DModel,
    )
    from transformers import Qwen3Config, Qwen3ForCausalLM

    tokenizer = build_qwen_tokenizer(scratch / "qwen")
    text_encoder = Qwen3ForCausalLM(
        Qwen3Config(
            vocab_size=len(tokenizer),
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=28,
            num_attention_heads=2,
            num_key_value_heads=1,
            head_dim=8,
            max_position_embeddings=512,
            tie_word_embeddings=True,
        )
    )
    vae = AutoencoderKLFlux2(
        block_out_channels=(8, 16),
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        latent_channels=4,
        norm_num_groups=4,
        sample_size=32,
        layers_per_block=1,
    )
    vae.bn.running_mean.copy_(0.1 * torch.randn(16))
    vae.bn.running_var.copy_(0.5 + torch.rand(16))
    transformer = Flux2Transformer2DModel(
        patch_size=1,
        in_channels=16,
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=48,
        timestep_guidance_channels=32,
        axes_dims_rope=(4, 4, 4, 4),
        guidance_embeds=False,
    )
    scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=True, time_shift_type="exponential")
    return Flux2KleinPipeline(
        scheduler=scheduler,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        transformer=transformer,
        is_distilled=False,
    )


def _z_image(scratch: Path):
    """A tiny Z-Image: Qwen3 (the pipeline reads the second-to-last hidden state), FLUX.1's VAE layout
    with its scaling and shift, the single-stream transformer with refiner layers and 3-axis RoPE."""
    from diffusers import FlowMatchEulerDiscreteScheduler, ZImagePipeline, ZImageTransformer2DModel
    from transformers import Qwen3Config, Qwen3Model

    tokenizer = build_qwen_tokenizer(scratch / "qwen")
    text_encoder = Qwen3Model(
        Qwen3Config(
            vocab_size=len(tokenizer),
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=1,
            head_dim=8,
            max_position_embeddings=512,
        )
    )
    vae = AutoencoderKL(
        block_out_channels=(8, 16),
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        latent_channels=4,
        norm_num_groups=4,
        sample_size=32,
        layers_per_block=1,
        scaling_factor=0.3611,
        shift_factor=0.1159,
        use_quant_conv=False,
        use_post_quant_conv=False,
    )
    transformer = ZImageTransformer2DModel(
        in_channels=4,
        dim=32,
        n_layers=2,
        n_refiner_layers=1,
        n_heads=2,
        n_kv_heads=2,
        cap_feat_dim=16,
        axes_dims=[4, 6, 6],
        axes_lens=[512, 64, 64],
    )
    scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0)
    return ZImagePipeline(
        scheduler=scheduler, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, transformer=transformer
    )


def _t5(vocab_size: int, width: int):
    from transformers import T5Config, T5EncoderModel

    return T5EncoderModel(
        T5Config(
            vocab_size=vocab_size,
            d_model=width,
            d_ff=37,
            d_kv=8,
            num_layers=1,
            num_heads=2,
            relative_attention_num_buckets=8,
            decoder_start_token_id=0,
        )
    )


def _flow_pipeline(family: str, scratch: Path):
    """A tiny SD3 (MMDiT, CLIP-L + CLIP-G + T5), FLUX.1-dev (CLIP-L + T5, guidance embedding) or FLUX.2 klein pipeline."""
    from diffusers import (
        FlowMatchEulerDiscreteScheduler,
        FluxPipeline,
        FluxTransformer2DModel,
        SD3Transformer2DModel,
        StableDiffusion3Pipeline,
    )

    if family == "flux2-klein":
        return _flux2_klein(scratch)
    if family == "z-image":
        return _z_image(scratch)
    clip_tokenizer = build_clip_tokenizer(scratch / "clip")
    t5_tokenizer = build_t5_tokenizer(scratch / "t5")
    vocab = len(clip_tokenizer)
    vae = AutoencoderKL(
        block_out_channels=(8, 16),
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        norm_num_groups=4,
        sample_size=32,
        shift_factor=0.0609,
        scaling_factor=1.5305,
    )
    if family == "sd3":
        transformer = SD3Transformer2DModel(
            sample_size=16,
            patch_size=1,
            in_channels=4,
            out_channels=4,
            num_layers=1,
            attention_head_dim=8,
            num_attention_heads=4,
            caption_projection_dim=32,
            joint_attention_dim=64,
            pooled_projection_dim=64,
        )
        return StableDiffusion3Pipeline(
            transformer=transformer,
            vae=vae,
            scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
            text_encoder=CLIPTextModelWithProjection(_text_config(vocab)),
            tokenizer=clip_tokenizer,
            text_encoder_2=CLIPTextModelWithProjection(_text_config(vocab)),
            tokenizer_2=clip_tokenizer,
            text_encoder_3=_t5(len(t5_tokenizer), 64),
            tokenizer_3=t5_tokenizer,
        )
    transformer = FluxTransformer2DModel(
        patch_size=1,
        in_channels=16,
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=32,
        pooled_projection_dim=32,
        axes_dims_rope=(4, 4, 8),
        guidance_embeds=family == "flux",
    )  # schnell: no guidance input
    scheduler = FlowMatchEulerDiscreteScheduler(
        shift=3.0,
        use_dynamic_shifting=True,
        base_shift=0.5,
        max_shift=1.15,
        base_image_seq_len=256,
        max_image_seq_len=4096,
    )
    return FluxPipeline(
        transformer=transformer,
        vae=vae,
        scheduler=scheduler,
        text_encoder=CLIPTextModel(_text_config(vocab)),
        tokenizer=clip_tokenizer,
        text_encoder_2=_t5(len(t5_tokenizer), 32),
        tokenizer_2=t5_tokenizer,
    )


def build_tiny_pipeline(folder: str | Path, family: str = "sd1", seed: int = 0) -> Path:
    """Write a tiny diffusers pipeline folder of ``family`` (sd1 | sd2-v | sdxl | sd3 | flux | flux-schnell | flux2-klein); returns it."""
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {FAMILIES}")
    folder = Path(folder)
    torch.manual_seed(seed)
    if family in FLOW_FAMILIES:
        with tempfile.TemporaryDirectory() as scratch:
            _flow_pipeline(family, Path(scratch)).save_pretrained(folder, safe_serialization=True)
        return folder
    with tempfile.TemporaryDirectory() as scratch:
        tokenizer = build_clip_tokenizer(Path(scratch) / "tok")
    vocab_size = len(tokenizer)
    scheduler = DDPMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        steps_offset=1,
        prediction_type="v_prediction" if family == "sd2-v" else "epsilon",
        num_train_timesteps=1000,
    )
    parts = dict(
        vae=_vae(),
        unet=_unet(family),
        scheduler=scheduler,
        tokenizer=tokenizer,
        # SD 2.x's OpenCLIP uses GELU where CLIP-L uses quick GELU (single files are written in its layout)
        text_encoder=CLIPTextModel(_text_config(vocab_size, hidden_act="gelu" if family == "sd2-v" else "quick_gelu")),
    )
    if family == "sdxl":
        parts.update(
            tokenizer_2=tokenizer,
            text_encoder_2=CLIPTextModelWithProjection(_text_config(vocab_size, hidden_size=SDXL_SECOND_ENCODER_WIDTH)),
        )
        pipeline = StableDiffusionXLPipeline(**parts)
    else:
        pipeline = StableDiffusionPipeline(
            **parts, safety_checker=None, feature_extractor=None, requires_safety_checker=False
        )
    pipeline.save_pretrained(folder, safe_serialization=True)
    return folder


def build_tiny_feature_models(folder: str | Path, seed: int = 0) -> dict[str, Path]:
    """Tiny random CLIP (with tokenizer) and DINO-style ViT folders, each with the
    preprocessor_config.json the real ones have, for offline tests of the metrics code."""
    import json

    from transformers import CLIPConfig, CLIPModel, ViTConfig, ViTModel

    folder = Path(folder)
    torch.manual_seed(seed)
    clip_dir, dino_dir = folder / "clip", folder / "dino"
    tokenizer = build_clip_tokenizer(clip_dir)
    text = _text_config(len(tokenizer)).to_dict()
    vision = dict(
        hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2, image_size=32, patch_size=8
    )
    CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=32)).save_pretrained(
        clip_dir, safe_serialization=True
    )
    ViTModel(ViTConfig(**vision), add_pooling_layer=False).save_pretrained(dino_dir, safe_serialization=True)
    openai = {
        "image_mean": [0.48145466, 0.4578275, 0.40821073],
        "image_std": [0.26862954, 0.26130258, 0.27577711],
        "crop_size": {"height": 32, "width": 32},
    }
    imagenet = {
        "image_mean": [0.485, 0.456, 0.406],
        "image_std": [0.229, 0.224, 0.225],
        "size": {"height": 32, "width": 32},
    }
    (clip_dir / "preprocessor_config.json").write_text(json.dumps(openai))
    (dino_dir / "preprocessor_config.json").write_text(json.dumps(imagenet))
    return {"clip": clip_dir, "dino": dino_dir}
