"""The instruments behind the speed figures (benchmarks/op_ceiling.py, step_floor.py, vs_diffusers.py):
the FLOPs of a step and the latent size they are counted at must be right before any "% of peak" is."""

import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
MINIATURE = ROOT / "dreamtune" / "miniature" / "model"

from op_ceiling import OpRecorder, TensorSpec, isolated_seconds, recorded_step, step_flops  # noqa: E402
from step_floor import build, latent_side, prompt_length, step_inputs  # noqa: E402


def test_latent_side_follows_the_vae_not_a_fixed_factor_of_eight():
    # the miniature's VAE has 3 blocks (x4); counting at 64 / 8 once undercounted its step 2.3x
    assert latent_side(MINIATURE, 64) == 16
    assert latent_side(MINIATURE, 128) == 32


def test_matmul_and_cpu_attention_flops_are_counted_exactly():
    a, b = torch.randn(8, 16), torch.randn(16, 4)
    q, k, v = (torch.randn(1, 2, n, 8, requires_grad=True) for n in (5, 3, 3))
    recorder = OpRecorder()
    with recorder:
        a @ b
        torch.nn.functional.scaled_dot_product_attention(q, k, v).sum().backward()
    counted = {str(func).split(".")[1]: flops for func, _, flops in recorder.calls if flops}
    assert counted["mm"] == 2 * 8 * 16 * 4
    # forward: QK^T and PV, 2 * (1*2) * 5 * 3 * 8 each; the backward, 5 such products (the scores recomputed), is 2.5x that
    assert counted["_scaled_dot_product_flash_attention_for_cpu"] == 2 * 2 * 2 * 5 * 3 * 8
    assert counted["_scaled_dot_product_flash_attention_for_cpu_backward"] == 5 * 2 * 2 * 5 * 3 * 8


@pytest.mark.slow
def test_a_lora_step_counts_the_frozen_unet_forward_but_not_its_weight_gradients():
    unet, optimizer, params = build(MINIATURE, rank=4, dreamtune_policies=True)
    inputs = step_inputs(unet, 1, prompt_length(MINIATURE), latent_side(MINIATURE, 64))
    calls = recorded_step(unet, optimizer, params, inputs)
    names = {str(func) for func, _, flops in calls if flops}
    assert "aten._scaled_dot_product_flash_attention_for_cpu_backward.default" in names
    forward = sum(flops for func, _, flops in calls if str(func) == "aten.convolution.default")
    backward = sum(flops for func, _, flops in calls if str(func) == "aten.convolution_backward.default")
    # frozen convolutions need only their input gradient (about one forward's work), never 2x
    assert 0.5 * forward < backward < 1.1 * forward
    assert step_flops(unet, optimizer, params, inputs) == sum(flops for _, _, flops in calls)


def test_an_op_is_replayed_at_its_shapes_and_one_that_cannot_be_is_left_out():
    recorder = OpRecorder()
    with recorder:
        torch.randn(32, 32) @ torch.randn(32, 32)
    func, spec, _ = next(call for call in recorder.calls if "mm" in str(call[0]))
    assert 0 < isolated_seconds(func, spec, budget=0.005) < 1
    mismatched = ((TensorSpec(torch.empty(32, 32)), TensorSpec(torch.empty(5, 7))), {})
    assert isolated_seconds(func, mismatched, budget=0.005) is None
