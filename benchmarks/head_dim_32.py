"""Issue 34's model question: does the miniature learn new shapes better with attention heads of dimension 32?

Seeds ``--root`` with the shipped mini CLIP and VAE, fine-tunes the shipped UNet's weights with heads of dim 32
(``configs/miniature/unet_head_dim_32.yaml``: 2 / 4 / 6 heads instead of 32 of dim 4 / 6; resumes from its
checkpoints, so it spans sessions), and assembles ``--root``/model, a pipeline folder with the shipped judge.
Then compare it with the shipped model (the record in experiments/head-dim-32 says how):

    python benchmarks/head_dim_32.py [--root runs/miniature-h32] [--steps 600]
    python benchmarks/miniature_quality.py --model runs/miniature-h32/model
    python benchmarks/miniature_methods.py --half new-tuning --seeds 0 --methods lora+prior \\
        --root runs/h32-new-tuning --model runs/miniature-h32/model
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

RECIPE = ROOT / "configs" / "miniature" / "unet_head_dim_32.yaml"


def main() -> None:
    from pretrain_miniature_device import seed_clip, seed_vae

    from dreamtune.miniature.assemble import MODEL_DIR, assemble
    from dreamtune.miniature.pretrain import pretrain

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=str(ROOT / "runs" / "miniature-h32"))
    parser.add_argument("--steps", type=int, default=0, help="train.steps (0: the recipe's)")
    parser.add_argument("--extra", nargs="*", default=[], help="more overrides of the recipe")
    args = parser.parse_args()
    root = Path(args.root)
    seed_clip(root)
    seed_vae(root)
    overrides = [
        f"root={root}",
        f"unet_init={MODEL_DIR / 'unet'}",
        *([f"train.steps={args.steps}"] if args.steps else []),
        *args.extra,
    ]
    started = time.time()
    pretrain(RECIPE, overrides)
    print(f"unet stage: {time.time() - started:.0f} s wall this call")
    print(f"wrote {assemble(root, root / 'model')}")


if __name__ == "__main__":
    main()
