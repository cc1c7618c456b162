"""Issue 34's model questions: continue the shipped miniature UNet's pretraining under another recipe.

Seeds ``--root`` with the shipped mini CLIP and VAE, fine-tunes the shipped UNet's weights with ``--recipe`` (a
unet-stage recipe that resumes from its checkpoints, so it spans sessions), and assembles ``--root``/model, a
pipeline folder with the shipped judge. Recipes: ``configs/miniature/unet_head_dim_32.yaml`` (heads of dimension
32; experiments/head-dim-32) and ``configs/miniature/unet_outlines.yaml`` (500 more glyph outlines in every
context; experiments/wider-outlines). Then compare it with the shipped model (the records say how):

    python benchmarks/continue_unet.py --recipe configs/miniature/unet_outlines.yaml --root runs/miniature-outlines
    python benchmarks/miniature_quality.py --model runs/miniature-outlines/model
    python benchmarks/miniature_methods.py --half new-tuning --seeds 0 --methods lora+prior \\
        --root runs/outlines-new-tuning --model runs/miniature-outlines/model
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
    from pretrain_miniature_device import seed_clip, seed_vae

    from dreamtune.miniature.assemble import MODEL_DIR, assemble
    from dreamtune.miniature.pretrain import pretrain

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--recipe", required=True, help="a unet-stage recipe, e.g. configs/miniature/unet_outlines.yaml"
    )
    parser.add_argument("--root", required=True, help="where the stage and the assembled model go")
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
    pretrain(Path(args.recipe), overrides)
    print(f"unet stage: {time.time() - started:.0f} s wall this call")
    print(f"wrote {assemble(root, root / 'model')}")


if __name__ == "__main__":
    main()
