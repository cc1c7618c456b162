"""A contact sheet for checking the new-shape subjects by eye (issue 34): each subject as its photos show
it, the pretraining glyph whose outline is nearest (with the distance; miniature/new_shapes.py), and the
subject in two of the world's contexts (ground truth). Tuning half first, then the test half.

    python benchmarks/new_shape_sheet.py --out experiments/new-shape-split/sheet.png
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def main() -> None:
    import subject_split

    from dreamtune.miniature import world
    from dreamtune.miniature.new_shapes import nearest_pretraining_glyph
    from dreamtune.sampling.contact_sheet import contact_sheet, save_png

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "experiments" / "new-shape-split" / "sheet.png"))
    args = parser.parse_args()
    images, captions = [], []
    for half, names in (("tuning", subject_split.NEW_TUNING), ("test", subject_split.NEW_TEST)):
        for name in names:
            subject = world.instance(name)
            distance, nearest = nearest_pretraining_glyph(subject.glyph)
            sprite = world.object_sprite(name)
            images += [
                world.compose(sprite, None, 0),
                world.compose(world.glyph_sprite(nearest, 0.0), None, 0),
                world.compose(sprite, "beach", 1),
                world.compose(sprite, "city", 2),
            ]
            captions += [f"{name} ({half})", f"nearest pretraining {nearest}: {distance:.3f}", "beach", "city"]
    sheet = contact_sheet(
        images,
        captions,
        columns=8,
        cell=96,
        title="new-shape subjects: subject, nearest pretraining outline, two contexts",
    )
    print(save_png(sheet, Path(args.out)))


if __name__ == "__main__":
    main()
