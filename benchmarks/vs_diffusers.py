"""dreamtune against diffusers' own DreamBooth-LoRA script, side by side (issue 16).

    python benchmarks/vs_diffusers.py --reference PATH/train_dreambooth_lora.py [--quick] [--runs 3] [--rows small-bf16,...]

Both trainers run in one virtual environment where the script runs (torch + torchvision beside
dreamtune; the project's venv has no torchvision, so a benchmark venv `.venv-bench` is prepared or
reused: torch 2.14.1 + torchvision 0.29.1 + dreamtune, editable), on the same model, photos, class
images and settings, interleaved (dreamtune, script, script, dreamtune, ...), nothing else running.
Every optimizer step is timed by the same hook (benchmarks/step_timer.py); steady steps/s skips the
first 20 % of steps (warm-up, lazy init) — on the sd15 rows the first 6 (batch 1, 5 photos: dreamtune
VAE-encodes each photo the first time it is drawn and reuses the latent for the rest of the run; the
script encodes every step). Peak RSS is the child's own (wait4). Nothing is fetched:
the model is the embedded miniature (SD-1.x architecture, UNet 10.9 M parameters, 64 px -> 16x16x4
latents) and the photos are renders of its world.

Rows: small-fp32 / small-bf16 (LoRA r4 on to_q/k/v/out, batch 4, constant lr 1e-4, no prior);
sd15 (full-size SD 1.5 with random weights saved as fp16 safetensors, 512 px, LoRA r16, batch 1, bf16,
gradient checkpointing, 12 steps: run it with --runs 2, it takes ~6-10 s a step on 2 CPU cores); sd15-no-checkpointing
(both without); sd15-auto (dreamtune's default `auto` — it measures whether the step fits — against the
script with checkpointing, its setting for memory);
miniature / miniature-prior (the demo recipe's rank 16, batch 2, lr 1e-3, bf16; prior preservation
with 40 given class images, weight 0.35 — the script's LoRA targets, which it fixes). --quick runs
small-bf16 only; its last line is `ratio X.XX` (dreamtune / script steady steps/s).
For a GPU (not in the default rows; benchmarks/vs_diffusers_device.sh runs them on a lent machine):
gpu-sd15 (SD 1.5, 512 px, 150 steps) and gpu-sdxl (SDXL against train_dreambooth_lora_sdxl.py,
--reference-sdxl, 1024 px, 60 steps), LoRA r16, batch 1, bf16, neither recomputing; the table adds
each trainer's peak GPU memory (torch's max allocated, recorded by step_timer.py).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH_VENV = ROOT / ".venv-bench"
TIMER = ROOT / "benchmarks" / "step_timer.py"
MODEL = ROOT / "dreamtune" / "miniature" / "model"
TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]  # the script's LoRA targets that an SD-1.x UNet has


@dataclass(frozen=True)
class Row:
    name: str
    steps: int
    rank: int
    batch: int
    lr: float
    precision: str  # "no" or "bf16"
    prior: bool = False
    model: str = (
        "miniature"  # or "sd15" / "sdxl": full size, random weights, fp16 safetensors (benchmarks/full_size_smoke.py)
    )
    resolution: int = 64
    checkpointing: bool = False
    dreamtune_checkpointing: str = (
        ""  # dreamtune's train.gradient_checkpointing when it differs (auto: its own measured choice)
    )
    warm_steps: int = 0  # steps left out of "steady" for both trainers (at least a fifth of the run): dreamtune
    # VAE-encodes each photo the first time a batch draws it and reuses the latent afterwards


PHOTOS = 5  # the subject's photos: at batch 1 the first PHOTOS steps include dreamtune's one-time encodes
ROWS = {
    "small-fp32": Row("small-fp32", 300, 4, 4, 1e-4, "no"),
    "small-bf16": Row("small-bf16", 300, 4, 4, 1e-4, "bf16"),
    "miniature": Row("miniature", 300, 16, 2, 1e-3, "bf16"),
    "miniature-prior": Row("miniature-prior", 300, 16, 2, 1e-3, "bf16", prior=True),
    "sd15": Row(
        "sd15", 12, 16, 1, 1e-4, "bf16", model="sd15", resolution=512, checkpointing=True, warm_steps=PHOTOS + 1
    ),
    "sd15-no-checkpointing": Row(
        "sd15-no-checkpointing", 12, 16, 1, 1e-4, "bf16", model="sd15", resolution=512, warm_steps=PHOTOS + 1
    ),
    "sd15-auto": Row(
        "sd15-auto",
        12,
        16,
        1,
        1e-4,
        "bf16",
        model="sd15",
        resolution=512,
        checkpointing=True,
        dreamtune_checkpointing="auto",
        warm_steps=PHOTOS + 1,
    ),
    # for a GPU (benchmarks/vs_diffusers_device.sh): long enough for steady state, neither trainer recomputing
    "gpu-sd15": Row("gpu-sd15", 150, 16, 1, 1e-4, "bf16", model="sd15", resolution=512, warm_steps=2 * PHOTOS),
    "gpu-sdxl": Row("gpu-sdxl", 60, 16, 1, 1e-4, "bf16", model="sdxl", resolution=1024, warm_steps=2 * PHOTOS),
}


def model_of(row: Row, work: Path) -> Path:
    if row.model == "miniature":
        return MODEL
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from full_size_smoke import build

    return build(row.model, work / f"{row.model}-fp16")


def bench_python() -> Path:
    """A Python where both trainers run: this one if it has torchvision, else the benchmark venv."""
    try:
        import torchvision  # noqa: F401

        return Path(sys.executable)
    except ImportError:
        pass
    python = BENCH_VENV / "bin" / "python"
    if not (BENCH_VENV / ".ready").is_file():
        print(
            f"preparing {BENCH_VENV} (torch 2.14.1 + torchvision 0.29.1 + dreamtune; a few minutes, once)", flush=True
        )
        constraints = Path(tempfile.mkstemp(suffix=".txt")[1])
        constraints.write_text(
            "".join(
                line + "\n"
                for line in (ROOT / "constraints.txt").read_text().splitlines()
                if line and not line.startswith(("#", "torch=="))
            )
        )
        subprocess.run([sys.executable, "-m", "venv", str(BENCH_VENV)], check=True)
        pip = [str(python), "-m", "pip", "install", "-q"]
        subprocess.run([*pip, "torch==2.14.1", "torchvision==0.29.1"], check=True)
        subprocess.run([*pip, "-c", str(constraints), "-e", str(ROOT), "ftfy", "Jinja2", "tensorboard"], check=True)
        (BENCH_VENV / ".ready").touch()
    return python


def subject_photos(folder: Path, subject: str, count: int) -> Path:
    from dreamtune.miniature import world
    from dreamtune.miniature.demo import TRAIN_CONTEXTS

    folder.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        world.render(world.Scene(subject, TRAIN_CONTEXTS[index % len(TRAIN_CONTEXTS)]), 50_000 + index).save(
            folder / f"{index:03d}.png"
        )
    return folder


def upscaled(photos: Path, folder: Path, size: int) -> Path:
    """The subject's photos at ``size`` px, for the full-size row (both trainers get the same files)."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for photo in sorted(photos.glob("*.png")):
        if not (folder / photo.name).is_file():
            Image.open(photo).convert("RGB").resize((size, size), Image.Resampling.BICUBIC).save(folder / photo.name)
    return folder


