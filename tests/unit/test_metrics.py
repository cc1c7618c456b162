import math

import torch
import torch.nn.functional as F

from dreamtune.evaluation.evaluate import strip_identifier
from dreamtune.evaluation.metrics import (
    diversity,
    mean_and_spread,
    preservation,
    prompt_fidelity,
    subject_fidelity,
    top1_accuracy,
)


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


def test_preservation_is_the_fidelity_formula_on_class_generations():
    class_generated = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    real = torch.tensor([[1.0, 0.0]])
    assert preservation(class_generated, real) == 0.5


def test_diversity_averages_within_prompt_dissimilarity_and_skips_singletons():
    s = math.sqrt(0.5)
    features = torch.tensor(
        [
            [1.0, 0.0],
            [0.0, 1.0],  # prompt a: orthogonal -> 1 - 0 = 1
            [1.0, 0.0],
            [s, s],
            [s, s],  # prompt b: pairs 1-.7071, 1-.7071, 1-1 -> mean .1953
            [0.0, 1.0],
        ]
    )  # prompt c: a single image, no pair
    groups = ["a", "a", "b", "b", "b", "c"]
    expected_b = (2 * (1 - s) + 0.0) / 3
    assert math.isclose(diversity(features, groups), (1.0 + expected_b) / 2, rel_tol=1e-5)
    assert math.isnan(diversity(features[:1], ["a"]))


def test_mean_and_spread_ignores_nan_and_uses_sample_deviation():
    mean, spread = mean_and_spread([1.0, 3.0, float("nan")])
    assert mean == 2.0 and math.isclose(spread, math.sqrt(2.0))
    assert mean_and_spread([4.0]) == (4.0, 0.0)


def test_identifier_is_removed_as_a_whole_word_only():
    assert strip_identifier("a sks dog on the sksy beach", "sks") == "a dog on the sksy beach"
    assert strip_identifier("a <sks> dog", "<sks>") == "a dog"
    assert strip_identifier("a dog", "") == "a dog"


def test_image_preprocessing_is_clips_own_resize_short_side_and_centre_crop():
    """A wide DreamBench photo is centre-cropped, not squashed: the pixels equal transformers'
    CLIPImageProcessor's, and the tensor path (rewards) agrees with the PIL path."""
    import numpy as np
    import torch
    from PIL import Image
    from transformers import CLIPImageProcessorPil

    from dreamtune.evaluation.features import ImageFeatures, center_square

    rng = np.random.default_rng(0)
    wide = Image.fromarray((rng.random((60, 100, 3)) * 255).astype("uint8"))
    reference = CLIPImageProcessorPil(
        size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}, do_normalize=False
    )(wide, return_tensors="pt").pixel_values[0]
    ours = torch.from_numpy(np.asarray(center_square(wide, 32), dtype=np.float32) / 255).permute(2, 0, 1)
    assert torch.equal(ours, reference)
    features = ImageFeatures(32)
    features.register_parameter("anchor", torch.nn.Parameter(torch.zeros(1)))  # gives the module a dtype
    from_tensor = features.tensor_pixels(
        torch.from_numpy(np.asarray(wide, dtype=np.float32) / 255).permute(2, 0, 1)[None]
    )
    assert from_tensor.shape == (1, 3, 32, 32)
    assert (from_tensor - features.pixels([wide])).abs().mean() < 0.05
