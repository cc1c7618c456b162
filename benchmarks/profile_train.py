"""Profile the steady optimizer steps of any trainer with torch.profiler, without touching its code:
the profiler advances on torch's global optimizer-step hook (as benchmarks/step_timer.py times them),
skips the first --skip steps (warm-up, lazy init) and records the next --active. At exit it prints the
ops that take the most self time, and the share of each op family, and writes a Chrome trace.

    python benchmarks/profile_train.py --skip 30 --active 20 --trace runs/profile.json -m dreamtune.cli train RECIPE ...
    python benchmarks/profile_train.py --skip 30 --active 20 path/to/train_dreambooth_lora.py ...
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import runpy
import sys
from collections import defaultdict

import torch
from torch.optim.optimizer import register_optimizer_step_post_hook
from torch.profiler import ProfilerActivity, profile, schedule

FAMILIES = {  # op-name fragments -> a family people reason about
    "matmul / linear": ("mm", "addmm", "bmm", "linear", "matmul", "baddbmm"),
    "convolution": ("conv", "mkldnn_convolution"),
    "attention": ("scaled_dot_product", "_flash", "softmax"),
    "normalization": ("group_norm", "layer_norm", "native_group_norm", "native_layer_norm"),
    "dtype casts / copies": ("to", "_to_copy", "copy_", "clone", "contiguous"),
    "optimizer": ("adam", "_foreach", "lerp", "addcdiv", "addcmul", "sqrt"),
    "elementwise": ("add", "mul", "silu", "gelu", "sub", "div", "cat", "pow", "mean", "sum", "fill_", "zero_"),
}


def family_of(name: str) -> str:
    base = name.split("::")[-1].strip("_").lower()
    for family, fragments in FAMILIES.items():
        if any(base == f.rstrip("_") or base.startswith(f.rstrip("_") + "_") or base.startswith(f) for f in fragments):
            return family
    return "other"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip", type=int, default=30)
    parser.add_argument("--active", type=int, default=20)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--trace", default=None, help="write a Chrome trace (chrome://tracing, Perfetto) here")
    parser.add_argument(
        "--ops", default=None, help="write {op: [calls per step, self ms per step]} as JSON here (to diff two trainers)"
    )
    args, rest = parser.parse_known_args()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
    profiler = profile(
        activities=activities,
        schedule=schedule(wait=max(args.skip - 1, 0), warmup=1, active=args.active, repeat=1),
        record_shapes=False,
    )
    profiler.start()
    register_optimizer_step_post_hook(lambda *_: profiler.step())

    @atexit.register
    def report() -> None:
        profiler.stop()
        events = [e for e in profiler.key_averages() if not e.key.startswith("ProfilerStep")]
        total = sum(e.self_cpu_time_total for e in events) or 1
        families: dict[str, float] = defaultdict(float)
        for event in events:
            families[family_of(event.key)] += event.self_cpu_time_total
        print(
            f"\nprofile of {args.active} steady steps: {total / 1e6 / args.active * 1e3:.1f} ms of op self-time per step",
            flush=True,
        )
        for family, time in sorted(families.items(), key=lambda kv: -kv[1]):
            print(f"  {family:22s} {100 * time / total:5.1f} %")
        print(profiler.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.top), flush=True)
        if args.ops:
            with open(args.ops, "w", encoding="utf-8") as handle:
                json.dump(
                    {e.key: [e.count / args.active, e.self_cpu_time_total / 1e3 / args.active] for e in events},
                    handle,
                    indent=0,
                )
        if args.trace:
            profiler.export_chrome_trace(args.trace)

    if rest[0] == "-m":
        sys.argv = rest[1:]
        runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
    else:
        sys.argv = rest
        sys.path.insert(0, os.path.dirname(os.path.abspath(sys.argv[0])))
        runpy.run_path(sys.argv[0], run_name="__main__")


if __name__ == "__main__":
    main()
