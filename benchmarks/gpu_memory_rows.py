"""Issue 32's GPU rows: FLUX.1-dev LoRA at 1024 px and SDXL full DreamBooth at 1024 px, each with the
memory savings and without them, through the CLI on random full-size weights saved as fp16 safetensors.
Prints per row: peak GPU memory of the whole run (loading, text encoding and steps: torch's allocator,
``max_memory_allocated``; reserved beside it), s/step (step 2 − step 1), and the run's own memory split.

    python benchmarks/gpu_memory_rows.py [--rows ROW,...] [--work DIR] [--budget SECONDS]
    python benchmarks/gpu_memory_rows.py --tiny      # the same script on tiny models, on a CPU (a check)

Rows (targets from the issue: FLUX.1-dev ≤ 12 GB, SDXL full ≤ 16 GB):
  flux1-dev-offload   bf16 base, frozen weights in host memory (train.offload), gradient checkpointing
  flux1-dev-nf4       nf4 transformer, int8 text encoders (freed before step 1), gradient checkpointing
  flux1-dev-plain     bf16 base, no checkpointing: the same settings without the savings
  sdxl-full-lean      fused update, bf16 weights with stochastic rounding, 8-bit AdamW, checkpointing
  sdxl-full-plain     fp32 AdamW, no fused update, checkpointing only where a step would not fit (auto)
Models are built on the GPU (random init there takes seconds) into WORK/, once; each row runs in its own
process so its peak is its own. A row that would start after --budget seconds is skipped and said so.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

STEPS = 3
ROWS = {  # name -> (model, recipe, overrides)
    "flux1-dev-offload": ("flux1-dev", "lora-flux1-dev", ["train.offload=true", "train.gradient_checkpointing=true"]),
    "flux1-dev-nf4": (
        "flux1-dev",
        "lora-flux1-dev",
        ["model.quantize=nf4", "model.quantize_text_encoders=int8", "train.gradient_checkpointing=true"],
    ),
    "flux1-dev-plain": ("flux1-dev", "lora-flux1-dev", ["train.gradient_checkpointing=false"]),
    "sdxl-full-lean": (
        "sdxl",
        "lora-sdxl",
        [
            "method.kind=dreambooth",
            "train.lr=5e-6",
            "train.fused_update=true",
            "train.trainable_dtype=bf16",
            "train.optimizer=adamw8bit",
            "train.gradient_checkpointing=true",
        ],
    ),
    "sdxl-full-plain": ("sdxl", "lora-sdxl", ["method.kind=dreambooth", "train.lr=5e-6"]),
}
TINY = {"flux1-dev": "flux", "sdxl": "sdxl"}  # --tiny: the tiny pipeline standing in for each model


def build_model(name: str, folder: Path, tiny: bool) -> Path:
    """The model folder, built once (beside, renamed when whole)."""
    if (folder / "model_index.json").is_file():
        return folder
    import shutil

    import torch

    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    if tiny:
        from dreamtune.models.tiny import build_tiny_pipeline

        build_tiny_pipeline(partial, TINY[name])
    else:
        from benchmarks import full_size_smoke

        with torch.device("cuda"):  # random init on the GPU: seconds instead of minutes on the host
            if name == "flux1-dev":
                full_size_smoke.build_flux1_dev(partial, device="cuda")
            else:
                full_size_smoke.build(name, partial)
    partial.rename(folder)
    return folder


def photos(folder: Path, size: int) -> Path:
    from benchmarks.full_size_smoke import photos as make

    return make(folder, size)


def run_row(row: str, work: Path, tiny: bool) -> dict:
    """One row in this process: the CLI's train, then the allocator's peaks."""
    import torch

    from dreamtune.cli import main

    model_name, recipe, overrides = ROWS[row]
    resolution = 64 if tiny else 1024
    out = work / "runs" / row
    if out.exists():
        import shutil

        shutil.rmtree(out)
    argv = [
        "train",
        recipe,
        f"model.pretrained={work / model_name}",
        f"data.instance_dir={photos(work / f'photos-{resolution}', resolution)}",
        f"data.resolution={resolution}",
        f"train.output_dir={out}",
        f"train.steps={STEPS}",
        "train.mixed_precision=bf16",
        "train.checkpoint_every=0",
        "train.validate_every=0",
        "train.memory=manual",
        "prior.enabled=false",
        *overrides,
    ]
    started = time.perf_counter()
    from contextlib import redirect_stderr, redirect_stdout
    from io import StringIO

    captured = StringIO()
    with redirect_stdout(captured), redirect_stderr(captured):
        code = main(argv)
    lines = captured.getvalue().splitlines()
    print("\n".join(lines), file=sys.stderr)
    if code:
        return {"row": row, "error": next((x for x in reversed(lines) if x.strip()), "?")[:300]}
    steps = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    cuda = torch.cuda.is_available()
    gib = lambda b: round(b / 2**30, 2)
    return {
        "row": row,
        "resolution": resolution,
        "device": torch.cuda.get_device_name() if cuda else "cpu (check only)",
        "peak_allocated_gib": gib(torch.cuda.max_memory_allocated()) if cuda else None,
        "peak_reserved_gib": gib(torch.cuda.max_memory_reserved()) if cuda else None,
        "s_per_step": round(steps[-1]["seconds"] - steps[-2]["seconds"], 2),
        "wall_s": round(time.perf_counter() - started, 1),
        "split": next((x[x.index("memory after step") :] for x in lines if "memory after step" in x), ""),
        "chosen": [x for x in lines if x.startswith(("offload:", "quantized", "encoded", "gradient checkpointing"))],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default=",".join(ROWS))
    parser.add_argument("--work", default="/tmp/gpu-memory-rows")
    parser.add_argument("--budget", type=float, default=0, help="start no row after this many seconds (0: none)")
    parser.add_argument("--tiny", action="store_true", help="tiny models at 64 px on a CPU: checks the script")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--build", help=argparse.SUPPRESS)
    args = parser.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    if args.build:
        build_model(args.build, work / args.build, args.tiny)
        return
    if args.one:
        print(json.dumps(run_row(args.one, work, args.tiny)))
        return
    started, results = time.perf_counter(), []
    tiny = ["--tiny"] if args.tiny else []
    for row in [r for r in args.rows.split(",") if r]:
        if args.budget and time.perf_counter() - started > args.budget:
            results.append({"row": row, "error": f"skipped: the {args.budget:.0f} s budget was spent"})
            print(json.dumps(results[-1]), flush=True)
            continue
        model = ROWS[row][0]
        begun = time.perf_counter()
        subprocess.run([sys.executable, __file__, "--work", str(work), "--build", model, *tiny], check=True)
        built = time.perf_counter() - begun
        done = subprocess.run(
            [sys.executable, __file__, "--work", str(work), "--one", row, *tiny], capture_output=True, text=True
        )
        (work / f"{row}.log").write_text(done.stderr)
        last = done.stdout.strip().splitlines()[-1:] if done.stdout.strip() else []
        result = json.loads(last[0]) if done.returncode == 0 and last else {"row": row, "error": done.stderr[-300:]}
        result["build_s"] = round(built, 1)
        results.append(result)
        print(json.dumps(result), flush=True)
    (work / "rows.json").write_text(json.dumps(results, indent=2))
    print("\n| row | px | peak GPU allocated GiB | reserved GiB | s/step | split |\n|---|---|---|---|---|---|")
    for r in results:
        if "error" in r:
            print(f"| {r['row']} | | failed: {r['error'][:100]} | | | |")
        else:
            print(
                f"| {r['row']} | {r['resolution']} | {r['peak_allocated_gib']} | {r['peak_reserved_gib']} | "
                f"{r['s_per_step']} | {r['split'][:160]} |"
            )


if __name__ == "__main__":
    main()
