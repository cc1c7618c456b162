"""The CPU attention policy: short-key attention in fp32, same results, gradients and dtypes."""
import torch
import torch.nn.functional as F

from dreamtune.models.attention import SHORT_KEYS, fast_attention


def _qkv(queries: int, keys: int, dtype=torch.bfloat16):
    torch.manual_seed(0)
    return [torch.randn(2, 3, n, 16, dtype=dtype, requires_grad=True) for n in (queries, keys, keys)]


def test_short_attention_matches_the_fp32_reference_and_keeps_dtype_and_gradients():
    q, k, v = _qkv(64, 40)
    reference = F.scaled_dot_product_attention(q.float(), k.float(), v.float())
    with fast_attention("cpu"):
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
    with fast_attention("cpu"):
        masked = F.scaled_dot_product_attention(q, k, v, mask, scale=0.5)
    reference = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), mask.float(), scale=0.5)
    assert torch.allclose(masked.float(), reference, atol=1e-2)


def test_long_fp32_and_gradient_free_attention_are_left_to_pytorch():
    q, k, v = _qkv(4, SHORT_KEYS + 1)
    with fast_attention("cpu"):
        out = F.scaled_dot_product_attention(q, k, v)
    assert torch.equal(out, F.scaled_dot_product_attention(q, k, v))
    q, k, v = _qkv(4, 8)
    reference = F.scaled_dot_product_attention(q, k, v)
    with fast_attention("cpu"), torch.no_grad():     # sampling: bf16 is the faster kernel without a backward
        assert torch.equal(F.scaled_dot_product_attention(q, k, v), reference)
    q, k, v = _qkv(4, 8, torch.float32)
    reference = F.scaled_dot_product_attention(q, k, v)
    with fast_attention("cpu"):
        assert torch.equal(F.scaled_dot_product_attention(q, k, v), reference)
