"""``train.memory: auto`` — before anything loads, make the run's weights, gradients and optimizer state
fit the device, choosing the least costly savings, and say so in one line.

The sizes come from the model files' safetensors headers (tensor shapes; nothing is read beyond them),
so the decision and a refusal both come before loading. The savings, cheapest first, each taken only
where the run can use it and only while the run does not fit:

1. the optimizer step fused into the backward pass (full fine-tunes: gradients of one weight at a time);
2. int8 text encoders (they are frozen; where they are freed before the denoiser loads this only
   matters when their loading phase is the larger);
3. bf16 trained weights with stochastic rounding and 8-bit AdamW state (full fine-tunes);
4. an int8 frozen denoiser (LoRA), then nf4;
5. on a CPU with a quantized base, freed buffers returned to the system at once (``train.release_freed_memory``:
   every layer's dequantized copy otherwise stays in glibc's heap as fragments, measured at 0.7 bytes per
   quantized weight, 0.1 with it; steps ~1.6x slower), then nf4 where int8 was taken;
6. on CUDA, the frozen weights kept in host memory and copied at each use (``train.offload``; slower:
   they cross the bus twice per step), counted as one block's weights on the device.

Activations are not estimated here: after loading, ``train.gradient_checkpointing: auto`` measures
them (training/memory_plan.py), so weights and state are planned into ``STATIC_SHARE`` of the free
memory and the rest is left for them. ``manual`` keeps the config as written. A resumed run keeps
the choices its first part made (read from its saved config), so it continues bit for bit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from safetensors import safe_open

from dreamtune import config as config_module
from dreamtune.config import Config
from dreamtune.errors import UserError
from dreamtune.methods import method_of

STATIC_SHARE = 0.7  # of the free memory, for weights, gradients and optimizer state
GIB = 2**30
QUANTIZED_BYTES = {"none": 2.0, "int8": 1.03, "fp8": 1.03, "nf4": 0.56}  # per frozen weight, scales included
# CPU heap fragments per quantized frozen weight (bytes): FLUX.1-dev-wide transformers of 6 and 12 blocks,
# int8, 512 px (experiments/cpu-heap-fragments): 0.86 GiB more per 1.25 B weights by default, 0.11 with the release
FRAGMENTS = {False: 0.7, True: 0.1}
OFFLOADED_SHARE = 0.04  # of the frozen denoiser on the GPU with train.offload: one block (FLUX.1's largest is 2.8 %)
CHOSEN_KEYS = (
    "train.mixed_precision",  # on a CPU without bf16 instructions (training/cpu_precision.py)
    "model.quantize",
    "model.quantize_text_encoders",
    "train.fused_update",
    "train.trainable_dtype",
    "train.optimizer",
    "train.offload",
    "train.release_freed_memory",
)


@dataclass
class PartSize:
    """Parameter counts of one model part, from its files' headers."""

    parameters: int = 0
    matrices: list[tuple[str, int, int]] = field(default_factory=list)  # (name, out, in) of 2-D weights


def _weight_files(folder: Path, variant: str | None) -> list[Path]:
    """The loaded variant's weight files (full export's rule), else the plain ones."""
    from dreamtune.models.full_export import _weight_file_wanted

    files = sorted(folder.glob("*.safetensors"))
    return [f for f in files if _weight_file_wanted(f.name, variant)] or [
        f for f in files if _weight_file_wanted(f.name, None)
    ]


@dataclass
class RunSizes:
    """What the planners need of a run's model before loading: part sizes, the denoiser's and text
    encoders' folder names, and whether the text encoders go before the denoiser loads."""

    sizes: dict[str, PartSize]
    denoiser_name: str
    text_names: list[str]
    early: bool


def run_sizes(config: Config) -> RunSizes | None:
    """The sizes of ``config``'s model from its files' headers; None where they cannot be read without loading."""
    from dreamtune.models.families import family_for
    from dreamtune.models.loading import resolve_model
    from dreamtune.training.text_release import early_prompts

    location, index = resolve_model(config.model)
    sizes = part_sizes(location, index, config.model.variant)
    family = family_for(index)
    if not sizes or family.denoiser_name not in sizes:
        return None
    early = early_prompts(config, ["a caption"], class_images_ready=True) is not None
    return RunSizes(sizes, family.denoiser_name, list(family.text_encoder_names), early)


