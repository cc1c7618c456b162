"""bf16 against fp32 on this CPU: the miniature UNet's forward (sampling) and forward + backward (a
training step's core), interleaved, with the CPU's bf16 instructions named. training/cpu_precision.py
acts on the answer: auto mode computes in fp32 where bf16 is emulated.

    python benchmarks/cpu_precision.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from dreamtune.miniature.assemble import MODEL_DIR  # noqa: E402
from dreamtune.training.cpu_precision import native_bf16  # noqa: E402


def cpu_name() -> str:
    info = Path("/proc/cpuinfo")
    if info.is_file():
        for line in info.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def timed(unet, mode: str, backward: bool, repeats: int) -> float:
    size = unet.config.sample_size
    latents = torch.randn(4, unet.config.in_channels, size, size)
    steps = torch.randint(0, 1000, (4,))
    text = torch.randn(4, 16, unet.config.cross_attention_dim)
    seconds = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=mode == "bf16"), torch.set_grad_enabled(backward):
            out = unet(latents, steps, text).sample
        if backward:
            out.float().square().mean().backward()
            unet.zero_grad(set_to_none=True)
        seconds.append(time.perf_counter() - start)
    return sorted(seconds[1:])[len(seconds[1:]) // 2]  # the median, the first (warm-up) call dropped


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    from diffusers import UNet2DConditionModel

    unet = UNet2DConditionModel.from_pretrained(MODEL_DIR, subfolder="unet")
    print(
        f"CPU: {cpu_name()}, {torch.get_num_threads()} threads, "
        f"bf16 instructions (AVX512-BF16 / AMX): {native_bf16()}; PyTorch {torch.__version__}"
    )
    print("| miniature UNet, batch 4 | fp32 | bf16 autocast | bf16 / fp32 |\n|---|---|---|---|")
    for backward, label in ((False, "forward (sampling)"), (True, "forward + backward (training)")):
        fp32, bf16 = [], []
        for _ in range(2):  # interleaved, so a change of load hits both
            fp32.append(timed(unet, "fp32", backward, args.repeats))
            bf16.append(timed(unet, "bf16", backward, args.repeats))
        a, b = min(fp32), min(bf16)
        print(f"| {label} | {a * 1000:.0f} ms | {b * 1000:.0f} ms | {b / a:.1f}x |")


if __name__ == "__main__":
    main()
