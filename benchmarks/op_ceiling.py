"""The best share of the matmul peak a LoRA training step can reach with PyTorch's own kernels (issue 16).

    python benchmarks/op_ceiling.py [--model PATH] [--batch 4] [--rank 4] [--resolution PX] [--json OUT]

Records every ATen op of one steady step of benchmarks/step_floor.py's floor-dreamtune (frozen bf16
UNet, LoRA r4 on to_q/k/v/out, fwd + bwd + fused AdamW), then replays each op alone — same shapes,
strides and dtypes, random data, warmed up, best of several timings — and sums:

  step         the measured step (the floor every trainer stands on)
  all ops      every op back to back at its isolated best: the step with zero Python, zero framework
  flop ops     only the ops that do FLOPs (matmuls, convolutions, attention) at their isolated best

and divides the step's FLOPs (counted per op by torch.utils.flop_counter: the LoRA step's own work, no
gradients of frozen weights) by each. "flop ops" is a ceiling no eager trainer can pass: even if
everything else cost nothing, the step could not run at a larger share of the peak than its kernels do at
these shapes. Per op family it prints the kernels' own GFLOP/s, and the sizes where they reach the peak.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_map
from torch.utils.flop_counter import flop_registry, sdpa_backward_flop_count, sdpa_flop_count

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from matmul_peak import peak_gflops  # noqa: E402
from step_floor import build, latent_side, one_step, prompt_length, step_inputs, time_steps  # noqa: E402

FAMILIES = {"convolution": ("convolution",), "matmul": ("mm", "addmm", "bmm"), "attention": ("scaled_dot_product",)}


def family_of(op) -> str:
    name = op.overloadpacket.__name__
    return next((family for family, parts in FAMILIES.items() if any(part in name for part in parts)), "other")


def flops_of(func, args, kwargs, out) -> int:
    """torch.utils.flop_counter's count, plus CPU attention, which its registry leaves out."""
    packet = func.overloadpacket
    if packet is torch.ops.aten._scaled_dot_product_flash_attention_for_cpu:
        return sdpa_flop_count(*(a.shape for a in args[:3]))
    if packet is torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward:
        return sdpa_backward_flop_count(*(a.shape for a in args[:4]))
    return int(flop_registry[packet](*args, **kwargs, out_val=out)) if packet in flop_registry else 0


class TensorSpec:
    """What a replay needs of a tensor: shape, strides, dtype (its data does not change a kernel's time)."""

    def __init__(self, tensor: torch.Tensor):
        self.shape, self.stride, self.dtype = tuple(tensor.shape), tuple(tensor.stride()), tensor.dtype

    def key(self):
        return (self.shape, self.stride, self.dtype)

    def make(self) -> torch.Tensor:
        span = 1 + sum((size - 1) * step for size, step in zip(self.shape, self.stride)) if all(self.shape) else 0
        storage = torch.empty(span, dtype=self.dtype)
        if self.dtype.is_floating_point:
            storage.normal_()
        elif self.dtype == torch.bool:
            storage.fill_(True)
        else:
            storage.zero_()
        return storage.as_strided(self.shape, self.stride)


