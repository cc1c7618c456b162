"""Rollouts as a batch source (DESIGN.md): prompts -> sampled trajectories (DDIM η > 0, or flow SDE steps) with
log-probabilities -> rewards -> per-prompt normalised advantages -> minibatches of transitions.

A *round* samples ``samples_per_round`` trajectories with the current weights (on-policy), then
serves ``inner_epochs`` shuffled passes over its transitions, ``batch_size`` per micro-step.
Prompts, seeds and shuffles are functions of (seed, round); the samples depend on the weights,
so a run resumed mid-round re-samples that round with the restored weights.

``last_steps`` K trains only the last K sampler steps (colour, tone and sharpness are settled
there; the content earlier). With ``branch`` the ``images_per_prompt`` images of a prompt share
their initial noise and every step before those K, and branch for them: the reward differences
inside a group are then caused by the trained steps alone, and the group mean is a baseline
conditioned on the branch point (still unbiased for those steps), which removes the variance
the untrained steps would add. The shared prefix is sampled once per group, so a round costs
about (T - K + K x images_per_prompt) / (T x images_per_prompt) of the unbranched one.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import torch

from dreamtune.data.augment import sample_generator
from dreamtune.models.components import Components
from dreamtune.objectives.guided import condition, decode, guided_prediction, initial_latents
from dreamtune.objectives.starting_weights import StartingWeights, needs_reference, set_floors


@dataclass(frozen=True)
class RolloutSettings:
    prompts: tuple[str, ...]
    samples_per_round: int
    images_per_prompt: int
    inner_epochs: int
    batch_size: int  # transitions per micro-step
    timestep_fraction: float  # share of the candidate steps trained on
    last_steps: int  # candidates: the last K steps of each trajectory (0: all)
    branch: bool  # a prompt's images share their start and the steps before the last K
    sample_steps: int
    guidance_scale: float
    eta: float
    resolution: int
    seed: int
    floor_samples: int  # a reward with floors: images per prompt from the starting weights, before step 1
    stream: int = 0  # the process's index: each process samples its own prompts and seeds


def advantages_per_prompt(rewards: torch.Tensor, prompts: list) -> torch.Tensor:
    """(r - mean) / std within each prompt's samples (DDPO's per-prompt stat tracking; any
    hashable group key works, e.g. a branched group's index); prompts with a single sample use
    the batch's statistics."""
    out = torch.empty_like(rewards, dtype=torch.float32)
    overall = (rewards.float().mean(), rewards.float().std().clamp(min=1e-6) if len(rewards) > 1 else torch.tensor(1.0))
    for prompt in set(prompts):
        index = torch.tensor([i for i, p in enumerate(prompts) if p == prompt])
        group = rewards[index].float()
        mean, std = (group.mean(), group.std().clamp(min=1e-6)) if len(group) > 1 else overall
        out[index] = (group - mean) / std
    return out


