"""Tiny text encoders and tokenizers for the tiny pipelines (models/tiny.py, models/tiny_flow.py):
CLIP text configs, a T5 encoder, and T5 / Qwen tokenizers built locally with nothing downloaded."""

from __future__ import annotations

from pathlib import Path

from transformers import CLIPTextConfig

QWEN_CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def text_config(
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


def t5_encoder(vocab_size: int, width: int):
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
