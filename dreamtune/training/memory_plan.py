"""``train.gradient_checkpointing: auto`` — recompute activations only when a step would not fit.

Gradient checkpointing keeps a few activations per block and recomputes the rest in the backward:
one more forward of the denoiser per step (a quarter to a third of the step) for much less memory.
Whether a run needs it depends on the model, the resolution, the batch and the device, so ``auto``
measures instead of guessing: one forward of the denoiser at batch 1 on a probe resolution, counting
the bytes autograd keeps for the backward (saved-tensor hooks; parameters excluded, each storage
once), scaled to the run's batch and area (activations grow with both; attention kernels keep O(tokens)),
plus the gradients and AdamW state of the trainable weights. Checkpointing stays off when that fits
in ``FREE_SHARE`` of the device's free memory, the rest being room for the backward's transient
buffers and the allocator. The decision and its figures are logged; ``true`` / ``false`` skip it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from dreamtune.models.quantize import plain_tensors

FREE_SHARE = 0.6  # of the free memory a step's activations + optimizer state may take without checkpointing
PROBE_SIDE = 256  # probe resolution (px) for runs above it: the probe itself must fit whatever the run's size


@dataclass(frozen=True)
class MemoryPlan:
    checkpointing: bool
    activation_bytes: int  # estimated activations one step keeps without checkpointing
    optimizer_bytes: int  # gradients + AdamW moments of the trainable weights
    free_bytes: int

    def sentence(self) -> str:
        gib = lambda b: f"{b / 2**30:.1f} GiB"
        need = gib(self.activation_bytes + self.optimizer_bytes)
        verdict = "on (it would not fit)" if self.checkpointing else "off (it fits)"
        return (
            f"gradient checkpointing {verdict}: a step keeps ~{gib(self.activation_bytes)} of activations and "
            f"{gib(self.optimizer_bytes)} of gradients and optimizer state ({need}); {gib(self.free_bytes)} free "
            f"(train.gradient_checkpointing=true/false overrides)"
        )


def free_memory(device: torch.device) -> int:
    """Bytes the run may still allocate on ``device``."""
    if device.type == "cuda":  # the driver's free memory plus what PyTorch's allocator holds unused
        return (
            torch.cuda.mem_get_info(device)[0]
            + torch.cuda.memory_reserved(device)
            - torch.cuda.memory_allocated(device)
        )
    import psutil

    from dreamtune.training import cgroup_memory

    available, allowed = psutil.virtual_memory().available, cgroup_memory.room()
    return available if allowed is None else min(available, allowed)  # a container's limit counts too


def optimizer_bytes(parameters) -> int:
    """A gradient in the weight's dtype and two fp32 AdamW moments per trainable weight."""
    return sum(p.numel() * (p.element_size() + 8) for p in parameters if p.requires_grad)


def probe_resolution(resolution: int) -> int:
    """The run's own resolution up to ``PROBE_SIDE`` (256 px, which every family's latent grid divides), else 256."""
    return resolution if resolution <= PROBE_SIDE else PROBE_SIDE


def saved_activation_bytes(components, resolution: int, autocast) -> int:
    """Bytes autograd keeps for the backward of one denoiser forward at batch 1 and ``resolution``
    (measured; the latents require gradients so every method's graph is recorded)."""
    from dreamtune.objectives.guided import condition, initial_latents

    family, device = components.family, components.device
    denoiser = components.denoiser
    weights = {t.untyped_storage().data_ptr() for p in denoiser.parameters() for t in plain_tensors(p)}
    kept: dict[int, int] = {}

    def pack(tensor):
        for plain in plain_tensors(tensor):
            storage = plain.untyped_storage()
            if storage.data_ptr() not in weights:
                kept[storage.data_ptr()] = max(kept.get(storage.data_ptr(), 0), storage.nbytes())
        return tensor

    conditioning = condition(components, [""], resolution, device).cond
    latents = (
        initial_latents(components, [0], resolution, device).to(next(denoiser.parameters()).dtype).requires_grad_(True)
    )
    timestep = components.sampler(2, resolution).timesteps[:1].to(device)
    devices = [device] if device.type == "cuda" else []
    with (
        torch.random.fork_rng(devices=devices),
        autocast(),
        torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor),
    ):
        output = family.predict(components, latents, timestep, conditioning)  # the run's random streams are untouched
    del output
    return sum(kept.values())


def plan(
    components, trainable_parameters, resolution: int, batch: int, autocast, free: int | None = None
) -> MemoryPlan:
    """Measure and decide (module doc); ``batch``: images through the denoiser per micro-step;
    ``free``: the free bytes to plan with (default: this device's; several processes pass their minimum)."""
    probe = probe_resolution(resolution)
    per_image = saved_activation_bytes(components, probe, autocast) * (resolution / probe) ** 2
    activations = int(per_image * batch)
    state = optimizer_bytes(trainable_parameters)
    free = free_memory(components.device) if free is None else free
    return MemoryPlan(activations + state > FREE_SHARE * free, activations, state, free)


def decide(config, components, parts, accelerator, log) -> bool:
    """train.gradient_checkpointing: true / false as set; auto: measured by ``plan`` above, said in one line."""
    if config.train.gradient_checkpointing != "auto":
        return config.train.gradient_checkpointing
    batch = config.train.batch_size * (2 if config.prior.enabled else 1) * (2 if config.rl.algorithm else 1)
    trainable = [p for module in parts.modules.values() for p in module.parameters()]
    free = accelerator.gather(torch.tensor([free_memory(accelerator.device)], device=accelerator.device)).min()
    decided = plan(components, trainable, config.data.resolution, batch, accelerator.autocast, int(free))
    if accelerator.is_main_process:
        log(decided.sentence())
    return decided.checkpointing
