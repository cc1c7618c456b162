"""Can the print reward be gamed by throwing colour away? (issue 15)

    python benchmarks/print_reward_sanity.py [--profile X.icc] [--intent perceptual] [--size 256]

Scores real photos (../shared/dreambench, when present) and miniature ground-truth scenes, each
transformed the ways a reward hacker would (greyscale, half saturation, lifted blacks, blur, noise)
and, for comparison, soft-proofed by LittleCMS itself (the honest thing a printer does). The
reference ("what the image is meant to look like") is always the untransformed image. Prints one
row per transform: the reward, its parts, and the CIEDE2000 drift of the printed result from the
intended image; writes experiments/print-reward-gaming/print_reward_sanity.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from dreamtune.rewards.colour import ciede2000, luminance, srgb_to_lab  # noqa: E402
from dreamtune.rewards.print_proof import PrintProof, littlecms_proof  # noqa: E402


def gaussian_blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    radius = int(3 * sigma) + 1
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-(offsets**2) / (2 * sigma**2))
    kernel = (kernel / kernel.sum()).to(images.dtype)
    c = images.shape[1]
    out = torch.nn.functional.pad(images, (radius,) * 4, mode="reflect")
    out = torch.nn.functional.conv2d(out, kernel.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    return torch.nn.functional.conv2d(out, kernel.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)


def transforms(reward: PrintProof) -> dict:
    grey = lambda x: luminance(x).unsqueeze(1).expand_as(x)  # noqa: E731
    return {
        "original": lambda x: x,
        "soft proof (LittleCMS)": lambda x: littlecms_proof(x, reward.profile, reward.intent),
        "greyscale": grey,
        "half saturation": lambda x: x + 0.5 * (grey(x) - x),
        "lifted blacks (0.2 + 0.8 x)": lambda x: 0.2 + 0.8 * x,
        "blur 1.5 px": lambda x: gaussian_blur(x, 1.5),
        "noise σ 0.05": lambda x: (x + 0.05 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))).clamp(
            0, 1
        ),
    }


def load_images(size: int) -> tuple[torch.Tensor, list[str]]:
    import numpy as np
    from PIL import Image

    from dreamtune.miniature import scenery, world

    images, names = [], []
    bench = ROOT.parent / "shared" / "dreambench"
    for folder in sorted(p for p in bench.glob("*") if p.is_dir())[:30]:
        photo = sorted(folder.glob("*.jp*g"))[:1]
        if photo:
            image = Image.open(photo[0]).convert("RGB")
            side = min(image.size)
            left, top = (image.width - side) // 2, (image.height - side) // 2
            images.append(image.crop((left, top, left + side, top + side)).resize((size, size), Image.LANCZOS))
            names.append(f"dreambench/{folder.name}")
    for k, name in enumerate(world.HELD_OUT):
        context = list(scenery.PHRASES)[k % len(scenery.PHRASES)]
        images.append(world.render(world.Scene(name, context), 90_000 + k).resize((size, size), Image.LANCZOS))
        names.append(f"miniature/{name}")
    array = np.stack([np.asarray(i, dtype=np.float32) / 255 for i in images])
    return torch.from_numpy(array).permute(0, 3, 1, 2), names


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile")
    parser.add_argument("--intent", default="perceptual")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--out", default=str(ROOT / "experiments" / "print-reward-gaming" / "print_reward_sanity.json"))
    args = parser.parse_args()
    reward = PrintProof(args.profile, args.intent)
    images, names = load_images(args.size)
    rows = {}
    for label, transform in transforms(reward).items():
        changed = transform(images)
        parts = reward.parts(changed, [""] * len(images), {"reference": images})
        total = reward(changed, [""] * len(images), {"reference": images})
        drift = (
            ciede2000(srgb_to_lab(images), srgb_to_lab(littlecms_proof(changed, reward.profile, reward.intent)))
            .flatten(1)
            .mean(1)
        )
        wins = (
            total
            > reward(littlecms_proof(images, reward.profile, reward.intent), [""] * len(images), {"reference": images})
        ).float()
        rows[label] = {
            "reward": float(total.mean()),
            **{k: float(v.mean()) for k, v in parts.items()},
            "delta_e00_print_vs_intended": float(drift.mean()),
            "share_beating_soft_proof": float(wins.mean()),
        }
    (Path(args.out)).write_text(
        json.dumps({"profile": str(reward.profile), "intent": args.intent, "images": names, "rows": rows}, indent=1)
    )
    print(
        f"{len(images)} images ({sum(n.startswith('dreambench') for n in names)} DreamBench photos, "
        f"{sum(n.startswith('miniature') for n in names)} miniature scenes), profile {reward.profile}, intent {args.intent}\n"
    )
    print(
        "| transform | reward | "
        + " | ".join(PrintProof.PARTS)
        + " | ΔE00 print vs intended | images beating the soft proof |"
    )
    print("|---|---|" + "---|" * len(PrintProof.PARTS) + "---|---|")
    for label, row in rows.items():
        print(
            f"| {label} | {row['reward']:.3f} | "
            + " | ".join(f"{row[p]:.3f}" for p in PrintProof.PARTS)
            + f" | {row['delta_e00_print_vs_intended']:.1f} | {100 * row['share_beating_soft_proof']:.0f} % |"
        )


if __name__ == "__main__":
    main()
