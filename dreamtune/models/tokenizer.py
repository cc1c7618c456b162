"""CLIP tokenizers built locally (no hub): byte-level, so any string tokenizes.

A CLIP BPE vocabulary starts from the 256 byte symbols (and their end-of-word forms); merges
join frequent pairs. With no merges every character is one token; ``merges`` lets callers
add learned merges (the miniature model trains them on its captions).
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from transformers import CLIPTokenizer


def tokenize(tokenizer, prompts: list[str]):
    """Token ids (B, model_max_length), padded and truncated as CLIP text encoders expect."""
    return tokenizer(
        prompts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt"
    ).input_ids


@lru_cache(maxsize=1)
def byte_symbols() -> tuple[str, ...]:
    """GPT-2/CLIP's reversible byte -> printable unicode table, in byte order."""
    printable = (
        list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    )
    codes, extra = printable[:], 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            codes.append(256 + extra)
            extra += 1
    table = dict(zip(printable, codes))
    return tuple(chr(table[b]) for b in range(256))


def build_clip_tokenizer(
    folder: str | Path, merges: list[tuple[str, str]] = (), model_max_length: int = 77
) -> CLIPTokenizer:
    """Write vocab.json/merges.txt into ``folder`` and return the loaded tokenizer."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab: dict[str, int] = {}
    for symbol in byte_symbols():
        vocab[symbol] = len(vocab)
    for symbol in byte_symbols():
        vocab[symbol + "</w>"] = len(vocab)
    for left, right in merges:
        vocab.setdefault(left + right, len(vocab))
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges), encoding="utf-8")
    return CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=model_max_length)


@lru_cache(maxsize=1)
def openai_byte_symbols() -> tuple[str, ...]:
    """The 256 byte symbols in the order of OpenAI CLIP's vocabulary (ids 0-255): the printable
    bytes ('!'..'~', '¡'..'¬', '®'..'ÿ') first, then the others. (``byte_symbols`` is in byte
    order, which the miniature's own tokenizer uses.)"""
    printable = (
        list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    )
    order = printable + [b for b in range(256) if b not in printable]
    return tuple(byte_symbols()[b] for b in order)
