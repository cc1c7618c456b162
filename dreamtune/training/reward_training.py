"""``rl.algorithm``: reward fine-tuning through the one loop — DDPO (rollouts as the batch
source) or DRaFT-K (samples inside the objective) — optionally plus a weighted denoising loss on
the subject's photos (and class images) that keeps a personalized subject."""
from __future__ import annotations

from dreamtune.config import Config
from dreamtune.models.adapters import TrainableParts
from dreamtune.models.loading import Components, model_path
from dreamtune.objectives.composite import JointSource, WeightedSum
from dreamtune.objectives.ddpo import DDPOObjective, DDPOSettings
from dreamtune.objectives.draft import DraftObjective, DraftSettings
from dreamtune.rewards.registry import build_rewards
from dreamtune.sampling.generate import fill_prompt
from dreamtune.training.rollouts import PromptSource, RolloutSettings, RolloutSource


def reward_features(config: Config):
    """The CLIP of rl.clip, else the model's own clip/ (the miniature), else None."""
    from dreamtune.evaluation.features import load_clip

    if config.rl.clip:
        return load_clip(config.rl.clip)
    own = model_path(config.model.pretrained) / "clip"
    return load_clip(own, name="mini-CLIP") if (own / "config.json").is_file() else None


def rl_prompts(config: Config) -> tuple[str, ...]:
    return tuple(fill_prompt(p, config.rl.subject, config.rl.class_noun) for p in config.rl.prompts)


def build_reward_training(config: Config, components: Components, parts: TrainableParts, accelerator, photos: list,
                          denoising=None, on_round=None):
    """(objective, batch source). ``denoising``: (objective, source) of the ordinary run, mixed
    in with rl.regularize_weight."""
    rl = config.rl
    needs_clip = rl.rewards.clip_score or rl.rewards.subject_fidelity
    rewards = build_rewards(rl.rewards, reward_features(config) if needs_clip else None, photos, rl.subject)
    prompts = rl_prompts(config)
    trainable = parts.modules
    if rl.algorithm == "ddpo":
        objective = DDPOObjective(components, trainable, DDPOSettings(rl.sample_steps, rl.guidance_scale, rl.eta, rl.clip_range,
                                                                      rl.adv_clip, rl.kl_weight))
        rollout = RolloutSettings(prompts, rl.samples_per_round, rl.images_per_prompt, rl.inner_epochs, config.train.batch_size,
                                  timestep_fraction=rl.timestep_fraction, last_steps=rl.last_steps, branch=rl.branch,
                                  sample_steps=rl.sample_steps, guidance_scale=rl.guidance_scale, eta=rl.eta,
                                  resolution=config.data.resolution, seed=config.train.seed)
        source = RolloutSource(components, rewards, rollout, autocast=accelerator.autocast, on_round=on_round)
    else:
        objective = DraftObjective(components, trainable, rewards,
                                   DraftSettings(rl.sample_steps, rl.guidance_scale, rl.truncation_steps, config.data.resolution))
        source = PromptSource(prompts, config.train.batch_size, config.train.seed)
    if rl.regularize_weight and denoising is not None:
        objective = WeightedSum({"reward": (1.0, objective), "denoise": (rl.regularize_weight, denoising[0])})
        source = JointSource({"reward": source, "denoise": denoising[1]})
    return objective, source, rewards
