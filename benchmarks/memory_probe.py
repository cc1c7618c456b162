"""Is ``train.gradient_checkpointing: auto``'s estimate right? Measure the activations one denoiser
forward keeps for the backward (``training/memory_plan.saved_activation_bytes``) at several sizes
of a full-size random-weight model (bf16, frozen weights, as a LoRA run has them), and compare what
the 256-px probe scaled by area predicts with the direct measurement.

    python benchmarks/memory_probe.py --family sd15 --sides 256,512     # or sdxl (builds the model once, fp16 safetensors)
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", choices=["sd15", "sdxl"], default="sd15")
    parser.add_argument("--sides", default="256,512", help="comma-separated resolutions (px); the first is the probe")
    parser.add_argument("--work", default=str(ROOT / "runs" / "full_size"))
    args = parser.parse_args()

    import torch
    from full_size_smoke import build

    from dreamtune import config
    from dreamtune.methods import METHODS
    from dreamtune.models.attention import use_short_attention_in_fp32
    from dreamtune.models.loading import ComponentDtypes, load_components
    from dreamtune.models.precision import forward_in_weight_dtype
    from dreamtune.training import memory_plan

    model = build(args.family, Path(args.work) / f"{args.family}-fp16")
    components = load_components(
        config.load(None, [f"model.pretrained={model}"]).model,
        ComponentDtypes.for_training(METHODS["lora"], False, "bf16"),
    )
    for parameter in components.denoiser.parameters():
        parameter.requires_grad_(False)
    components.denoiser.to(torch.bfloat16)
    forward_in_weight_dtype(components.denoiser, torch.bfloat16)
    use_short_attention_in_fp32(components.denoiser)
    no_autocast = lambda: torch.autocast("cpu", enabled=False)
    sides = [int(s) for s in args.sides.split(",")]
    measured = {}
    for side in sides:
        started = time.perf_counter()
        measured[side] = memory_plan.saved_activation_bytes(components, side, no_autocast)
        print(
            f"{args.family} {side} px: {measured[side] / 2**30:.3f} GiB kept for the backward ({time.perf_counter() - started:.1f} s)",
            flush=True,
        )
    probe = sides[0]
    for side in sides[1:]:
        estimate = measured[probe] * (side / probe) ** 2
        print(
            f"{side} px estimated from the {probe}-px probe: {estimate / 2**30:.3f} GiB vs measured {measured[side] / 2**30:.3f} "
            f"({100 * (estimate / measured[side] - 1):+.0f} %)"
        )


if __name__ == "__main__":
    main()