def part_sizes(location: str, index: dict, variant: str | None) -> dict[str, PartSize] | None:
    """``{component folder: its size}`` of a local diffusers folder; None where sizes cannot be read
    without loading (a single file, a hub id)."""
    root = Path(location)
    if not root.is_dir():
        return None
    sizes = {}
    for name, entry in index.items():
        if name.startswith("_") or not isinstance(entry, list) or not (root / name).is_dir():
            continue
        size = PartSize()
        for file in _weight_files(root / name, variant):
            with safe_open(str(file), "pt") as tensors:  # the header only: shapes, no data read
                for key in tensors.keys():
                    shape = tensors.get_slice(key).get_shape()
                    size.parameters += math.prod(shape)
                    if len(shape) == 2 and key.endswith(".weight"):
                        size.matrices.append((key, *shape))
        sizes[name] = size
    return sizes


@dataclass(frozen=True)
class Need:
    """The static memory of a run under one set of choices (bytes)."""

    text_phase: int  # text encoders (+ VAE) while prompts are encoded
    training: int  # everything that lives while steps run: weights, gradients, optimizer state

    @property
    def peak(self) -> int:
        return max(self.text_phase, self.training)


def _lora_parameters(denoiser: PartSize, config: Config) -> int:
    targets = config.method.lora.target_modules
    chosen = [(o, i) for key, o, i in denoiser.matrices if any(key.endswith(f"{t}.weight") for t in targets)]
    return config.method.lora.rank * sum(o + i for o, i in chosen)


def need(
    config: Config,
    sizes: dict[str, PartSize],
    denoiser_name: str,
    text_names: list[str],
    early: bool,
    processes: int = 1,
    cuda: bool = False,
) -> Need:
    """What one process of ``config`` needs with these sizes; ``early``: text encoders freed before the
    denoiser loads; ``processes``: how many share a sharded (train.shard: fsdp) full fine-tune."""
    t, m = config.train, config.model
    frozen = 4.0 if t.mixed_precision == "no" else 2.0
    denoiser = sizes[denoiser_name]
    method = method_of(config.method)
    full = method.trains_denoiser_weights
    trained_bytes = 2 if t.trainable_dtype == "bf16" else 4
    lora = _lora_parameters(denoiser, config) if method.adds_lora else 0
    trained = method.trained_denoiser_parameters(denoiser.parameters, lora)
    on_device = OFFLOADED_SHARE if t.offload else 1.0
    frozen_weights = 0 if full else denoiser.parameters * QUANTIZED_BYTES[m.quantize] * frozen / 2 * on_device
    weights = trained * trained_bytes + frozen_weights
    largest = max((o * i for _, o, i in denoiser.matrices), default=0) if full else trained
    gradients = (largest if t.fused_update else trained) * trained_bytes
    per_state = {"adamw": 2 * trained_bytes, "adamw8bit": 2.1, "adafactor": 0.1}[t.optimizer]
    text = (
        sum(sizes[n].parameters for n in text_names if n in sizes)
        * QUANTIZED_BYTES[m.quantize_text_encoders]
        * frozen
        / 2
    )
    vae = sum(s.parameters for n, s in sizes.items() if n == "vae") * frozen * (0 if t.offload else 1)
    split = processes if t.shard == "fsdp" and full else 1
    fragments = 0 if cuda or full or m.quantize == "none" else denoiser.parameters * FRAGMENTS[t.release_freed_memory]
    training = int((weights + gradients + trained * per_state) / split + vae + (0 if early else text) + fragments)
    return Need(int(text + vae), training)