class RolloutSource:
    def __init__(self, components: Components, rewards, settings: RolloutSettings, autocast=None, on_round=None):
        self.components, self.rewards, self.settings = components, rewards, settings
        self.autocast = autocast or (lambda: torch.autocast("cpu", enabled=False))
        self.on_round = on_round or (lambda record: None)
        self.sampler = components.sampler(settings.sample_steps, settings.resolution)
        self.round, self.data = -1, {}
        self.start = StartingWeights(components.denoiser) if needs_reference(rewards) else None
        set_floors(rewards, settings.prompts, settings.floor_samples, self._floor_images)
        self.transitions = settings.samples_per_round * self._kept(settings.sample_steps)
        self.per_epoch = math.ceil(self.transitions / settings.batch_size)

    def _candidates(self, steps: int) -> int:
        last = self.settings.last_steps
        return min(last, steps) if last > 0 else steps

    def _kept(self, steps: int) -> int:
        return max(1, round(self._candidates(steps) * self.settings.timestep_fraction))

    @property
    def steps_per_round(self) -> int:
        return self.per_epoch * self.settings.inner_epochs

    @torch.no_grad()
    def sample(
        self, prompts: list[str], seeds: list[int], copies: int = 1, shared_steps: int = 0, denoiser=None
    ) -> dict:
        """Trajectories: latents (B,T+1,...), log_probs (B,T), timesteps (T,), images (B,3,H,W).
        Each prompt's first ``shared_steps`` steps run once, then ``copies`` branches continue
        with their own noise (B = len(prompts) x copies, a prompt's copies adjacent).
        ``denoiser``: a stand-in for the denoiser (the starting weights, for reference images)."""
        s, c = self.settings, self.components
        device = c.device
        with self.autocast():
            conditioning = condition(c, prompts, s.resolution, device)
            latents = initial_latents(c, seeds, s.resolution, device)
            generator = torch.Generator("cpu").manual_seed(seeds[0] * 7_919 + 1)
            chain, log_probs = [latents.float()], []
            for index, t in enumerate(self.sampler.timesteps):
                if index == shared_steps and copies > 1:  # branch: every group into its copies
                    branch = torch.arange(len(prompts)).repeat_interleave(copies)
                    chain, log_probs = [x[branch] for x in chain], [x[branch] for x in log_probs]
                    latents, conditioning = chain[-1], conditioning.select(branch.to(device))
                steps = t.reshape(1).repeat(len(latents)).to(device)
                prediction = guided_prediction(c, latents, steps, conditioning, s.guidance_scale, denoiser)
                latents, log_prob, _ = self.sampler.step(prediction, steps, latents, s.eta, generator=generator)
                chain.append(latents)
                log_probs.append(log_prob)
            images = decode(c, latents)
        return {
            "latents": torch.stack(chain, 1),
            "log_probs": torch.stack(log_probs, 1),
            "timesteps": self.sampler.timesteps.clone(),
            "images": images,
            "conditioning": conditioning,
        }

    def _collect(self, round_index: int) -> None:
        s = self.settings
        rng = random.Random(s.seed * 1_000_003 + round_index + s.stream * 7_777_777_777)
        groups = s.samples_per_round // s.images_per_prompt
        chosen_prompts = [rng.choice(s.prompts) for _ in range(groups)]
        prompts = [p for p in chosen_prompts for _ in range(s.images_per_prompt)]
        seeds = [rng.randrange(2**31) for _ in prompts]
        for module in self._trained_modules():
            module.eval()
        steps = len(self.sampler.timesteps)
        candidates, kept = self._candidates(steps), self._kept(steps)
        if s.branch:  # a group shares its start and every step before the trained ones
            group_seeds = seeds[:: s.images_per_prompt]
            seeds = [
                seed for seed in group_seeds for _ in range(s.images_per_prompt)
            ]  # a group's images share one start
            arguments = (chosen_prompts, group_seeds, s.images_per_prompt, steps - candidates)
            keys = [g for g in range(groups) for _ in range(s.images_per_prompt)]
        else:
            arguments, keys = (prompts, seeds), prompts
        trajectories = self.sample(*arguments)
        meta = {"seeds": seeds}
        if self.start is not None:  # the same prompts, seeds, branches and noise through the starting weights
            meta["reference"] = self.sample(*arguments, denoiser=self.start)["images"]
        for module in self._trained_modules():
            module.train()
        rewards, logged = self.rewards.evaluate(trajectories["images"], prompts, meta)
        advantages = advantages_per_prompt(rewards.detach().cpu(), keys)
        generator = sample_generator(s.seed, round_index, 0, stream=11 + 100 * s.stream)
        first = steps - candidates
        chosen = torch.stack(
            [first + torch.randperm(candidates, generator=generator)[:kept] for _ in prompts]
        )  # (B, kept)
        sample_index = torch.arange(len(prompts)).repeat_interleave(kept)
        step_index = chosen.flatten()
        self.data = {"sample": sample_index, "step": step_index, "trajectories": trajectories, "advantages": advantages}
        self.round_metrics = {f"round/{k}": v for k, v in logged.items()}
        self.round = round_index
        self.on_round({"round": round_index, **logged})

    def _floor_images(self, prompts: list[str], seeds: list[int]):
        for module in self._trained_modules():
            module.eval()
        images = self.sample(prompts, seeds)["images"]
        for module in self._trained_modules():
            module.train()
        return images

    def _trained_modules(self):
        return [self.components.denoiser]

    def batch(self, micro_step: int) -> dict:
        round_index, within = divmod(micro_step, self.steps_per_round)
        if round_index != self.round:
            self._collect(round_index)
        epoch, k = divmod(within, self.per_epoch)
        generator = sample_generator(self.settings.seed, round_index, 1 + epoch, stream=12 + 100 * self.settings.stream)
        order = torch.randperm(self.transitions, generator=generator)[
            k * self.settings.batch_size : (k + 1) * self.settings.batch_size
        ]
        sample_index, step_index = self.data["sample"][order], self.data["step"][order]
        t = self.data["trajectories"]
        return {
            "latents": t["latents"][sample_index, step_index],
            "next_latents": t["latents"][sample_index, step_index + 1],
            "timesteps": t["timesteps"][step_index],
            "log_probs": t["log_probs"][sample_index, step_index],
            "advantages": self.data["advantages"][sample_index],
            "conditioning": t["conditioning"].select(sample_index),
            "round_metrics": self.round_metrics,
        }


class PromptSource:
    """DRaFT's batch source: ``batch_size`` prompts and seeds per micro-step, from (seed, step,
    process): each process draws its own."""

    def __init__(self, prompts: tuple[str, ...], batch_size: int, seed: int, stream: int = 0):
        self.prompts, self.batch_size, self.seed, self.stream = prompts, batch_size, seed, stream

    def batch(self, step: int) -> dict:
        rng = random.Random(self.seed * 1_000_003 + step + self.stream * 7_777_777_777)
        return {
            "prompts": [rng.choice(self.prompts) for _ in range(self.batch_size)],
            "seeds": [rng.randrange(2**31) for _ in range(self.batch_size)],
        }
