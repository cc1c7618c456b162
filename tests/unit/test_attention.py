"""The CPU attention policy: short-key attention in fp32, same results, gradients and dtypes."""

import torch
import torch.nn.functional as F

from dreamtune.models.attention import SHORT_KEYS, ShortAttentionProcessor, short_attention, use_short_attention_in_fp32


def _qkv(queries: int, keys: int, dtype=torch.bfloat16):
    torch.manual_seed(0)
    return [torch.randn(2, 3, n, 16, dtype=dtype, requires_grad=True) for n in (queries, keys, keys)]


def test_short_attention_matches_the_fp32_reference_and_keeps_dtype_and_gradients():
    q, k, v = _qkv(64, 40)
    reference = F.scaled_dot_product_attention(q.float(), k.float(), v.float())
    positional = short_attention(q, k, v)
    assert positional.dtype == torch.bfloat16
    assert torch.allclose(positional.float(), reference, atol=1e-2)
    positional.float().sum().backward()
    assert q.grad is not None and q.grad.dtype == torch.bfloat16 and torch.isfinite(q.grad).all()


def test_mask_and_scale_are_passed_through():
    q, k, v = _qkv(8, 8)
    mask = torch.zeros(8, 8, dtype=torch.bfloat16)
    mask[:, 4:] = float("-inf")
    masked = short_attention(q, k, v, mask, scale=0.5)
    reference = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), mask.float(), scale=0.5)
    assert torch.allclose(masked.float(), reference, atol=1e-2)


def test_long_fp32_and_gradient_free_attention_are_left_to_pytorch():
    q, k, v = _qkv(4, SHORT_KEYS + 1)
    assert torch.equal(short_attention(q, k, v), F.scaled_dot_product_attention(q, k, v))
    q, k, v = _qkv(4, 8)
    reference = F.scaled_dot_product_attention(q, k, v)
    with torch.no_grad():  # sampling: bf16 is the faster kernel without a backward
        assert torch.equal(short_attention(q, k, v), reference)
    q, k, v = _qkv(4, 8, torch.float32)
    reference = F.scaled_dot_product_attention(q, k, v)
    assert torch.equal(short_attention(q, k, v), reference)


def test_processor_keeps_the_policy_inside_gradient_checkpointing_and_matches_the_default():
    from torch.utils.checkpoint import checkpoint

    from dreamtune.models.tiny import _unet

    torch.manual_seed(0)
    plain = _unet("sd1").to(torch.bfloat16)
    policy = _unet("sd1").to(torch.bfloat16)
    policy.load_state_dict(plain.state_dict())
    assert use_short_attention_in_fp32(policy) == len(policy.attn_processors) > 0
    assert all(isinstance(p, ShortAttentionProcessor) for p in policy.attn_processors.values())
    sample = torch.randn(2, 4, 16, 16, dtype=torch.bfloat16, requires_grad=True)
    context = torch.randn(2, 7, 32, dtype=torch.bfloat16)
    run = lambda unet, x: unet(x, torch.tensor([10, 900]), context).sample
    reference = run(plain, sample)
    out = checkpoint(lambda x: run(policy, x), sample, use_reentrant=False)  # recomputed in the backward
    assert (out.float() - reference.float()).abs().max() < 0.05 * reference.float().abs().max()
    out.float().square().mean().backward()
    assert sample.grad is not None and torch.isfinite(sample.grad).all()


def test_processor_is_diffusers_attention_exactly_where_the_policy_does_not_apply():
    """fp32 (and sampling): the written-out processor must compute what diffusers' own does, for
    self- and cross-attention, with a mask, group norm and a residual."""
    from diffusers.models.attention_processor import Attention, AttnProcessor2_0

    from dreamtune.models.tiny import _unet

    torch.manual_seed(0)
    plain = _unet("sd1")
    policy = _unet("sd1")
    policy.load_state_dict(plain.state_dict())
    use_short_attention_in_fp32(policy)
    sample, context = torch.randn(2, 4, 16, 16), torch.randn(2, 7, 32)
    assert torch.equal(
        plain(sample, torch.tensor([10, 900]), context).sample, policy(sample, torch.tensor([10, 900]), context).sample
    )
    block = Attention(
        query_dim=8,
        cross_attention_dim=6,
        heads=2,
        dim_head=4,
        norm_num_groups=2,
        residual_connection=True,
        rescale_output_factor=2.0,
    )
    images, text = torch.randn(2, 8, 3, 3), torch.randn(2, 5, 6)
    mask = torch.zeros(2, 5)
    mask[:, 3:] = -10000.0
    results = []
    for processor in (AttnProcessor2_0(), ShortAttentionProcessor()):
        block.set_processor(processor)
        results.append(block(images, text, attention_mask=mask))
    assert results[1].shape == images.shape and torch.allclose(results[0], results[1], atol=1e-6)
