"""The CPU attention policy: short-key attention in fp32, same results, gradients and dtypes."""
import torch
import torch.nn.functional as F

from dreamtune.models.attention import SHORT_KEYS, ShortAttentionInFp32, ShortAttentionProcessor, use_short_attention_in_fp32


def _qkv(queries: int, keys: int, dtype=torch.bfloat16):
    torch.manual_seed(0)
    return [torch.randn(2, 3, n, 16, dtype=dtype, requires_grad=True) for n in (queries, keys, keys)]


def test_short_attention_matches_the_fp32_reference_and_keeps_dtype_and_gradients():
    q, k, v = _qkv(64, 40)
    reference = F.scaled_dot_product_attention(q.float(), k.float(), v.float())
    with ShortAttentionInFp32():
        positional = F.scaled_dot_product_attention(q, k, v)
        keyword = F.scaled_dot_product_attention(query=q, key=k, value=v)
    assert positional.dtype == torch.bfloat16 and torch.equal(positional, keyword)
    assert torch.allclose(positional.float(), reference, atol=1e-2)
    positional.float().sum().backward()
    assert q.grad is not None and q.grad.dtype == torch.bfloat16 and torch.isfinite(q.grad).all()


def test_mask_and_scale_are_passed_through():
    q, k, v = _qkv(8, 8)
    mask = torch.zeros(8, 8, dtype=torch.bfloat16)
    mask[:, 4:] = float("-inf")
    with ShortAttentionInFp32():
        masked = F.scaled_dot_product_attention(q, k, v, mask, scale=0.5)
    reference = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), mask.float(), scale=0.5)
    assert torch.allclose(masked.float(), reference, atol=1e-2)


def test_long_fp32_and_gradient_free_attention_are_left_to_pytorch():
    q, k, v = _qkv(4, SHORT_KEYS + 1)
    with ShortAttentionInFp32():
        out = F.scaled_dot_product_attention(q, k, v)
    assert torch.equal(out, F.scaled_dot_product_attention(q, k, v))
    q, k, v = _qkv(4, 8)
    reference = F.scaled_dot_product_attention(q, k, v)
    with ShortAttentionInFp32(), torch.no_grad():     # sampling: bf16 is the faster kernel without a backward
        assert torch.equal(F.scaled_dot_product_attention(q, k, v), reference)
    q, k, v = _qkv(4, 8, torch.float32)
    reference = F.scaled_dot_product_attention(q, k, v)
    with ShortAttentionInFp32():
        assert torch.equal(F.scaled_dot_product_attention(q, k, v), reference)


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
    out = checkpoint(lambda x: run(policy, x), sample, use_reentrant=False)   # recomputed in the backward
    assert (out.float() - reference.float()).abs().max() < 0.05 * reference.float().abs().max()
    out.float().square().mean().backward()
    assert sample.grad is not None and torch.isfinite(sample.grad).all()
