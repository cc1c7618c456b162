"""Run a Python program (a script path, or ``-m module``) and record the wall-clock time of every
optimizer step, through torch's global optimizer-step hook — the same clock for any trainer, ours or
another project's, without touching its code. The stamps go to the JSON file $STEP_TIMES at exit, and
where the program used a CUDA GPU, its peak allocated / reserved GPU memory to $STEP_TIMES.gpu.json.

    STEP_TIMES=t.json python benchmarks/step_timer.py -m dreamtune.cli train ...
    STEP_TIMES=t.json python benchmarks/step_timer.py path/to/train_dreambooth_lora.py ...
"""

from __future__ import annotations

import atexit
import json
import os
import runpy
import sys
import time

from torch.optim.optimizer import register_optimizer_step_post_hook

stamps: list[float] = []


def _record(optimizer, args, kwargs) -> None:
    stamps.append(time.time())


@atexit.register
def _dump() -> None:
    with open(os.environ["STEP_TIMES"], "w", encoding="utf-8") as handle:
        json.dump(stamps, handle)
    import torch

    if torch.cuda.is_available() and torch.cuda.is_initialized():
        with open(os.environ["STEP_TIMES"] + ".gpu.json", "w", encoding="utf-8") as handle:
            json.dump(
                {
                    "allocated_mb": torch.cuda.max_memory_allocated() / 2**20,
                    "reserved_mb": torch.cuda.max_memory_reserved() / 2**20,
                },
                handle,
            )


def main() -> None:
    register_optimizer_step_post_hook(_record)
    if sys.argv[1] == "-m":
        sys.argv = sys.argv[2:]
        runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
    else:
        sys.argv = sys.argv[1:]
        sys.path.insert(0, os.path.dirname(os.path.abspath(sys.argv[0])))
        runpy.run_path(sys.argv[0], run_name="__main__")


if __name__ == "__main__":
    main()
