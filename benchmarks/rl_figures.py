"""Pictures and prints shared by the RL sweeps over a new-shape half (print_rl.py, fidelity_rl.py; issue 35,
item 5): LittleCMS's own 8-bit prints, before / after soft-proof sheets and the reward against the KL term.

Not run on its own: imported by the sweeps.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from rl_test_half import pixels, sheet

from dreamtune.miniature.demo import EVAL_CONTEXTS


def littlecms_prints(images: list) -> list:
    """LittleCMS's own 8-bit print of each image (SWOP, black-point compensation, paper white), as images."""
    from PIL import Image

    from dreamtune.rewards.print_proof import default_profile, littlecms_proof

    proofs = littlecms_proof(pixels(images), default_profile(), black_point_compensation=True, paper_white=True)
    return [Image.fromarray((p.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)) for p in proofs]


def reward_vs_kl(root: Path, runs: list[dict], reward: str, window: int = 10, most_lines: int = 6) -> Path:
    """``reward`` against DRaFT's KL term over training: each point the mean of ``window`` steps, in step order
    (x: the KL term, 0 throughout for a run without the leash); one line per run, or, past ``most_lines`` runs,
    one per seed averaged over its subjects (more lines cannot be read)."""
    from dreamtune.evaluation.plots import line_plot

    def windows(r: dict) -> list[tuple[float, float]]:
        lines = (root / f"{r['subject']}-s{r['seed']}" / "run" / "metrics.jsonl").read_text().splitlines()
        records = [json.loads(line) for line in lines]
        kl = [x.get("kl", x.get("reward/kl", 0.0)) for x in records]  # with the regularizer: logged under reward/
        values = [x[f"reward/{reward}"] for x in records]
        return [
            (float(np.mean(kl[i : i + window])), float(np.mean(values[i : i + window])))
            for i in range(0, len(records), window)
        ]

    if len(runs) <= most_lines:
        series = {f"{r['subject']} s{r['seed']}": windows(r) for r in runs}
    else:
        series = {}
        for seed in sorted({r["seed"] for r in runs}):
            curves = [windows(r) for r in runs if r["seed"] == seed]
            length = min(len(c) for c in curves)
            mean = np.mean([c[:length] for c in curves], axis=0)
            series[f"seed {seed}, mean of {len(curves)} subjects"] = [(float(x), float(y)) for x, y in mean]
    path = root / "reward_vs_kl.png"
    title = f"{reward} (y) against DRaFT's KL term (x), means of {window} steps in step order"
    line_plot(series, title).save(path)
    return path


def soft_proof_sheet(root: Path, starts: Path, runs: list[dict], title: str) -> Path:
    """Before / after of seed 0 as printed (LittleCMS, black-point compensation, paper white)."""
    from PIL import Image

    from dreamtune.sampling.contact_sheet import contact_sheet, save_png

    images, captions = [], []
    for r in [r for r in runs if r["seed"] == 0]:
        for label, folder in (
            ("before", starts / f"{r['subject']}-s0" / "personalized"),
            ("after", root / f"{r['subject']}-s0" / "after"),
        ):
            picked = [Image.open(folder / f"{2 * i:04d}.png").convert("RGB") for i in range(len(EVAL_CONTEXTS))]
            for index, proof in enumerate(littlecms_prints(picked)):
                images.append(proof)
                captions.append(f"{r['subject']} {label}" if index == 0 else EVAL_CONTEXTS[index])
    sheet_image = contact_sheet(images, captions, columns=len(EVAL_CONTEXTS), cell=96, title=title)
    return save_png(sheet_image, root / "before_after_printed.png")


def write_pictures(root: Path, starts: Path, runs: list[dict], reward: str) -> None:
    """The sweep's pictures: before / after as rendered and as soft proofs (the runs whose images this session
    holds), and ``reward`` against the KL term (every run)."""
    pictured = [r for r in runs if (root / f"{r['subject']}-s{r['seed']}" / "after").is_dir()]
    if pictured:
        print(f"wrote {sheet(root, starts, pictured, f'{reward} RL (evaluation contexts, never trained on)')}")
        title = f"{reward} RL, soft proofs (SWOP, paper white), seed 0: before above, after below"
        print(f"wrote {soft_proof_sheet(root, starts, pictured, title)}")
    print(f"wrote {reward_vs_kl(root, runs, reward)}")
