"""Few-step distillation of a personalized model: the run's starting weights (base + method.lora.init_from)
are the teacher; the trained weights become a student that samples in 1 to S steps (``distill.steps``)
without classifier-free guidance.

  pool      at the first step, ``distill.pool`` teacher samples x0ᵀ: each prompt in turn with its own seed's
            noise z, ``teacher_steps`` deterministic steps (trailing DDIM, or the flow model's Euler grid)
            with guidance ``teacher_guidance``, through the starting weights (objectives/starting_weights.py,
            copied before a resume loads its checkpoint); checkpoints keep the pool, so a resume reads it
  state     per sample a student step k ~ U{0..S-1}: the student's own S-step chain from z, k steps, without
            gradients — the states it will meet when it samples (S=4 trailing DDIM: 999, 749, 499, 249; the
            2- and 1-step grids are inside it, so one student serves 1, 2 and 4 steps)
  loss      ``loss_weight`` · MSE(x̂0(x_{t_k}, t_k), x0ᵀ) in latent space: from any of its states the student
            jumps to where the teacher's trajectory from the same noise ends (Luhman & Luhman 2021's
            knowledge distillation, on the student's own states)
  path      with ``trajectory_weight``: also MSE(x̂0, x̃0), where x̃0 is the clean latent whose student step lands
            where the teacher's guided steps from the same state land (the teacher steps between the student's
            t_k and t_{k+1}): guidance reaches every state the student meets, not only the pool's ends — a
            guided progressive distillation target (Salimans & Ho 2022; Meng et al. 2023, "On Distillation of
            Guided Diffusion Models"); it costs 2 · teacher_steps / steps teacher calls per sample
  game      with ``adversarial.weight`` the adversarial objective wraps this one and judges x̂0 against the
            teacher's samples (``passes["denoising"].latents``): with adversarial.discriminator=denoiser this
            is LADD's latent discriminator (Sauer et al. 2024, "Fast High-Resolution Image Synthesis with
            Latent Adversarial Diffusion Distillation")
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from dreamtune.data.augment import sample_generator
from dreamtune.models.components import Components
from dreamtune.objectives.base import LossOutput, Objective
from dreamtune.objectives.denoising import DenoisingPass
from dreamtune.objectives.guided import Conditioning, condition, guided_prediction, initial_latents
from dreamtune.objectives.starting_weights import StartingWeights

POOL_SEED = 7_000_000  # the pool's noise seeds: POOL_SEED + train.seed * pool + i


@dataclass(frozen=True)
class DistillSettings:
    steps: int
    teacher_steps: int
    teacher_guidance: float
    student_guidance: float
    pool: int
    prompts: tuple[str, ...]
    loss_weight: float
    trajectory_weight: float
    resolution: int
    seed: int


def few_step_sampling(config, components: Components) -> dict:
    """How the distilled model samples (dreamtune.json's ``sampling``, which ``generate`` follows): its steps, the
    scheduler whose first step starts at full noise (trailing DDIM; flow models' own Euler grid already does), and
    no classifier-free guidance (baked in; guidance-embedded families keep the teacher's as their input)."""
    from dreamtune.sampling.pipeline import scheduler_name

    flow = scheduler_name("default", components.noise_scheduler.config) == "euler"
    cfg_free = components.family.uses_classifier_free_guidance(components)
    return {
        "steps": config.distill.steps,
        "scheduler": "euler" if flow else "ddim_trailing",
        "guidance_scale": config.distill.student_guidance
        if config.distill.student_guidance > 1
        else (1.0 if cfg_free else config.distill.teacher_guidance),
        "distilled_from": config.method.lora.init_from or config.model.pretrained,
    }


def usage_hint(sampling: dict | None) -> str:
    """One line for file headers (kohya's / modelspec's): how a few-step model samples; "" for others."""
    if not sampling:
        return ""
    return (
        f"few-step LoRA: {sampling['steps']} steps (or fewer), CFG {sampling['guidance_scale']:g}, "
        f"{'DDIM with trailing timesteps' if sampling['scheduler'] == 'ddim_trailing' else 'Euler'}"
    )


class PoolSource:
    """The distillation's batch source: ``batch_size`` indices into the teacher's pool per micro-step, from
    (seed, step, process)."""

    def __init__(self, pool: int, batch_size: int, seed: int, stream: int = 0):
        self.pool, self.batch_size, self.seed, self.stream = pool, batch_size, seed, stream

    def batch(self, step: int) -> dict:
        rng = random.Random(self.seed * 1_000_003 + step + self.stream * 7_777_777_777 + 31)
        return {"index": [rng.randrange(self.pool) for _ in range(self.batch_size)]}


class FewStepDistillation(Objective):
    def __init__(self, components: Components, trainable: dict[str, nn.Module], settings: DistillSettings, log=print):
        self.components, self.trainable, self.settings, self.log = components, trainable, settings, log
        self.teacher = StartingWeights(components.denoiser)
        self.student_sampler = components.sampler(settings.steps, settings.resolution, start_at_noise=True)
        self.teacher_sampler = components.sampler(settings.teacher_steps, settings.resolution, start_at_noise=True)
        self.pool: dict[str, Tensor] | None = None
        self.between = settings.teacher_steps // settings.steps  # teacher steps inside one student step
        if settings.trajectory_weight and not torch.allclose(
            self.teacher_sampler.timesteps[:: self.between].float(), self.student_sampler.timesteps.float()
        ):
            raise ValueError("the teacher's sampler grid does not hold the student's: no guided-trajectory target")

    def trainable_modules(self) -> dict[str, nn.Module]:
        return {"model": nn.ModuleDict(self.trainable)}

    def checkpoint_extras(self) -> dict:
        """The teacher's pool: a resumed run reads it instead of sampling the teacher again (minutes on a big
        model; the same values either way, so a resume stays bit-identical)."""
        return {"pool": self}

    def state_dict(self) -> dict[str, Tensor]:
        return {"end": self.pool["end"]} if self.pool is not None else {}

    def load_state_dict(self, values: dict[str, Tensor]) -> None:
        if not values:
            return
        end = values["end"]
        expected = (self.settings.pool, *end.shape[1:])
        if tuple(end.shape) != expected:
            raise ValueError(f"the pool holds {tuple(end.shape)} latents, this run makes {expected}")
        self.pool = {"end": end.float()}

    # ---- the teacher's samples ------------------------------------------------------------------
    def _pool_members(self) -> tuple[list[str], list[int]]:
        s = self.settings
        prompts = [s.prompts[i % len(s.prompts)] for i in range(s.pool)]
        return prompts, [POOL_SEED + s.seed * s.pool + i for i in range(s.pool)]

    @torch.no_grad()
    def _make_pool(self) -> dict[str, Tensor]:
        s, c = self.settings, self.components
        prompts, seeds = self._pool_members()
        self.log(
            f"distillation: {s.pool} teacher samples ({len(s.prompts)} prompt(s), {s.teacher_steps} steps, "
            f"guidance {s.teacher_guidance:g}) through the starting weights"
        )
        ends, chunk = [], 16
        bar = tqdm(
            total=s.pool, desc="teacher samples", unit="sample", leave=False, disable=None
        )  # none off a terminal
        for first in range(0, s.pool, chunk):
            rows = range(first, min(s.pool, first + chunk))
            conditioning = condition(c, [prompts[i] for i in rows], s.resolution, c.device)
            latents = initial_latents(c, [seeds[i] for i in rows], s.resolution, c.device)
            for t in self.teacher_sampler.timesteps:
                latents = self._teacher_step(
                    latents, t.reshape(1).repeat(len(latents)).to(latents.device), conditioning
                )
            ends.append(latents.float())
            bar.update(len(rows))
        bar.close()
        return {"end": torch.cat(ends)}

    def _teacher_step(self, latents: Tensor, steps: Tensor, conditioning: Conditioning) -> Tensor:
        """One deterministic, guided step of the teacher (the starting weights) on its own grid."""
        c, guidance = self.components, self.settings.teacher_guidance
        prediction = guided_prediction(c, latents, steps, conditioning, guidance, self.teacher)
        return self.teacher_sampler.step(prediction, steps, latents, 0.0)[0]

    # ---- the student ----------------------------------------------------------------------------
    def _student(self, latents: Tensor, steps: Tensor, conditioning: Conditioning) -> Tensor:
        """The student's prediction: guidance-free by default (one call; guidance-embedded families get the teacher's
        scale as their input), or with its own classifier-free guidance (``student_guidance`` > 1: two calls)."""
        c = self.components
        if self.settings.student_guidance > 1:
            return guided_prediction(c, latents, steps, conditioning, self.settings.student_guidance)
        if c.family.uses_classifier_free_guidance(c):
            dtype = next(p for p in c.denoiser.parameters()).dtype
            return c.family.predict(c, latents.to(dtype), steps, conditioning.cond).float()
        return guided_prediction(c, latents, steps, conditioning, self.settings.teacher_guidance)

    @torch.no_grad()
    def _trajectory_target(self, latents: Tensor, k: Tensor, conditioning: Conditioning) -> Tensor:
        """x̃0 per sample: run the teacher (guided) from the student's state over the teacher steps inside the
        student's step k, then solve the student's step for the clean latent that lands there (a deterministic
        step is affine in the prediction: x_next = step(0) + (step(1) - step(0)) · p)."""
        c = self.components
        device, start = latents.device, latents
        grid = self.teacher_sampler.timesteps
        for j in range(self.between):
            latents = self._teacher_step(latents, grid[k * self.between + j].to(device), conditioning)
        steps = self.student_sampler.timesteps[k].to(device)
        at_zero = self.student_sampler.step(torch.zeros_like(start), steps, start, 0.0)[0]
        at_one = self.student_sampler.step(torch.ones_like(start), steps, start, 0.0)[0]
        prediction = (latents - at_zero) / (at_one - at_zero)
        return c.noise.predicted_clean(start.float(), prediction, steps)

    def __call__(self, batch: Mapping, step: int) -> LossOutput:
        s, c = self.settings, self.components
        if self.pool is None:
            self.pool = self._make_pool()
        index = list(batch["index"])
        prompts_all, seeds_all = self._pool_members()
        prompts, seeds = [prompts_all[i] for i in index], [seeds_all[i] for i in index]
        device = c.device
        conditioning = condition(c, prompts, s.resolution, device)
        target = self.pool["end"][torch.tensor(index)].to(device)
        generator = sample_generator(s.seed, step, 0, stream=23)
        k = torch.randint(0, s.steps, (len(index),), generator=generator)
        grid = self.student_sampler.timesteps
        latents = initial_latents(c, seeds, s.resolution, device)
        with torch.no_grad():  # the student's own chain up to each sample's step k
            for j in range(int(k.max())):
                moving = (k > j).to(device)
                steps = grid[j].reshape(1).repeat(len(latents)).to(device)
                prediction = self._student(latents, steps, conditioning)
                advanced = self.student_sampler.step(prediction, steps, latents, 0.0)[0]
                latents = torch.where(moving.view(-1, *([1] * (latents.ndim - 1))), advanced, latents)
        timesteps = grid[k].to(device)
        prediction = self._student(latents, timesteps, conditioning)
        forward = DenoisingPass(
            latents=target,
            noise=torch.zeros_like(target),
            timesteps=timesteps,
            noisy=latents,
            prediction=prediction,
            conditioning=conditioning.cond,
        )
        clean = forward.predicted_clean(c)
        loss = s.loss_weight * F.mse_loss(clean, target)
        metrics = {"distill/step": float(k.float().mean())}
        if s.trajectory_weight:
            path = F.mse_loss(clean, self._trajectory_target(latents, k, conditioning))
            loss = loss + s.trajectory_weight * path
            metrics["distill/trajectory"] = float(path.detach())
        metrics["loss"] = float(loss.detach())
        return LossOutput({"model": loss}, metrics, passes={"denoising": forward})