def _savings(config: Config, cuda: bool = False) -> list[tuple[str, dict]]:
    """(what it costs, the overrides) in order of cost, the ones this run can take (``cuda``: offload can)."""
    t = config.train
    method = method_of(config.method)
    full = method.trains_denoiser_weights
    fusable = (
        t.grad_accum == 1 and t.mixed_precision != "fp16" and not config.rl.algorithm and not config.adversarial.weight
    )
    found = []
    if full and fusable and not t.fused_update:
        found.append(("the optimizer step fused into the backward pass", {"train.fused_update": True}))
    if config.model.quantize_text_encoders == "none" and method.adds_lora and not config.method.lora.text_encoder:
        found.append(("int8 text encoders", {"model.quantize_text_encoders": "int8"}))
    if full and t.mixed_precision == "bf16" and t.trainable_dtype == "fp32":
        found.append(
            (
                "bf16 trained weights with stochastic rounding and 8-bit AdamW state",
                {"train.trainable_dtype": "bf16", "train.optimizer": "adamw8bit"},
            )
        )
    if method.adds_lora and config.model.quantize == "none":
        found.append(("an int8 frozen denoiser", {"model.quantize": "int8"}))
    if method.adds_lora and not cuda and not t.release_freed_memory:
        found.append(
            ("freed buffers returned to the system at once (slower steps)", {"train.release_freed_memory": True})
        )
    if method.adds_lora and config.model.quantize in ("none", "int8"):
        found.append(("an nf4 frozen denoiser", {"model.quantize": "nf4"}))
    if cuda and not full and not t.offload and t.gradient_checkpointing is not False:
        found.append(("frozen weights in host memory, copied at each use", {"train.offload": True}))
    return found


def with_settings(config: Config, overrides: dict) -> Config:
    """``config`` with dotted settings replaced (and checked again)."""
    return config_module.replace(config, **{key.replace(".", "__"): value for key, value in overrides.items()})


def choose(
    config: Config,
    sizes: dict[str, PartSize],
    denoiser_name: str,
    text_names: list[str],
    early: bool,
    free: int,
    where: str,
    processes: int = 1,
    cuda: bool = False,
) -> tuple[Config, str]:
    """The config with the cheapest savings that fit ``free`` bytes (STATIC_SHARE of them), and the line
    the run logs; a UserError with the numbers when even every saving does not fit."""
    budget = STATIC_SHARE * free
    first = need(config, sizes, denoiser_name, text_names, early, processes, cuda).peak
    chosen, taken, current = config, [], first
    for words, overrides in _savings(config, cuda):
        if current <= budget:
            break
        chosen = with_settings(chosen, overrides)
        taken.append(words)
        current = need(chosen, sizes, denoiser_name, text_names, early, processes, cuda).peak
    gib = lambda b: f"{b / GIB:.1f} GiB"
    taken_savings = _savings(config, cuda)[: len(taken)]
    final = {k: v for _, o in taken_savings for k, v in o.items()}  # a later saving replaces an earlier one's value
    settings = ", ".join(f"{k}={v}" for k, v in final.items())
    if current > budget:
        every = f" even with {', '.join(taken)}" if taken else ""
        full = method_of(config.method).trains_denoiser_weights
        lighter = "train a LoRA (method.kind: lora), " if full else "lower data.resolution, "
        manual = f"train.memory: manual with {settings}" if taken else "train.memory: manual"
        raise UserError(
            f"this run needs ~{gib(current)} for weights, gradients and optimizer state{every}, and {where} has {gib(free)} "
            f"free (a step needs room for activations too: at most {gib(budget)} for these); {lighter}"
            f"use a machine with more memory, or set {manual} to try anyway."
        )
    if not taken:
        return (
            config,
            f"memory auto: weights, gradients and optimizer state ~{gib(first)} of {gib(free)} free on {where}; no saving needed",
        )
    kept = [words for words, o in taken_savings if any(final[k] == v for k, v in o.items())]
    return chosen, (
        f"memory auto: {gib(first)} of weights, gradients and optimizer state would not leave room in the {gib(free)} free on "
        f"{where}; chose {', '.join(kept)} ({settings}): ~{gib(current)} (train.memory: manual keeps the config as written)"
    )


def kept_choices(config: Config, saved: Path) -> Config:
    """A resumed run's memory choices as its first part made them (its saved config.yaml)."""
    if not saved.is_file():
        return config
    import yaml

    written = yaml.safe_load(saved.read_text()) or {}
    overrides = {}
    for dotted in CHOSEN_KEYS:
        section, key = dotted.split(".")
        if key in (written.get(section) or {}):
            overrides[dotted] = written[section][key]
    return with_settings(config, overrides)