class OpRecorder(TorchDispatchMode):
    """Every ATen call of the region: (op, argument specs, FLOPs)."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        flops = flops_of(func, args, kwargs, out)
        spec = tree_map(lambda v: TensorSpec(v) if isinstance(v, torch.Tensor) else v, (args, kwargs))
        self.calls.append((func, spec, int(flops)))
        return out


def recorded_step(unet, optimizer, params, inputs, autocast: bool = False) -> list:
    """The ATen calls of one step, after one step of warm-up."""
    one_step(unet, optimizer, params, inputs, autocast)
    recorder = OpRecorder()
    with recorder:
        one_step(unet, optimizer, params, inputs, autocast)
    return recorder.calls


def step_flops(unet, optimizer, params, inputs) -> int:
    """FLOPs of one LoRA training step (fwd + bwd of what needs gradients, attention included)."""
    return sum(flops for _, _, flops in recorded_step(unet, optimizer, params, inputs))


def spec_key(func, spec):
    return (str(func), repr(tree_map(lambda v: v.key() if isinstance(v, TensorSpec) else v, spec)))


def isolated_seconds(func, spec, budget: float = 0.02) -> float | None:
    """Best time of one call of ``func`` on fresh tensors of ``spec``'s shapes; None if it cannot be replayed."""
    args, kwargs = tree_map(lambda v: v.make() if isinstance(v, TensorSpec) else v, spec)
    try:
        for _ in range(3):
            func(*args, **kwargs)
    except Exception:
        return None
    best, end = float("inf"), time.perf_counter() + budget
    while time.perf_counter() < end or best == float("inf"):
        start = time.perf_counter()
        func(*args, **kwargs)
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(ROOT / "dreamtune" / "miniature" / "model"))
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--rank", type=int, default=4)
    parser.add_argument(
        "--resolution", type=int, default=None, help="image side in pixels; default: the UNet's sample size"
    )
    parser.add_argument("--steps", type=int, default=40, help="steps timed for the measured step rate")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    model = Path(args.model)
    unet, optimizer, params = build(model, args.rank, dreamtune_policies=True)
    side = latent_side(model, args.resolution) if args.resolution else unet.config.sample_size
    tokens = prompt_length(model)
    step_rate = statistics.median(
        time_steps(unet, optimizer, params, args.batch, tokens, args.steps, autocast=False, side=side) for _ in range(3)
    )
    calls = recorded_step(unet, optimizer, params, step_inputs(unet, args.batch, tokens, side))
    peak = peak_gflops("bf16")

    timings, skipped = {}, 0
    totals = defaultdict(lambda: {"calls": 0, "flops": 0, "seconds": 0.0})
    others = defaultdict(float)
    for func, spec, flops in calls:
        key = spec_key(func, spec)
        if key not in timings:
            timings[key] = isolated_seconds(func, spec)
        seconds = timings[key]
        if seconds is None:
            skipped += 1
            continue
        family = family_of(func) if flops else "other"
        if family == "other":
            others[func.overloadpacket.__name__] += seconds
        for name in (family, "all ops") + (("flop ops",) if flops else ()):
            totals[name]["calls"] += 1
            totals[name]["flops"] += flops
            totals[name]["seconds"] += seconds
    flops_a_step = totals["all ops"]["flops"]
    step_seconds = 1 / step_rate
    print(
        f"model {model.name} batch {args.batch} latents {side}² LoRA r{args.rank}; "
        f"{len(calls)} ops a step ({skipped} not replayable, left out); {flops_a_step / 1e9:.2f} GFLOP a step; "
        f"bf16 matmul peak {peak:.0f} GFLOP/s"
    )
    rows = {"step (measured)": (step_seconds, flops_a_step)}
    rows.update({name: (totals[name]["seconds"], flops_a_step) for name in ("all ops", "flop ops")})
    print("\n| time a step | ms | GFLOP/s | % of matmul peak |\n|---|---|---|---|")
    for name, (seconds, flops) in rows.items():
        print(
            f"| {name} | {1000 * seconds:.1f} | {flops / seconds / 1e9:.0f} | {100 * flops / seconds / 1e9 / peak:.1f} % |"
        )
    print(
        "\n| op family | calls | GFLOP | ms at isolated best | kernels' GFLOP/s | % of peak |\n|---|---|---|---|---|---|"
    )
    for name in (*FAMILIES, "other"):
        t = totals[name]
        if t["calls"]:
            rate = t["flops"] / t["seconds"] / 1e9 if t["seconds"] else 0
            print(
                f"| {name} | {t['calls']} | {t['flops'] / 1e9:.2f} | {1000 * t['seconds']:.1f} | {rate:.0f} | {100 * rate / peak:.1f} % |"
            )
    print(
        "\nlargest ops without FLOPs (ms a step at isolated best): "
        + ", ".join(f"{name} {1000 * s:.1f}" for name, s in sorted(others.items(), key=lambda kv: -kv[1])[:8])
    )
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "peak_gflops": peak,
                    "step_flops": flops_a_step,
                    "step_seconds": step_seconds,
                    "batch": args.batch,
                    "latent_side": side,
                    "totals": totals,
                    "skipped": skipped,
                },
                indent=1,
            )
        )


if __name__ == "__main__":
    main()
