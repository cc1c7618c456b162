"""The overfitting / language-drift monitor on the miniature: a deliberately long full
DreamBooth run without prior preservation, measured every N steps; prints the monitor's
records and the step that ``monitor.select_best`` keeps.

    python experiments/monitor-overfitting/monitor_overfitting.py [--out runs/monitor-demo] [--steps 800] [--every 100]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from dreamtune import config  # noqa: E402
from dreamtune.miniature.demo import photograph  # noqa: E402
from dreamtune.training.run import train  # noqa: E402

RECIPE = Path(__file__).resolve().parents[2] / "configs" / "miniature-dreambooth.yaml"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="runs/monitor-demo")
    parser.add_argument("--subject", default="dog3")
    parser.add_argument("--steps", type=int, default=800)
    parser.add_argument("--every", type=int, default=100)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--rule", default="clip_i")
    parser.add_argument("--floor", type=float, default=0.95)
    args = parser.parse_args()
    out = Path(args.out)
    photos = photograph(args.subject, out / "photos")
    noun = "dog" if args.subject.startswith("dog") else args.subject.rstrip("0123456789").replace("_", " ")
    cfg = config.load(
        RECIPE,
        [
            f"data.instance_dir={photos}",
            f"data.instance_prompt=a sks {noun}",
            f"prior.class_prompt=a {noun}",
            "prior.enabled=false",
            f"train.steps={args.steps}",
            f"train.lr={args.lr}",
            f"train.output_dir={out / 'run'}",
            f"monitor.every={args.every}",
            "monitor.guidance_scale=4.0",
            f"monitor.select_best={args.rule}",
            f"monitor.clip_t_floor={args.floor}",
        ],
    )
    result = train(cfg)
    for line in (out / "run" / "monitor" / "monitor.jsonl").read_text().splitlines():
        record = json.loads(line)
        print(
            f"step {record['step']:5d}  clip_i {record['clip_i']:.4f}  clip_t {record['clip_t']:.4f}  pres {record['pres']:.4f}"
        )
    print("selected:", json.loads((result.model_dir / "dreamtune.json").read_text())["selected"])
    print(f"report: {out / 'run' / 'report.html'}")


if __name__ == "__main__":
    main()
