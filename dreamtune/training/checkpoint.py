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
    extras: dict[str, object] = field(default_factory=dict)  # other state objectives keep (state_dict of tensors)
    fused: dict[str, object] = field(
        default_factory=dict
    )  # optimizers stepped inside the backward pass (optim.FusedUpdate)


def _rng_state() -> dict:
    _, keys, position, *_ = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "numpy": keys.tolist(),
        "numpy_position": int(position),
        "python": list(random.getstate()[1]),
    }


def _tensor_bytes(value) -> int:
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, dict):
        return sum(_tensor_bytes(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return sum(_tensor_bytes(v) for v in value)
    return 0


def _check_room(output_dir: Path, needed: int, step: int) -> None:
    free = shutil.disk_usage(output_dir).free
    if free < needed * 1.05:
        raise UserError(
            f"not enough disk space in {output_dir} for checkpoint-{step:06d}: it needs about {needed / 2**20:.0f} MB and "
            f"{free / 2**20:.0f} MB are free; free some space, or lower train.keep_checkpoints; the earlier checkpoints are intact."
        )


def _snapshot(state: TrainingState) -> dict[str, tuple[dict, dict]]:
    """Each module's trainable weights and its optimizer's state as whole tensors; a sharded module's
    are gathered (training/sharding.py: every process must call this, the main one receives them)."""
    from dreamtune.training import sharding

    taken = {}
    for name, module in state.modules.items():
        optimizer = getattr(state.optimizers[name], "optimizer", state.optimizers[name])
        if sharding.is_sharded(module):
            names = [n for n, _ in trainable_parameters(module)]
            taken[name] = (sharding.whole_weights(module, names), sharding.whole_optimizer_state(module, optimizer))
        else:
            taken[name] = (
                {n: p.detach().cpu().contiguous() for n, p in trainable_parameters(module)},
                optimizer.state_dict(),
            )
    return taken


def save(state: TrainingState, output_dir: Path, keep: int, write: bool = True) -> Path | None:
    """Write ``output_dir/checkpoint-<step>`` atomically, then drop all but the newest ``keep``.
    Refused up front when the disk cannot hold it; a write that fails anyway (a file-size limit,
    a race for the space) leaves no partial folder and says how much room it needed. Under
    ``train.shard`` every process calls it (the gathering is collective) and ``write`` is the main one's."""
    snapshot = _snapshot(state)
    if not write:
        return None
    final = Path(output_dir) / f"{PREFIX}{state.step:06d}"
    needed = sum(_tensor_bytes(w) + _tensor_bytes(o.get("state", {})) for w, o in snapshot.values()) + 1_000_000
    needed += sum(_tensor_bytes(e.state_dict()) for e in [*state.emas.values(), *state.extras.values()])
    _check_room(Path(output_dir), needed, state.step)
    try:
        _write(state, final, snapshot)
    except UserError as exc:
        raise UserError(
            f"{str(exc).rstrip('.')} (checkpoint-{state.step:06d} needs about {needed / 2**20:.0f} MB); "
            "the earlier checkpoints are intact."
        ) from None
    for old in list_checkpoints(output_dir)[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return final


def _write(state: TrainingState, final: Path, snapshot: dict[str, tuple[dict, dict]]) -> None:
    with atomic_dir(final) as temp:
        for name, (weights, optimizer) in snapshot.items():
            save_file(weights, str(temp / f"trainable-{name}.safetensors"))
            torch.save(optimizer, temp / f"optimizer-{name}.pt")
            torch.save(state.schedules[name].state_dict(), temp / f"schedule-{name}.pt")
            if name in state.emas:
                save_file(
                    {k: v.contiguous() for k, v in state.emas[name].state_dict().items()},
                    str(temp / f"ema-{name}.safetensors"),
                )
        for name, extra in state.extras.items():
            save_file(
                {k: v.contiguous() for k, v in extra.state_dict().items()}, str(temp / f"extra-{name}.safetensors")
            )
        torch.save(_rng_state(), temp / "rng.pt")
        (temp / "state.json").write_text(json.dumps({"step": state.step}))


def list_checkpoints(output_dir: Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first (temp folders are never listed)."""
    folders = [p for p in Path(output_dir).glob(f"{PREFIX}*") if (p / "state.json").is_file()]
    return sorted(folders, key=lambda p: int(p.name[len(PREFIX) :]))


def find(output_dir: Path, which: str) -> Path:
    """``which`` is 'latest' or a checkpoint folder path."""
    if which == "latest":
        found = list_checkpoints(output_dir)
        if not found:
            raise UserError(
                f"--resume latest: no checkpoint in {output_dir}; start without --resume or set train.checkpoint_every."
            )
        return found[-1]
    path = Path(which)
    if not (path / "state.json").is_file():
        raise UserError(
            f"--resume {which}: not a dreamtune checkpoint folder (no state.json); pass 'latest' or a checkpoint-NNNNNN folder."
        )
    return path


class DamagedCheckpoint(UserError):
    """A checkpoint file that is missing, truncated, of another format, or of another model."""


def _read(path: Path, reader):
    """One checkpoint file through ``reader``; any failure names the file."""
    if not path.is_file():
        raise DamagedCheckpoint(f"{path} is missing")
    try:
        return reader(path)
    except Exception as exc:  # truncated safetensors, a pickle that weights_only refuses, bad JSON, ...
        reason = str(exc).splitlines()[0][:100] if str(exc) else type(exc).__name__
        raise DamagedCheckpoint(f"{path} is damaged ({reason})") from None


def _load_tensors(path: Path) -> dict:
    return _read(path, lambda p: load_file(str(p)))


def _load_torch(path: Path):
    return _read(path, lambda p: torch.load(p, weights_only=True))


def _restore(kind: str, path: Path, target, value) -> None:
    try:
        target.load_state_dict(value)
    except Exception as exc:
        raise DamagedCheckpoint(f"{path} does not fit this run's {kind} ({str(exc).splitlines()[0][:100]})") from None


class _ShardedOptimizer:
    """``load_state_dict`` of a sharded module's optimizer from whole tensors (for ``_restore``)."""

    def __init__(self, module, optimizer):
        self.module, self.optimizer = module, optimizer

    def load_state_dict(self, value) -> None:
        from dreamtune.training import sharding

        sharding.load_whole_optimizer_state(self.module, self.optimizer, value)


def load(state: TrainingState, folder: Path) -> None:
    """Restore ``state`` in place from ``folder``; a bad file raises :class:`DamagedCheckpoint`
    naming it. Everything is read and checked before anything is changed."""
    folder = Path(folder)
    step = _read(folder / "state.json", lambda p: int(json.loads(p.read_text())["step"]))
    loaded = {}
    for name, module in state.modules.items():
        path = folder / f"trainable-{name}.safetensors"
        weights = _load_tensors(path)
        params = dict(trainable_parameters(module))
        if set(weights) != set(params):
            raise DamagedCheckpoint(
                f"{path} was made by a different method or model; resume with the config it was trained with"
            )
        wrong = [k for k in weights if weights[k].shape != params[k].shape]
        if wrong:
            raise DamagedCheckpoint(
                f"{path} holds {wrong[0]} of shape {tuple(weights[wrong[0]].shape)}, this run's is "
                f"{tuple(params[wrong[0]].shape)} (another LoRA rank or model); resume with the config it was trained with"
            )
        loaded[name] = (
            weights,
            _load_torch(folder / f"optimizer-{name}.pt"),
            _load_torch(folder / f"schedule-{name}.pt"),
            _load_tensors(folder / f"ema-{name}.safetensors") if name in state.emas else None,
        )
    extras = {name: _load_tensors(folder / f"extra-{name}.safetensors") for name in state.extras}
    rng = _load_torch(folder / "rng.pt")
    for name, values in extras.items():
        _restore("state", folder / f"extra-{name}.safetensors", state.extras[name], values)
    from dreamtune.training import sharding

    for name, (weights, optimizer, schedule, ema) in loaded.items():
        module = state.modules[name]
        if sharding.is_sharded(module):  # every process read the whole tensors; each keeps its slice
            sharding.load_whole_weights(module, weights)
            inner = getattr(state.optimizers[name], "optimizer", state.optimizers[name])
            _restore("optimizer", folder / f"optimizer-{name}.pt", _ShardedOptimizer(module, inner), optimizer)
        else:
            params = dict(trainable_parameters(module))
            with torch.no_grad():
                for key, value in weights.items():
                    params[key].copy_(value)
            _restore("optimizer", folder / f"optimizer-{name}.pt", state.optimizers[name], optimizer)
        _restore("learning-rate schedule", folder / f"schedule-{name}.pt", state.schedules[name], schedule)
        if ema is not None:
            _restore("EMA", folder / f"ema-{name}.safetensors", state.emas[name], ema)
    try:
        torch.set_rng_state(rng["torch"])
        np.random.set_state(("MT19937", np.array(rng["numpy"], dtype=np.uint32), rng["numpy_position"], 0, 0.0))
        random.setstate((3, tuple(rng["python"]), None))
    except Exception:
        raise DamagedCheckpoint(
            f"{folder / 'rng.pt'} is damaged (not the random-number state dreamtune writes)"
        ) from None
    state.step = step


def resume(state: TrainingState, output_dir: Path, which: str, log=print) -> Path:
    """Restore ``state`` from ``which`` ('latest' or a folder). With 'latest', a damaged newest
    checkpoint is reported and the one before it is used; a named folder that is damaged is an
    error that names the damaged file and the previous checkpoint."""
    if which != "latest":
        folder = find(output_dir, which)
        try:
            load(state, folder)
        except DamagedCheckpoint as exc:
            earlier = [c for c in list_checkpoints(folder.parent) if c.name < folder.name]
            offer = f"; resume from {earlier[-1]} instead" if earlier else ""
            raise UserError(f"cannot resume: {str(exc).rstrip('.')}{offer}.") from None
        return folder
    candidates = list_checkpoints(output_dir)
    if not candidates:
        raise UserError(
            f"--resume latest: no checkpoint in {output_dir}; start without --resume or set train.checkpoint_every."
        )
    problems = []
    for folder in reversed(candidates):
        try:
            load(state, folder)
        except DamagedCheckpoint as exc:
            problems.append(str(exc))
            log(f"warning: {exc}; trying the checkpoint before it")
            continue
        return folder
    raise UserError(
        f"cannot resume: every checkpoint in {output_dir} is damaged ({problems[0]}); start again without --resume."
    )