def class_photos(folder: Path, count: int) -> Path:
    """Renders of the pretraining dogs in varied contexts: class images both trainers are given."""
    from dreamtune.miniature import world

    folder.mkdir(parents=True, exist_ok=True)
    dogs = [i.name for i in world.PRETRAIN_INSTANCES if i.class_noun == "dog"]
    contexts = list(world.CONTEXTS)
    for index in range(count):
        scene = world.Scene(dogs[index % len(dogs)], contexts[index % len(contexts)])
        world.render(scene, 70_000 + index).save(folder / f"{index:03d}.png")
    return folder


def dreamtune_command(row: Row, model: Path, photos: Path, classes: Path, out: Path) -> list[str]:
    overrides = [
        f"model.pretrained={model}",
        f"data.instance_dir={photos}",
        "data.instance_prompt=a sks dog",
        f"data.resolution={row.resolution}",
        "data.flip_p=0",
        f"train.gradient_checkpointing={row.dreamtune_checkpointing or str(row.checkpointing).lower()}",
        f"method.lora.rank={row.rank}",
        f"method.lora.alpha={row.rank}",
        f"method.lora.target_modules={json.dumps(TARGETS)}",
        f"train.steps={row.steps}",
        f"train.batch_size={row.batch}",
        f"train.lr={row.lr}",
        "train.lr_scheduler=constant",
        "train.warmup_steps=0",
        f"train.mixed_precision={row.precision}",
        "train.checkpoint_every=0",
        "train.validate_every=0",
        f"train.output_dir={out}",
        "train.seed=0",
        f"prior.enabled={'true' if row.prior else 'false'}",
        "prior.class_prompt=a dog",
        f"prior.class_dir={classes}",
        "prior.num_class_images=40",
        "prior.loss_weight=0.35",
    ]
    return ["-m", "dreamtune.cli", "train", str(ROOT / "dreamtune" / "recipes" / "miniature-lora.yaml"), *overrides]


