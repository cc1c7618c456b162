"""The measured matmul peak of this machine, in GFLOP/s, as stable as one process can make it.

One 2048² matmul timed 20 times read 568 to 1818 GFLOP/s in four runs of vs_diffusers.py (AMX clock
ramps, oneDNN's first-call JIT, what else ran that minute). Here each size is warmed up for a
while, then timed in several trials, and the best trial of the best size is the peak; run it as a
child of the same Python the trainers use, right before each timed run, so that a trainer's
"% of peak" compares it with the machine as it was that minute.

On a machine with a CUDA GPU it measures the GPU (sizes up to 8192², each timing synchronized).

    python benchmarks/matmul_peak.py [--dtype bf16|no] [--seconds 1.5]   # prints one number: GFLOP/s
"""

from __future__ import annotations

import argparse
import time


def peak_gflops(dtype_name: str = "bf16", seconds: float = 1.5, sizes: tuple[int, ...] | None = None) -> float:
    import torch

    dtype = {"no": torch.float32, "bf16": torch.bfloat16}[dtype_name]
    device = "cuda" if torch.cuda.is_available() else "cpu"
    sizes = sizes or ((4096, 8192) if device == "cuda" else (1024, 2048, 4096))
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    best = 0.0
    budget = seconds / len(sizes)
    for n in sizes:
        a, b = torch.randn(n, n, dtype=dtype, device=device), torch.randn(n, n, dtype=dtype, device=device)
        warm_until = time.perf_counter() + budget / 3
        while time.perf_counter() < warm_until:
            a @ b
        sync()
        end = time.perf_counter() + 2 * budget / 3
        while time.perf_counter() < end:  # trials of a few matmuls each; the best one counts
            start, count = time.perf_counter(), 0
            while count < 3 or time.perf_counter() - start < 0.05:
                a @ b
                count += 1
            sync()
            best = max(best, 2 * n**3 * count / (time.perf_counter() - start) / 1e9)
    return best


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtype", choices=["bf16", "no"], default="bf16")
    parser.add_argument("--seconds", type=float, default=1.5)
    args = parser.parse_args()
    print(f"{peak_gflops(args.dtype, args.seconds):.1f}")
