"""Personalization metrics of the DreamBooth paper (Ruiz et al. 2023, sec. 4.1 and 4.3), as
pure functions of unit-norm embeddings.

    CLIP-I / DINO: mean cosine over all (generated, real subject) pairs
    CLIP-T:        mean cosine between each image and its own prompt
    PRES:          prior preservation — CLIP-I/DINO formula applied to *class-prompt* generations
                   of the personalized model ("a dog"): how much the subject leaks into the
                   class; lower is better
    DIV:           diversity — mean pairwise dissimilarity (1 - cosine) of generations of one
                   prompt, averaged over prompts; higher is better. The paper uses LPIPS, which
                   needs downloaded AlexNet/VGG weights; dreamtune measures it on the same
                   DINO (else CLIP) features and says so in every report.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from typing import Sequence

import torch


def subject_fidelity(generated: torch.Tensor, real: torch.Tensor) -> float:
    """CLIP-I (or DINO with DINO features): mean pairwise cosine, (G,D) x (R,D) -> scalar."""
    return float((generated @ real.T).mean())


def prompt_fidelity(images: torch.Tensor, prompts: torch.Tensor) -> float:
    """CLIP-T: mean cosine of matching (image, prompt) rows, (N,D) x (N,D) -> scalar."""
    return float((images * prompts).sum(-1).mean())


def preservation(class_generated: torch.Tensor, real: torch.Tensor) -> float:
    """PRES: similarity of class-prompt generations to the subject (lower: prior kept)."""
    return subject_fidelity(class_generated, real)


def diversity(features: torch.Tensor, groups: Sequence) -> float:
    """DIV: mean over groups (one group per prompt) of mean pairwise 1 - cosine within it.
    Groups with a single image carry no pairs and are skipped; none with pairs -> nan."""
    members = defaultdict(list)
    for index, key in enumerate(groups):
        members[key].append(index)
    values = []
    for indices in members.values():
        if len(indices) < 2:
            continue
        block = features[indices] @ features[indices].T
        n = len(indices)
        values.append(float((1 - block)[~torch.eye(n, dtype=torch.bool)].mean()))
    return sum(values) / len(values) if values else float("nan")


def top1_accuracy(queries: torch.Tensor, candidates: torch.Tensor, correct: torch.Tensor) -> float:
    """Share of queries whose most similar candidate is the correct one; correct: (Q,) indices."""
    return float(((queries @ candidates.T).argmax(-1) == correct).float().mean())


def mean_and_spread(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value) — the tables' 'mean ± spread'."""
    values = [v for v in values if v == v]
    if not values:
        return float("nan"), float("nan")
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0
