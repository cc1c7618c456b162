"""A FLUX.1-dev-wide pipeline with few blocks (random fp16 weights, a one-layer T5 of T5-XXL's width):
a model small enough to train in a minute on a CPU whose per-block costs scale to the 57-block original.
Used to find what grows with the number of blocks (experiments/cpu-heap-fragments).

    python benchmarks/flux_width_probe.py FOLDER --double 2 --single 4
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    import torch

    from benchmarks.full_size_smoke import build_flux1_dev

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder")
    parser.add_argument("--double", type=int, default=2, help="double-stream blocks (FLUX.1-dev: 19)")
    parser.add_argument("--single", type=int, default=4, help="single-stream blocks (FLUX.1-dev: 38)")
    args = parser.parse_args()
    torch.manual_seed(0)
    folder = build_flux1_dev(Path(args.folder), blocks=(args.double, args.single), t5_layers=1)
    print(f"FLUX.1-dev width, {args.double} + {args.single} blocks, in {folder}")


if __name__ == "__main__":
    main()
