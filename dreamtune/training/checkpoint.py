"""Whole-state checkpoints, written atomically and rotated (keep the last K).

A checkpoint folder ``checkpoint-NNNNNN`` holds, per optimizer name: the trainable weights
(safetensors), optimizer and LR-schedule state, EMA shadow weights; plus RNG states and the
step. Data order, augmentation and noise are functions of (seed, step), so the step is all
the data pipeline needs to continue exactly.
"""
from __future__ import annotations

import json
import random
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from dreamtune.atomic import atomic_dir
from dreamtune.errors import UserError
from dreamtune.training.ema import EMA
from dreamtune.training.optim import trainable_parameters

PREFIX = "checkpoint-"


@dataclass
class TrainingState:
    modules: dict[str, nn.Module]
    optimizers: dict[str, torch.optim.Optimizer]
    schedules: dict[str, object]
    emas: dict[str, EMA] = field(default_factory=dict)
    step: int = 0


def _rng_state() -> dict:
    _, keys, position, *_ = np.random.get_state()
    return {"torch": torch.get_rng_state(), "numpy": keys.tolist(), "numpy_position": int(position),
            "python": list(random.getstate()[1])}


def save(state: TrainingState, output_dir: Path, keep: int) -> Path:
    """Write ``output_dir/checkpoint-<step>`` atomically, then drop all but the newest ``keep``."""
    final = Path(output_dir) / f"{PREFIX}{state.step:06d}"
    with atomic_dir(final) as temp:
        for name, module in state.modules.items():
            weights = {n: p.detach().cpu().contiguous() for n, p in trainable_parameters(module)}
            save_file(weights, str(temp / f"trainable-{name}.safetensors"))
            torch.save(state.optimizers[name].state_dict(), temp / f"optimizer-{name}.pt")
            torch.save(state.schedules[name].state_dict(), temp / f"schedule-{name}.pt")
            if name in state.emas:
                save_file({k: v.contiguous() for k, v in state.emas[name].state_dict().items()}, str(temp / f"ema-{name}.safetensors"))
        torch.save(_rng_state(), temp / "rng.pt")
        (temp / "state.json").write_text(json.dumps({"step": state.step}))
    for old in list_checkpoints(output_dir)[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return final


def list_checkpoints(output_dir: Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first (temp folders are never listed)."""
    folders = [p for p in Path(output_dir).glob(f"{PREFIX}*") if (p / "state.json").is_file()]
    return sorted(folders, key=lambda p: int(p.name[len(PREFIX):]))


def find(output_dir: Path, which: str) -> Path:
    """``which`` is 'latest' or a checkpoint folder path."""
    if which == "latest":
        found = list_checkpoints(output_dir)
        if not found:
            raise UserError(f"--resume latest: no checkpoint in {output_dir}; start without --resume or set train.checkpoint_every.")
        return found[-1]
    path = Path(which)
    if not (path / "state.json").is_file():
        raise UserError(f"--resume {which}: not a dreamtune checkpoint folder (no state.json); pass 'latest' or a checkpoint-NNNNNN folder.")
    return path


def load(state: TrainingState, folder: Path) -> None:
    """Restore ``state`` in place from ``folder``."""
    for name, module in state.modules.items():
        weights = load_file(str(folder / f"trainable-{name}.safetensors"))
        params = dict(trainable_parameters(module))
        if set(weights) != set(params):
            raise UserError(f"checkpoint {folder} was made by a different method or model; resume with the same config it was trained with.")
        with torch.no_grad():
            for key, value in weights.items():
                params[key].copy_(value)
        state.optimizers[name].load_state_dict(torch.load(folder / f"optimizer-{name}.pt", weights_only=True))
        state.schedules[name].load_state_dict(torch.load(folder / f"schedule-{name}.pt", weights_only=True))
        if name in state.emas:
            state.emas[name].load_state_dict(load_file(str(folder / f"ema-{name}.safetensors")))
    rng = torch.load(folder / "rng.pt", weights_only=True)
    torch.set_rng_state(rng["torch"])
    np.random.set_state(("MT19937", np.array(rng["numpy"], dtype=np.uint32), rng["numpy_position"], 0, 0.0))
    random.setstate((3, tuple(rng["python"]), None))
    state.step = json.loads((folder / "state.json").read_text())["step"]
