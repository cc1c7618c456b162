"""How much can the print reward rise at all? (issue 15, part 4)

``print_proof`` scores an image against what it is *meant* to look like (its anchor). A model can
raise it only by producing images whose printed proof is closer to the anchor than the anchor's
own proof is: pre-compensating the gamut mapping. This measures that headroom directly, per image,
with no model in the loop: starting from the anchor itself, optimize the pixels (Adam on logits,
through the same differentiable LUT the reward uses) to maximize the reward against the anchor.
The optimized image is the best a perfect fine-tune could output for that anchor; the gap between
its reward and the anchor's is the most any RL run can gain.

    python benchmarks/print_headroom.py [--starts runs/issue15/lora+prior] [--steps 400] [--lr 0.01]

Reads the test half's personalized images (seed-0 starts), prints a markdown table (mean ± s.e. over
images) and writes ``--out`` (json + a before / optimized / their proofs sheet).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import subject_split  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402
from subject_runs import mean_se  # noqa: E402


def optimize(proof, anchor: torch.Tensor, steps: int, lr: float) -> tuple[torch.Tensor, list[float]]:
    """Pixels in [0,1] maximizing ``proof``'s reward against ``anchor`` (B,3,H,W), starting at the anchor."""
    logits = torch.logit(anchor.clamp(1e-3, 1 - 1e-3)).clone().requires_grad_(True)
    optimizer = torch.optim.Adam([logits], lr=lr)
    curve = []
    for _ in range(steps):
        reward = proof(torch.sigmoid(logits), [], {"reference": anchor})
        curve.append(float(reward.detach().mean()))
        optimizer.zero_grad()
        (-reward.sum()).backward()
        optimizer.step()
    return torch.sigmoid(logits).detach(), curve


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--starts", default=str(ROOT / "runs" / "issue15" / "lora+prior"))
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--lr", type=float, default=0.01)  # 0.05: +0.1 %, a worse optimum
    parser.add_argument("--out", default=str(ROOT / "runs" / "issue15" / "print-headroom"))
    args = parser.parse_args()

    from dreamtune.rewards.colour import ciede2000, srgb_to_lab
    from dreamtune.rewards.print_proof import PrintProof
    from dreamtune.sampling.contact_sheet import contact_sheet, save_png

    proof = PrintProof()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows, sheet, captions = [], [], []
    for subject in subject_split.TEST:
        folder = Path(args.starts) / f"{subject}-s0" / "personalized"
        files = sorted(folder.glob("[0-9][0-9][0-9][0-9].png"))  # the generated images, not the sheet
        if not files:
            continue
        anchor = (
            torch.stack(
                [torch.from_numpy(np.array(Image.open(f).convert("RGB"))).permute(2, 0, 1) for f in files]
            ).float()
            / 255
        )
        best, curve = optimize(proof, anchor, args.steps, args.lr)
        with torch.no_grad():
            before, after = proof(anchor, [], {"reference": anchor}), proof(best, [], {"reference": anchor})
            parts_before = proof.parts(anchor, [], {"reference": anchor})
            parts_after = proof.parts(best, [], {"reference": anchor})
            moved = ciede2000(srgb_to_lab(best), srgb_to_lab(anchor)).flatten(1).mean(1)
        for index in range(len(files)):
            rows.append(
                {
                    "subject": subject,
                    "image": files[index].name,
                    "reward_anchor": float(before[index]),
                    "reward_optimized": float(after[index]),
                    "fidelity_anchor": float(parts_before["fidelity"][index]),
                    "fidelity_optimized": float(parts_after["fidelity"][index]),
                    "delta_e00_moved": float(moved[index]),
                }
            )
        for image, caption in (
            (anchor[0], f"{subject} anchor"),
            (proof.proof(anchor[:1])[0], "its proof"),
            (best[0], "optimized"),
            (proof.proof(best[:1])[0], "its proof"),
        ):
            sheet.append(Image.fromarray((image.permute(1, 2, 0).clamp(0, 1).numpy() * 255).round().astype(np.uint8)))
            captions.append(caption)
        print(
            json.dumps(
                {
                    "subject": subject,
                    "reward": [round(float(before.mean()), 4), round(float(after.mean()), 4)],
                    "curve_end": round(curve[-1], 4),
                }
            ),
            flush=True,
        )
    (out / "headroom.json").write_text(json.dumps({"steps": args.steps, "lr": args.lr, "images": rows}, indent=1))
    print(
        "\n| images | reward of the anchor | reward optimized | gain | fidelity anchor → optimized | ΔE00 optimized vs anchor |"
    )
    print("|---|---|---|---|---|---|")
    cell = lambda key: "{:.3f} ± {:.3f}".format(*mean_se([r[key] for r in rows])[:2])
    gain = mean_se([r["reward_optimized"] / r["reward_anchor"] - 1 for r in rows])
    print(
        f"| {len(rows)} | {cell('reward_anchor')} | {cell('reward_optimized')} | {100 * gain[0]:+.1f} % ± {100 * gain[1]:.1f} | "
        f"{cell('fidelity_anchor')} → {cell('fidelity_optimized')} | {cell('delta_e00_moved')} |"
    )
    path = save_png(
        contact_sheet(
            sheet,
            captions,
            columns=8,
            cell=96,
            title="print headroom: anchor, its proof, optimized pixels, their proof",
        ),
        out / "headroom.png",
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
