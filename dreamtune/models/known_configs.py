"""Offline configs for single-file checkpoints of the two layouts people share most: SD 1.x and
SDXL base. A file's family is read from its keys; the matching diffusers config folder (model
index, UNet / VAE / text-encoder / scheduler configs, and CLIP tokenizers built from the vendored
BPE list) is written once into the user's cache and handed to ``from_single_file(config=...)``.

The values are those of the published ``stable-diffusion-v1-5`` and ``stable-diffusion-xl-base-1.0``
repositories; shapes are checked by the loader (a wrong one fails to load), and the tokenizer
is checked against reference token ids in the tests. SD 2.x is not inferred: its 512-px
(epsilon) and 768-px (v-prediction) models have identical weights' shapes, so guessing would
silently train with the wrong target — such files need ``model.config``.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from dreamtune.atomic import atomic_dir

VOCAB = Path(__file__).parent / "clip_vocab" / "bpe_simple_vocab_16e6.txt.gz"
CLIP_MERGES = 49152 - 256 - 2  # CLIP keeps the first 48,894 merges: 512 byte symbols + merges + 2 specials = 49,408
SCHEDULE = {
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000,
    "clip_sample": False,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "prediction_type": "epsilon",
    "timestep_spacing": "leading",
}
CLIP_L = {
    "architectures": ["CLIPTextModel"],
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_attention_heads": 12,
    "num_hidden_layers": 12,
    "projection_dim": 768,
    "hidden_act": "quick_gelu",
    "max_position_embeddings": 77,
    "vocab_size": 49408,
    "layer_norm_eps": 1e-5,
    "bos_token_id": 49406,
    "eos_token_id": 49407,
    "pad_token_id": 49407,
    "model_type": "clip_text_model",
}
CLIP_BIG_G = {
    **CLIP_L,
    "architectures": ["CLIPTextModelWithProjection"],
    "hidden_size": 1280,
    "intermediate_size": 5120,
    "num_attention_heads": 20,
    "num_hidden_layers": 32,
    "projection_dim": 1280,
    "hidden_act": "gelu",
}
VAE = {
    "_class_name": "AutoencoderKL",
    "act_fn": "silu",
    "block_out_channels": [128, 256, 512, 512],
    "in_channels": 3,
    "out_channels": 3,
    "latent_channels": 4,
    "layers_per_block": 2,
    "norm_num_groups": 32,
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
}
FAMILIES = {
    "sd": {
        "model_index": {
            "_class_name": "StableDiffusionPipeline",
            "feature_extractor": [None, None],
            "safety_checker": [None, None],
            "requires_safety_checker": False,
            "scheduler": ["diffusers", "PNDMScheduler"],
            "text_encoder": ["transformers", "CLIPTextModel"],
            "tokenizer": ["transformers", "CLIPTokenizer"],
            "unet": ["diffusers", "UNet2DConditionModel"],
            "vae": ["diffusers", "AutoencoderKL"],
        },
        "unet": {
            "_class_name": "UNet2DConditionModel",
            "sample_size": 64,
            "block_out_channels": [320, 640, 1280, 1280],
            "layers_per_block": 2,
            "cross_attention_dim": 768,
            "attention_head_dim": 8,
            "in_channels": 4,
            "out_channels": 4,
            "down_block_types": ["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"],
            "up_block_types": ["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3,
            "norm_num_groups": 32,
            "norm_eps": 1e-5,
            "flip_sin_to_cos": True,
            "freq_shift": 0,
            "act_fn": "silu",
        },
        "vae": {**VAE, "sample_size": 512, "scaling_factor": 0.18215},
        "scheduler": {"_class_name": "PNDMScheduler", **SCHEDULE},
        "text_encoders": [("text_encoder", "tokenizer", CLIP_L, "<|endoftext|>")],
    },
    "sdxl": {
        "model_index": {
            "_class_name": "StableDiffusionXLPipeline",
            "force_zeros_for_empty_prompt": True,
            "scheduler": ["diffusers", "EulerDiscreteScheduler"],
            "text_encoder": ["transformers", "CLIPTextModel"],
            "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"],
            "tokenizer": ["transformers", "CLIPTokenizer"],
            "tokenizer_2": ["transformers", "CLIPTokenizer"],
            "unet": ["diffusers", "UNet2DConditionModel"],
            "vae": ["diffusers", "AutoencoderKL"],
        },
        "unet": {
            "_class_name": "UNet2DConditionModel",
            "sample_size": 128,
            "block_out_channels": [320, 640, 1280],
            "layers_per_block": 2,
            "cross_attention_dim": 2048,
            "attention_head_dim": [5, 10, 20],
            "transformer_layers_per_block": [1, 2, 10],
            "use_linear_projection": True,
            "in_channels": 4,
            "out_channels": 4,
            "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
            "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
            "addition_embed_type": "text_time",
            "addition_embed_type_num_heads": 64,
            "addition_time_embed_dim": 256,
            "projection_class_embeddings_input_dim": 2816,
            "norm_num_groups": 32,
            "norm_eps": 1e-5,
            "flip_sin_to_cos": True,
            "freq_shift": 0,
            "act_fn": "silu",
        },
        "vae": {**VAE, "sample_size": 1024, "scaling_factor": 0.13025, "force_upcast": True},
        "scheduler": {
            "_class_name": "EulerDiscreteScheduler",
            **SCHEDULE,
            "interpolation_type": "linear",
            "use_karras_sigmas": False,
        },
        "text_encoders": [
            ("text_encoder", "tokenizer", CLIP_L, "<|endoftext|>"),
            ("text_encoder_2", "tokenizer_2", CLIP_BIG_G, "!"),
        ],
    },
}


def clip_bpe_files(folder: Path, pad_token: str) -> Path:
    """CLIP's vocab.json / merges.txt (the ids of OpenAI's tokenizer) built from the BPE list."""
    from dreamtune.models.tokenizer import openai_byte_symbols

    lines = gzip.open(VOCAB, "rt", encoding="utf-8").read().split("\n")
    merges = [tuple(line.split()) for line in lines[1 : CLIP_MERGES + 1]]
    symbols = list(openai_byte_symbols())
    vocab = (
        symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges] + ["<|startoftext|>", "<|endoftext|>"]
    )
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(
        json.dumps({token: index for index, token in enumerate(vocab)}), encoding="utf-8"
    )
    (folder / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges), encoding="utf-8")
    specials = {
        "bos_token": "<|startoftext|>",
        "eos_token": "<|endoftext|>",
        "unk_token": "<|endoftext|>",
        "pad_token": pad_token,
    }
    (folder / "special_tokens_map.json").write_text(json.dumps(specials))
    (folder / "tokenizer_config.json").write_text(
        json.dumps({**specials, "model_max_length": 77, "do_lower_case": True, "tokenizer_class": "CLIPTokenizer"})
    )
    return folder


def _cache_root() -> Path:
    from dreamtune.data.cache import user_cache_root

    return user_cache_root() / "single-file-configs"


def config_folder(family: str) -> Path:
    """The diffusers config folder (no weights) of ``family`` ("sd" or "sdxl"), written once."""
    spec = FAMILIES[family]
    final = _cache_root() / f"{family}-v1"
    if (final / "model_index.json").is_file():
        return final
    with atomic_dir(final) as temp:
        (temp / "model_index.json").write_text(json.dumps(spec["model_index"], indent=2))
        for name in ("unet", "vae"):
            (temp / name).mkdir()
            (temp / name / "config.json").write_text(json.dumps(spec[name], indent=2))
        (temp / "scheduler").mkdir()
        (temp / "scheduler" / "scheduler_config.json").write_text(json.dumps(spec["scheduler"], indent=2))
        for encoder, tokenizer, text_config, pad in spec["text_encoders"]:
            (temp / encoder).mkdir()
            (temp / encoder / "config.json").write_text(json.dumps(text_config, indent=2))
            clip_bpe_files(temp / tokenizer, pad)
    return final
