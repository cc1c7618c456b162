"""Which separation keeps an image's look in print? (issue 35, item 4: generate --print-profile)

    python benchmarks/print_pipeline.py [--profile X.icc] [--out experiments/print-pipeline]

Takes real photos (the first photo of every DreamBench subject in ../shared, when present), the
miniature's ground-truth scenes and a chart of saturated sRGB colours (mostly outside any CMYK gamut),
and makes each ready for print through ``dreamtune.sampling.print_ready`` with every rendering intent,
with and without black-point compensation (no resize, no sharpening, so only the separation differs).
Each CMYK result is read back into CIELAB by LittleCMS from the 8-bit data and compared with the image:
mean and 95th-percentile CIEDE2000, share of chroma kept, share of tonal range (L* 1st-99th
percentile) kept. Prints the table, writes print_pipeline.json and a picture (image | soft proofs with
paper white) into --out.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from PIL import Image  # noqa: E402

from dreamtune.sampling.contact_sheet import contact_sheet  # noqa: E402
from dreamtune.sampling.print_ready import INTENTS, PrintSettings, prepare  # noqa: E402

DREAMBENCH = ROOT.parent / "shared" / "dreambench"
DEFAULT_PROFILE = "/usr/share/color/icc/ghostscript/default_cmyk.icc"


def photos(size: int) -> dict[str, Image.Image]:
    found = {}
    if DREAMBENCH.is_dir():
        for folder in sorted(p for p in DREAMBENCH.iterdir() if p.is_dir()):
            first = sorted(folder.glob("*.jpg"))[:1]
            if first:
                image = Image.open(first[0]).convert("RGB")
                image.thumbnail((size, size), Image.Resampling.LANCZOS)
                found[f"photo:{folder.name}"] = image
    return found


def miniature_scenes(count: int) -> dict[str, Image.Image]:
    """The miniature's ground-truth scenes of dog3 in the demo's evaluation contexts (64 px, shown at 256)."""
    from dreamtune.miniature import world
    from dreamtune.miniature.demo import EVAL_CONTEXTS

    return {
        f"miniature:{context}": world.render(world.Scene("dog3", context), 90_000 + index).resize(
            (256, 256), Image.Resampling.NEAREST
        )
        for index, context in enumerate(EVAL_CONTEXTS[:count])
    }


def saturated_chart(size: int = 256) -> Image.Image:
    """Hue ramps at full saturation over rows of lightness: the colours printing must map into its gamut."""
    import colorsys

    image = Image.new("RGB", (size, size))
    for y in range(size):
        for x in range(size):
            r, g, b = colorsys.hls_to_rgb(x / size, 0.15 + 0.7 * y / size, 1.0)
            image.putpixel((x, y), (round(r * 255), round(g * 255), round(b * 255)))
    return image


def shadow_ramp(size: int = 256) -> Image.Image:
    """Dark grey and brown ramps (sRGB 0-80): where black-point compensation decides what survives."""
    image = Image.new("RGB", (size, size))
    for y in range(size):
        for x in range(size):
            v = 80 * x / (size - 1)
            image.putpixel(
                (x, y), (round(v), round(v), round(v)) if y < size // 2 else (round(v), round(v * 0.7), round(v * 0.45))
            )
    return image


def _mean_of_known(values) -> float | None:
    known = [v for v in values if v is not None]
    return round(sum(known) / len(known), 3) if known else None


def settings_grid(profile: str) -> list[tuple[str, PrintSettings]]:
    return [
        (f"{intent}{' + BPC' if bpc else ''}", PrintSettings(profile, intent, bpc, sharpen="none"))
        for intent in INTENTS
        for bpc in (False, True)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--profile", default=DEFAULT_PROFILE)
    parser.add_argument("--size", type=int, default=384)
    parser.add_argument("--out", default=str(ROOT / "experiments" / "print-pipeline"))
    args = parser.parse_args()
    groups = {
        "photos": photos(args.size),
        "chart": {"chart:saturated": saturated_chart()},
        "shadows": {"chart:shadows": shadow_ramp()},
    }
    try:
        groups["miniature"] = miniature_scenes(8)
    except ImportError:
        pass
    rows = {}
    for label, settings in settings_grid(args.profile):
        for group, images in groups.items():
            checks = [prepare(image, settings).check for image in images.values()]
            if checks:
                rows[(label, group)] = {
                    key: round(sum(c[key] for c in checks) / len(checks), 3)
                    for key in ("delta_e00_mean", "delta_e00_p95", "chroma_kept", "tonal_range_kept")
                } | {
                    "images": len(checks),
                    "shadow_detail_kept": _mean_of_known(c["shadow_detail_kept"] for c in checks),
                }
    print(f"profile {args.profile}")
    print(
        f"{'separation':<20} {'images':<10} {'n':>3} {'ΔE00 mean':>10} {'ΔE00 p95':>9} {'chroma':>7} {'tonal':>6} "
        f"{'shadow detail':>13}"
    )
    for (label, group), row in rows.items():
        shadow = "-" if row["shadow_detail_kept"] is None else f"{row['shadow_detail_kept']:.3f}"
        print(
            f"{label:<20} {group:<10} {row['images']:>3} {row['delta_e00_mean']:>10.2f} {row['delta_e00_p95']:>9.2f} "
            f"{row['chroma_kept']:>7.3f} {row['tonal_range_kept']:>6.3f} {shadow:>13}"
        )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "print_pipeline.json").write_text(
        json.dumps(
            {"profile": args.profile, "rows": [{"separation": k[0], "images": k[1]} | v for k, v in rows.items()]},
            indent=1,
        )
    )
    shown = [next(iter(groups["photos"].items()), None), ("chart:saturated", groups["chart"]["chart:saturated"])]
    shown += [("chart:shadows", groups["shadows"]["chart:shadows"])]
    shown += list(groups.get("miniature", {}).items())[:1]
    cells, captions = [], []
    for name, image in [s for s in shown if s]:
        cells.append(image)
        captions.append(f"{name} (screen)")
        for label, settings in settings_grid(args.profile):
            if label in ("perceptual + BPC", "relative", "relative + BPC", "saturation + BPC"):
                cells.append(prepare(image, settings).proof)
                captions.append(f"{label}: on paper")
    sheet = contact_sheet(cells, captions, columns=5, cell=200, title=f"soft proofs through {Path(args.profile).name}")
    sheet.save(out / "print_pipeline.png")
    print(f"wrote {out / 'print_pipeline.json'} and {out / 'print_pipeline.png'}")


if __name__ == "__main__":
    main()
