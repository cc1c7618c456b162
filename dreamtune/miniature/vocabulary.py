"""The miniature's tokenizer: CLIP-style byte-level BPE whose merges are learned from world
captions, so caption words are single tokens while any other string (``sks``, ``<my-dog>``)
still tokenizes, byte by byte."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from dreamtune.miniature import scenery, world
from dreamtune.models.tokenizer import build_clip_tokenizer, byte_symbols

EXTRA_TEXT = (
    "a photo of the with in on top and red purple shiny wet cube shaped wearing hat scarf outfit "
    "glasses shirt black yellow pink blue green white rainbow santa chef firefighter police wizard monocle"
)


def caption_words() -> Counter:
    """Word counts of the world's captions (every class, context and recolour) plus common prompt words."""
    counts: Counter = Counter(EXTRA_TEXT.split())
    for noun in world.GLYPHS:
        for phrase in [""] + list(scenery.PHRASES.values()):
            for colour in ["", "red", "purple"]:
                counts.update(f"a {colour} {noun} {phrase}".lower().split())
    return counts


def learn_merges(words: Counter, max_merges: int = 400) -> list[tuple[str, str]]:
    """Classic BPE (Sennrich et al. 2016) over byte symbols with CLIP's ``</w>`` word ending."""
    symbols = byte_symbols()

    def split(word: str) -> tuple[str, ...]:
        chars = [symbols[b] for b in word.encode("utf-8")]
        return tuple(chars[:-1] + [chars[-1] + "</w>"])

    corpus = {split(w): c for w, c in words.items()}
    merges: list[tuple[str, str]] = []
    while len(merges) < max_merges:
        pairs: Counter = Counter()
        for parts, count in corpus.items():
            for pair in zip(parts, parts[1:]):
                pairs[pair] += count
        if not pairs:
            break
        best = max(pairs, key=lambda p: (pairs[p], p))
        merges.append(best)
        corpus = {_merge(parts, best): count for parts, count in corpus.items()}
    return merges


def _merge(parts: tuple[str, ...], pair: tuple[str, str]) -> tuple[str, ...]:
    out, i = [], 0
    while i < len(parts):
        if i + 1 < len(parts) and (parts[i], parts[i + 1]) == pair:
            out.append(parts[i] + parts[i + 1])
            i += 2
        else:
            out.append(parts[i])
            i += 1
    return tuple(out)


def build_tokenizer(folder: str | Path, max_length: int = 32):
    return build_clip_tokenizer(folder, learn_merges(caption_words()), model_max_length=max_length)
