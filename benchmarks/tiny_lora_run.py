"""Speed and memory of a tiny LoRA DreamBooth run (prior preservation on) on this machine.

    python benchmarks/tiny_lora_run.py [--steps 60] [--precision no bf16]

Prints steps/s of the training loop (class-image generation and loading excluded) and the
process's peak resident memory. Figures, not asserts: compare runs on the same machine.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dreamtune import config  # noqa: E402
from dreamtune.models.tiny import build_tiny_pipeline  # noqa: E402
from dreamtune.training.run import train  # noqa: E402
from tests.conftest import make_photos  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--precision", nargs="+", default=["no", "bf16"])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        model = build_tiny_pipeline(root / "tiny", "sd1")
        photos = make_photos(root / "photos", count=5)
        for precision in args.precision:
            overrides = [
                f"model.pretrained={model}",
                f"data.instance_dir={photos}",
                "data.instance_prompt=a photo of sks dog",
                "data.resolution=32",
                f"train.output_dir={root / ('run-' + precision)}",
                f"train.steps={args.steps}",
                "prior.enabled=true",
                "prior.class_prompt=a photo of dog",
                "prior.num_class_images=4",
                "prior.sample_steps=4",
                f"train.mixed_precision={precision}",
                "train.batch_size=2",
            ]
            start = time.perf_counter()
            result = train(config.load(None, overrides), show_progress=False, log=lambda *_: None)
            total = time.perf_counter() - start
            peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            first, last = result.history[0], result.history[-1]
            steps_per_s = (last["step"] - first["step"]) / max(1e-9, last["seconds"] - first["seconds"])
            print(
                f"tiny LoRA run, precision={precision}: {args.steps} steps (batch 2 + 2 class images), "
                f"{steps_per_s:.1f} steps/s in the loop, {total:.1f} s end to end, peak RSS {peak_mb:.0f} MB, "
                f"final loss {result.history[-1]['loss']:.4f}"
            )


if __name__ == "__main__":
    main()
