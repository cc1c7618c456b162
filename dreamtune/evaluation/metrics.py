"""Personalization metrics of the DreamBooth paper (Ruiz et al. 2023, sec. 4.1), as pure
functions of unit-norm embeddings.

    CLIP-I / DINO: mean cosine over all (generated, real subject) pairs
    CLIP-T:        mean cosine between each image and its own prompt
"""
from __future__ import annotations

import torch


def subject_fidelity(generated: torch.Tensor, real: torch.Tensor) -> float:
    """CLIP-I (or DINO with DINO features): mean pairwise cosine, (G,D) x (R,D) -> scalar."""
    return float((generated @ real.T).mean())


def prompt_fidelity(images: torch.Tensor, prompts: torch.Tensor) -> float:
    """CLIP-T: mean cosine of matching (image, prompt) rows, (N,D) x (N,D) -> scalar."""
    return float((images * prompts).sum(-1).mean())


def top1_accuracy(queries: torch.Tensor, candidates: torch.Tensor, correct: torch.Tensor) -> float:
    """Share of queries whose most similar candidate is the correct one; correct: (Q,) indices."""
    return float(((queries @ candidates.T).argmax(-1) == correct).float().mean())
