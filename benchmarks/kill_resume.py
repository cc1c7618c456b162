"""kill -9 at random moments (some timed to land inside checkpoint saves), then --resume latest
until the run finishes; compare the final LoRA with an uninterrupted run's, bit for bit, and
count the temp folders left behind after the resumed run.

    python benchmarks/kill_resume.py [--runs 20] [--steps 12] [--seed 0] [--root runs/kill_resume]

Prints one line per run and "N/N bit-identical, K stale temp folders".
"""

from __future__ import annotations

import argparse
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _command(model: Path, photos: Path, out: Path, steps: int) -> list[str]:
    from tests.conftest import tiny_overrides

    overrides = tiny_overrides(
        model,
        photos,
        out,
        **{
            "train.steps": steps,
            "train.checkpoint_every": 2,
            "train.keep_checkpoints": 2,
            "train.lr": 5e-3,
            "data.instance_prompt": "a photo of sks dog",
            "prior.enabled": True,
            "prior.class_prompt": "a photo of dog",
            "train.ema_decay": 0.9,
            "data.rotate_p": 0.5,
            "data.rotate_degrees": 8,
        },
    )
    return [sys.executable, "-m", "dreamtune.cli", "train", *overrides]


def _weights(out: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(out / "model" / "pytorch_lora_weights.safetensors"))


def _steps_done(out: Path) -> int:
    log = out / "metrics.jsonl"
    return len(log.read_text().splitlines()) if log.is_file() else 0


def _kill_during(process: subprocess.Popen, out: Path, rng: random.Random, steps: int, deadline: float) -> str:
    """Kill at a random moment of the run (after a random number of finished steps, plus a random
    fraction of a step), or, every other time, just as a checkpoint's temp folder appears."""
    if rng.random() < 0.5:
        target = rng.randrange(0, steps - 1)
        while time.time() < deadline and process.poll() is None and _steps_done(out) < target:
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.8))
        moment = f"random moment (after step {_steps_done(out)})"
    else:
        moment = "inside a checkpoint save"
        while time.time() < deadline and process.poll() is None and not any(out.glob(".checkpoint-*.tmp-*")):
            time.sleep(0.005)
    if process.poll() is None:
        process.send_signal(signal.SIGKILL)
    process.wait()
    return moment


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--root", default=str(ROOT / "runs" / "kill_resume"))
    args = parser.parse_args()
    from dreamtune.models.tiny import build_tiny_pipeline
    from tests.conftest import make_photos

    root = Path(args.root)
    shutil.rmtree(root, ignore_errors=True)
    model = build_tiny_pipeline(root / "model", "sd1")
    photos = make_photos(root / "photos")
    subprocess.run(_command(model, photos, root / "reference", args.steps), check=True, capture_output=True)
    reference = _weights(root / "reference")
    rng = random.Random(args.seed)
    identical = stale = killed = 0
    for index in range(args.runs):
        out = root / f"run-{index:02d}"
        process = subprocess.Popen(
            _command(model, photos, out, args.steps), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        moment = _kill_during(process, out, rng, args.steps, time.time() + 120)
        killed_with = process.returncode
        resumes = 0
        while not (out / "model" / "pytorch_lora_weights.safetensors").is_file():
            resume = ["--resume", "latest"] if any(out.glob("checkpoint-*")) else []
            subprocess.run(_command(model, photos, out, args.steps) + resume, check=True, capture_output=True)
            resumes += 1
        weights = _weights(out)
        same = weights.keys() == reference.keys() and all((weights[k] == reference[k]).all() for k in weights)
        left = [p.name for p in out.iterdir() if ".tmp-" in p.name or ".old-" in p.name]
        identical += bool(same)
        killed += killed_with == -signal.SIGKILL
        stale += len(left)
        print(
            f"run {index + 1:2d}: killed (exit {killed_with}) at a {moment}, {resumes} resume(s): "
            f"{'bit-identical' if same else 'DIFFERENT'}, {len(left)} stale temp folder(s)",
            flush=True,
        )
    print(f"{identical}/{args.runs} bit-identical ({killed} of them killed mid-run), {stale} stale temp folders")


if __name__ == "__main__":
    main()