def script_command(reference: Path, row: Row, model: Path, photos: Path, classes: Path, out: Path) -> list[str]:
    command = [
        str(reference),
        f"--pretrained_model_name_or_path={model}",
        f"--instance_data_dir={photos}",
        "--instance_prompt=a sks dog",
        f"--resolution={row.resolution}",
        f"--train_batch_size={row.batch}",
        f"--max_train_steps={row.steps}",
        f"--learning_rate={row.lr}",
        "--lr_scheduler=constant",
        "--lr_warmup_steps=0",
        f"--rank={row.rank}",
        f"--mixed_precision={row.precision}",
        f"--output_dir={out}",
        "--seed=0",
        "--checkpointing_steps=1000000",
        "--report_to=tensorboard",
    ]
    if row.checkpointing:
        command.append("--gradient_checkpointing")
    if row.prior:
        command += [
            "--with_prior_preservation",
            f"--class_data_dir={classes}",
            "--class_prompt=a dog",
            "--num_class_images=40",
            "--prior_loss_weight=0.35",
        ]
    return command


def timed_run(python: Path, arguments: list[str], work: Path, warm_steps: int = 0) -> dict:
    stamps = work / f"steps-{time.time_ns()}.json"
    env = {**os.environ, "STEP_TIMES": str(stamps), "TQDM_DISABLE": "1", "PYTHONWARNINGS": "ignore"}
    started = time.time()
    with open(work / "log.txt", "a", encoding="utf-8") as log:
        process = subprocess.Popen(
            [str(python), str(TIMER), *arguments], stdout=log, stderr=subprocess.STDOUT, env=env, cwd=work
        )
        _, status, usage = os.wait4(process.pid, 0)
    wall = time.time() - started
    if status != 0 or not stamps.is_file():
        raise SystemExit(f"a trainer failed (exit status {status}); see {work / 'log.txt'}")
    times = json.loads(stamps.read_text())
    gpu = Path(f"{stamps}.gpu.json")
    gpu_mb = json.loads(gpu.read_text())["allocated_mb"] if gpu.is_file() else None
    skip = max(1, len(times) // 5, warm_steps)
    steady = (len(times) - 1 - skip) / (times[-1] - times[skip]) if len(times) > skip + 1 else float("nan")
    return {
        "steady": steady,
        "startup": times[0] - started,
        "wall": wall,
        "rss_mb": usage.ru_maxrss / 1024,
        "steps": len(times),
        **({"gpu_mb": gpu_mb} if gpu_mb is not None else {}),
    }


def flops_per_step(row: Row, model: Path) -> float:
    """FLOPs of one LoRA training step at the row's batch (x2 with prior) and latent size, counted op by op
    (benchmarks/op_ceiling.py): the UNet's forward, the backward of what needs gradients (not the frozen
    weights'), attention included. Useful work only: checkpointing's recomputation is not counted."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import torch
    from op_ceiling import step_flops
    from step_floor import build, latent_side, prompt_length, step_inputs

    unet, optimizer, params = build(
        model, row.rank, dreamtune_policies=True, device="cuda" if torch.cuda.is_available() else "cpu"
    )
    batch = row.batch * (2 if row.prior else 1)
    inputs = step_inputs(unet, batch, prompt_length(model), latent_side(model, row.resolution))
    flops = float(step_flops(unet, optimizer, params, inputs))
    del unet, optimizer, params, inputs
    if torch.cuda.is_available():
        torch.cuda.empty_cache()  # the next row's trainers get the whole GPU
    return flops


def matmul_peak(python: Path, dtype_name: str) -> float:
    """GFLOP/s of the best matmul this minute (benchmarks/matmul_peak.py), in the trainers' Python."""
    done = subprocess.run(
        [str(python), str(ROOT / "benchmarks" / "matmul_peak.py"), "--dtype", dtype_name],
        capture_output=True,
        text=True,
        check=True,
    )
    return float(done.stdout.strip().splitlines()[-1])


def summarize(values: list[float]) -> str:
    return f"{min(values):.2f} / {statistics.median(values):.2f} / {max(values):.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", default="-", help="diffusers' examples/dreambooth/train_dreambooth_lora.py")
    parser.add_argument("--reference-sdxl", default=None, help="its train_dreambooth_lora_sdxl.py, for the sdxl rows")
    parser.add_argument(
        "--model", default=None, help="a diffusers folder to use instead of each row's model (a check of the commands)"
    )
    parser.add_argument("--resolution", type=int, default=None, help="image side instead of each row's")
    parser.add_argument("--quick", action="store_true", help="only small-bf16, 60 steps, 3 runs each")
    parser.add_argument("--rows", default=",".join(name for name in ROWS if not name.startswith("gpu-")))
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--steps", type=int, default=None, help="steps per run (default: the row's)")
    parser.add_argument("--work", default=str(ROOT / "runs" / "vs-diffusers"))
    args = parser.parse_args()
    names = ["small-bf16"] if args.quick else args.rows.split(",")
    unknown = [name for name in names if name not in ROWS]
    if unknown:
        raise SystemExit(f"--rows: no row {unknown[0]}; the rows are {', '.join(ROWS)}.")
    references = {"sd": Path(args.reference).resolve(), "sdxl": Path(args.reference_sdxl or "-").resolve()}
    flags = {
        "sd": ("--reference", "train_dreambooth_lora.py"),
        "sdxl": ("--reference-sdxl", "train_dreambooth_lora_sdxl.py"),
    }
    for family in {"sdxl" if ROWS[name].model == "sdxl" else "sd" for name in names}:
        if not references[family].is_file():
            flag, script = flags[family]
            raise SystemExit(
                f"{flag} {references[family]} does not exist; pass diffusers' examples/dreambooth/{script}."
            )
    steps = args.steps or (60 if args.quick else None)
    python = bench_python()
    work = Path(args.work).resolve()
    photos = subject_photos(work / "photos", "dog3", PHOTOS)
    classes = class_photos(work / "class", 40)
    table = []
    for name in names:
        row = ROWS[name]
        row = Row(**{**row.__dict__, "steps": steps or row.steps, "resolution": args.resolution or row.resolution})
        model = Path(args.model).resolve() if args.model else model_of(row, work)
        row_photos = (
            photos if row.resolution == 64 else upscaled(photos, work / f"photos-{row.resolution}", row.resolution)
        )
        reference = references["sdxl" if row.model == "sdxl" else "sd"]
        results = {"dreamtune": [], "diffusers": []}
        for index in range(args.runs):
            order = ["dreamtune", "diffusers"] if index % 2 == 0 else ["diffusers", "dreamtune"]
            for trainer in order:
                out = work / "out" / f"{name}-{trainer}-{index}"
                command = (
                    dreamtune_command(row, model, row_photos, classes, out)
                    if trainer == "dreamtune"
                    else script_command(reference, row, model, row_photos, classes, out)
                )
                peak = matmul_peak(python, row.precision)  # the machine as it is right before this run
                result = {**timed_run(python, command, work, row.warm_steps), "peak_gflops": peak}
                results[trainer].append(result)
                print(
                    json.dumps(
                        {"row": name, "trainer": trainer, "run": index, **{k: round(v, 3) for k, v in result.items()}}
                    ),
                    flush=True,
                )
        flops = flops_per_step(row, model)
        line = {"row": name, "steps": row.steps}
        for trainer, runs in results.items():
            steady = [r["steady"] for r in runs]
            line[trainer] = {
                "steady": summarize(steady),
                "startup_s": round(statistics.median(r["startup"] for r in runs), 1),
                "wall_s": round(statistics.median(r["wall"] for r in runs), 1),
                "rss_mb": round(statistics.median(r["rss_mb"] for r in runs)),
                "gpu_mb": round(statistics.median(r["gpu_mb"] for r in runs)) if "gpu_mb" in runs[0] else None,
                "gflops": round(flops * statistics.median(steady) / 1e9, 1),
                # each run against the peak measured right before it, then the median
                "of_peak": f"{statistics.median(100 * flops * r['steady'] / 1e9 / r['peak_gflops'] for r in runs):.1f} %",
            }
        line["ratio"] = statistics.median(r["steady"] for r in results["dreamtune"]) / statistics.median(
            r["steady"] for r in results["diffusers"]
        )
        line["rss_ratio"] = line["dreamtune"]["rss_mb"] / line["diffusers"]["rss_mb"]
        line["peak_gflops"] = summarize([r["peak_gflops"] for runs in results.values() for r in runs])
        table.append(line)
        print(json.dumps(line), flush=True)
    (work / "table.json").write_text(json.dumps(table, indent=1))
    print(
        "\n| row | dreamtune steps/s (min / median / max) | script | ratio | RSS dreamtune / script | peak GPU memory "
        "| GFLOP/s (% of matmul peak) | matmul peak GFLOP/s before each run (min / median / max) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for line in table:
        d, s = line["dreamtune"], line["diffusers"]
        gpu = f"{d['gpu_mb']} / {s['gpu_mb']} MB" if d["gpu_mb"] is not None else "—"
        print(
            f"| {line['row']} ({line['steps']} steps) | {d['steady']} | {s['steady']} | {line['ratio']:.2f}× | "
            f"{d['rss_mb']} / {s['rss_mb']} MB | {gpu} | {d['gflops']} ({d['of_peak']}) vs {s['gflops']} ({s['of_peak']}) | "
            f"{line['peak_gflops']} |"
        )
    if args.quick:
        print(f"ratio {table[0]['ratio']:.2f}")


if __name__ == "__main__":
    main()
