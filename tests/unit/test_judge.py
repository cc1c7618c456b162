"""The miniature judge's parts (dreamtune/miniature/judge.py): degradation, loss, verdicts."""

import sys
from pathlib import Path

import pytest
import torch

from dreamtune.miniature import judge, world

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import judge_training as training  # noqa: E402  (the judge's training half lives with its benchmark)


def test_blur_keeps_flat_images_and_softens_edges():
    flat = torch.full((2, 3, 16, 16), 0.3)
    assert torch.allclose(judge.gaussian_blur(flat, torch.tensor([0.0, 1.5])), flat, atol=1e-6)
    edge = torch.zeros(1, 3, 16, 16)
    edge[..., 8:] = 1.0
    blurred = judge.gaussian_blur(edge, torch.tensor([1.0]))
    assert 0.0 < float(blurred[0, 0, 0, 7]) < 0.5 < float(blurred[0, 0, 0, 8]) < 1.0
    assert torch.equal(judge.gaussian_blur(edge, torch.tensor([0.0])), edge)


def test_supervised_contrastive_prefers_embeddings_that_group_identities():
    labels = torch.tensor([0, 0, 1, 1])
    grouped = torch.nn.functional.normalize(torch.tensor([[1.0, 0], [1, 0.1], [0, 1], [0.1, 1]]), dim=-1)
    mixed = grouped[[0, 2, 1, 3]]
    assert training.supervised_contrastive(grouped, labels) < training.supervised_contrastive(mixed, labels)


def test_training_pairs_never_show_a_held_out_instance():
    data = training.render_pairs(12, seed=3)
    assert data.pixels.shape == (24, 3, 64, 64) and -1 <= float(data.pixels.min()) and float(data.pixels.max()) <= 1
    world_labels = {int(i) for i in data.identity if i < 1000}
    assert world_labels and all(world.INSTANCES[i].name not in world.HELD_OUT for i in world_labels)
    assert (data.identity[0::2] == data.identity[1::2]).all()  # pairs share an identity


def test_hard_negative_blocks_pair_a_shape_with_its_recolouring_or_a_colour_with_another_shape():
    data = training.render_pairs(40, seed=5, hard_p=1.0)
    world_labels = {int(i) for i in data.identity if i < 1000}
    assert all(world.INSTANCES[i].name not in world.HELD_OUT for i in world_labels)
    labels = data.identity.view(-1, 4)  # blocks of two identities, two renders each
    assert (labels[:, 0] == labels[:, 1]).all() and (labels[:, 2] == labels[:, 3]).all()
    assert (labels[:, 0] != labels[:, 2]).all()  # the twin is another identity
    orange_cat = world.object_sprite("cat0")
    twin = training.tinted("1F34E", training.main_hue(orange_cat))  # the apple in the cat's orange
    assert abs(training.main_hue(twin) - training.main_hue(orange_cat)) < 0.02
    assert training.main_hue(training.tinted("1F34E", None)) is None  # a grey subject's twin is grey


@pytest.mark.slow
def test_verdicts_are_fractions_and_the_loss_backpropagates():
    torch.manual_seed(0)
    net = judge.JudgeNet()
    data = training.render_pairs(4, seed=0)
    loss, parts = training.judge_loss(net, training.degrade(data.pixels, None, torch.Generator().manual_seed(0)), data)
    loss.backward()
    assert all(p.grad is not None for p in net.parameters()) and set(parts) == {"contrastive", "class", "context"}
    images = [world.render(world.Scene("dog3", c), i) for i, c in enumerate(("snow", "beach"))]
    result = judge.verdicts(net.eval(), images, "dog3", ["snow", "beach"])
    assert set(result) == {"identity", "identity_all", "context", "class", "similarity"} and all(
        0 <= result[k] <= 1 for k in ("identity", "context", "class")
    )
