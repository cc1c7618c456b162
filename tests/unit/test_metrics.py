import math

import torch
import torch.nn.functional as F

from dreamtune.evaluation.metrics import prompt_fidelity, subject_fidelity, top1_accuracy


def test_subject_fidelity_is_mean_pairwise_cosine():
    generated = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    real = F.normalize(torch.tensor([[1.0, 1.0], [1.0, 0.0], [0.0, -1.0]]), dim=-1)
    # pairs: (g1: .7071, 1, 0) (g2: .7071, 0, -1) -> mean = (1.4142 + 1 - 1) / 6
    assert math.isclose(subject_fidelity(generated, real), (2 * math.sqrt(0.5)) / 6, rel_tol=1e-6)


def test_prompt_fidelity_pairs_rows_only():
    images = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    prompts = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    assert prompt_fidelity(images, prompts) == 0.5


def test_top1_accuracy():
    queries = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    candidates = torch.tensor([[0.9, 0.1], [0.1, 0.9], [0.5, 0.5]])
    assert top1_accuracy(queries, candidates, torch.tensor([0, 2])) == 0.5
