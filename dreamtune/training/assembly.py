"""One home for assembly: config + loaded model -> the objective and batch source the loop runs.

What a run does is read from one table, ``OBJECTIVES`` (rl.algorithm -> a builder of an
(objective, source) pair); wrappers are applied in one place (prior preservation, the
adversarial game, the denoising regularizer of reward runs), data-parallel wrapping is done
once for every objective, and each batch source draws its own share of the work per process.

Add a method: write its objective (objectives/) and batch source, add a builder here and a row
to ``OBJECTIVES``. Add a reward: rewards/registry.py. Add a model family: models/families/.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch

from dreamtune.config import Config
from dreamtune.data import augment
from dreamtune.data.cache import TensorCache, key_of, model_identity
from dreamtune.data.datasets import DatasetBatches, ImageSet
from dreamtune.errors import UserError
from dreamtune.models.adapters import TrainableParts
from dreamtune.models.components import Components
from dreamtune.models.loading import model_path
from dreamtune.models.quantize import is_quantized
from dreamtune.objectives.composite import JointSource, WeightedSum
from dreamtune.objectives.denoising import DenoisingObjective, NoiseSettings
from dreamtune.objectives.handover import Handover
from dreamtune.objectives.late_start import LateStart
from dreamtune.objectives.prior import PriorPreservation


def settings_from(cls, *sections, **explicit):
    """A settings dataclass filled by keyword from config sections (first section that has the
    field wins; ``explicit`` overrides): the config is the one place defaults live."""
    wanted = {f.name for f in dataclasses.fields(cls)}
    values = {}
    for section in sections:
        for f in dataclasses.fields(section):
            if f.name in wanted and f.name not in values:
                values[f.name] = getattr(section, f.name)
    values.update(explicit)
    return cls(**values)


@dataclass(frozen=True)
class RunPlan:
    """What a run's config asks for, decided once."""

    denoises: bool  # a denoising loss on the subject's photos (every method; reward runs with rl.regularize_weight)
    rewards: str  # "" | ddpo | draft
    uses_photos: bool  # the subject's photos are read (denoising, subject-fidelity reward, or given)
    distills: bool = False  # few-step distillation of the starting model (distill.steps): the teacher's samples only
    class_images: bool = False  # prior preservation's class images are made or read (denoising, subject_in_context)

    @classmethod
    def of(cls, config: Config) -> "RunPlan":
        rl = config.rl
        if config.distill.steps:
            return cls(False, "", False, True)
        denoises = not rl.algorithm or bool(rl.regularize_weight) or bool(rl.start_step and rl.handover)
        rewards_photos = rl.rewards.subject_fidelity or rl.rewards.subject_in_context or rl.rewards.print_in_context
        return cls(
            denoises,
            rl.algorithm,
            denoises or bool(rewards_photos or config.data.instance_dir),
            class_images=denoises or bool(rl.algorithm and rl.rewards.subject_in_context),
        )


# ---- where modules live -------------------------------------------------------------------
def place_frozen(
    components: Components, parts: TrainableParts, accelerator, dtype: torch.dtype, offload: bool = False
) -> tuple[int, int] | None:
    """Frozen modules in the weight dtype on the accelerator's device; trainable ones stay fp32
    (as do text encoders that gradients run through: ``parts.text_encoders_train_in_fp32``). With
    ``offload`` the frozen weights of the denoiser's blocks and of the VAE stay in host memory instead
    (training/offload.py; returns the bytes kept there). Weights are cast before they move."""
    from dreamtune.training.offload import offload_frozen

    keep_fp32 = list(components.text_encoders) if parts.text_encoders_train_in_fp32 else []
    modules = [components.vae, components.denoiser, *components.text_encoders]
    modules = [m for m in modules if not any(p.is_meta for p in m.parameters())]  # freed text encoders stay gone
    for module in modules:
        if any(module is kept for kept in keep_fp32):
            continue
        for parameter in module.parameters():
            if not parameter.requires_grad and not is_quantized(parameter):  # quantized weights keep their own format
                parameter.data = parameter.data.to(dtype)
    moved = offload_frozen(components, accelerator.device) if offload else None
    for module in modules:
        module.to(accelerator.device)
    return moved


def wrap_trainable(components: Components, accelerator, shard: bool = False) -> Components:
    """Data-parallel wrappers for the top-level modules that hold trainable parameters (or, with ``shard``,
    FSDP2 over them: training/sharding.py); every objective computes through the components this returns."""
    from dreamtune.training import sharding

    def wrap(module):
        if not any(p.requires_grad for p in module.parameters()):
            return module
        return sharding.shard(module) if shard else accelerator.prepare(module)

    return dataclasses.replace(
        components, denoiser=wrap(components.denoiser), text_encoders=[wrap(e) for e in components.text_encoders]
    )


# ---- data ---------------------------------------------------------------------------------
def latent_encoder(components: Components, config: Config, cache_dir: Path):
    cache = TensorCache(cache_dir / "latents")
    vae_id = model_identity(components.source, "vae")
    dtype = str(next(components.vae.parameters()).dtype)

    def encode(pixels: torch.Tensor, sample_key: str) -> torch.Tensor:
        key = key_of(sample_key, vae_id, dtype, config.data.resolution, config.data.crop)
        compute = lambda: {"latents": components.family.encode_latents(components, pixels[None])[0].float()}
        with torch.no_grad():
            return cache.get_or_compute(key, compute)["latents"]

    return encode if config.data.cache_latents else None


def photo_batches(config: Config, instance_dir: Path, class_dir: Path | None, accelerator, encoder) -> DatasetBatches:
    d = config.data
    plan = augment.AugmentPlan(d.flip_p, d.rotate_degrees, d.rotate_p, d.color_jitter, d.color_jitter_p)
    classes = ImageSet(class_dir, config.prior.class_prompt) if class_dir else None
    return DatasetBatches(
        ImageSet(instance_dir, d.instance_prompt),
        config.train.batch_size,
        config.train.seed,
        plan,
        d.repeats,
        d.caption_dropout,
        classes,
        accelerator.process_index,
        accelerator.num_processes,
        encoder,
        d.background_weight if d.subject_masks else None,
    )


@dataclass
class Ingredients:
    """What the builders draw on."""

    config: Config
    components: Components  # as loaded (sampling, validation)
    wrapped: Components  # data-parallel wrapped (every objective computes through these)
    parts: TrainableParts
    accelerator: object
    instance_dir: Path | None
    class_dir: Path | None
    cache_dir: Path
    photos: list
    on_round: object = None


# ---- the builders -------------------------------------------------------------------------
def build_denoising(ing: Ingredients):
    """Denoising on the subject's photos; prior preservation and the adversarial game wrap it."""
    config = ing.config
    text_cache = TensorCache(ing.cache_dir / "text") if config.data.cache_latents else None
    settings = settings_from(
        NoiseSettings,
        config.train,
        process_index=ing.accelerator.process_index,
        num_processes=ing.accelerator.num_processes,
        groups=2 if ing.class_dir else 1,
    )
    denoising = DenoisingObjective(ing.wrapped, ing.parts.modules, settings, ing.parts.rewrite_prompt, text_cache)
    objective = PriorPreservation(denoising, config.prior.loss_weight) if config.prior.enabled else denoising
    if config.adversarial.weight:
        objective = build_adversarial(config, ing.wrapped, objective, ing.components)
    source = photo_batches(
        config, ing.instance_dir, ing.class_dir, ing.accelerator, latent_encoder(ing.components, config, ing.cache_dir)
    )
    return objective, source


def build_adversarial(config: Config, components: Components, base, unwrapped: Components | None = None):
    """``components``: what the objectives compute through; ``unwrapped``: as loaded (the denoiser
    discriminator copies its denoiser from there)."""
    from dreamtune.objectives.adversarial import AUGMENT_POLICIES, AdversarialObjective, AdversarialSettings

    a = config.adversarial
    unknown = set(a.augment) - set(AUGMENT_POLICIES)
    if unknown:
        raise UserError(
            f"adversarial.augment has unknown policies {sorted(unknown)}; choose from {', '.join(AUGMENT_POLICIES)}."
        )
    if a.generator_every < 1:
        raise UserError(
            f"adversarial.generator_every is {a.generator_every}; it counts steps, so use 1 (every step) or more."
        )
    if a.discriminator == "denoiser":
        discriminator = denoiser_discriminator(unwrapped or components, a.hidden)
    else:
        discriminator = clip_discriminator(config, components, a)
    settings = settings_from(AdversarialSettings, a, config.train, augment=tuple(a.augment))
    return AdversarialObjective(base, components, discriminator, settings)


def clip_discriminator(config: Config, components: Components, a):
    from dreamtune.evaluation.features import DEFAULT_CLIP, load_clip
    from dreamtune.models.discriminator import FeatureDiscriminator

    own = model_path(config.model.pretrained) / "clip"
    source = a.features or (str(own) if (own / "config.json").is_file() else DEFAULT_CLIP)
    features = load_clip(source, name=source).to(components.device)
    return FeatureDiscriminator(features, tuple(a.layers) or None, a.hidden).to(components.device)


def denoiser_discriminator(components: Components, hidden: int):
    """LADD's discriminator: heads on a frozen copy of the denoiser as it is when the run starts
    (with a LoRA's starting weights, e.g. ``method.lora.init_from``)."""
    import copy

    from dreamtune.models.discriminator import DenoiserFeatureDiscriminator

    if not components.family.denoiser_has_unet_blocks:
        raise UserError(
            f"adversarial.discriminator=denoiser works on UNet models (SD 1.x / 2.x / SDXL); this {components.family.name} "
            "model has a transformer, so use adversarial.discriminator=clip."
        )
    frozen = copy.deepcopy(components.denoiser)
    frozen.__dict__.pop("forward", None)  # a forward patched on the original (precision.py) would call the original
    frozen.requires_grad_(False)
    frozen.eval()
    family = components.family
    predict = lambda noisy, t, conditioning, denoiser: family.predict(components, noisy, t, conditioning, denoiser)
    return DenoiserFeatureDiscriminator(frozen, predict, hidden).to(components.device)


def reward_features(config: Config):
    """The CLIP of rl.clip, else the model's own clip/ (the miniature), else None."""
    from dreamtune.evaluation.features import load_clip

    if config.rl.clip:
        return load_clip(config.rl.clip)
    own = model_path(config.model.pretrained) / "clip"
    return load_clip(own, name="mini-CLIP") if (own / "config.json").is_file() else None


def identity_features(config: Config):
    """subject_in_context's and print_in_context's identity network (rl.identity_model): the miniature's judge, or a DINO ViT folder;
    None: the reward's CLIP."""
    folder = config.rl.identity_model
    if not folder:
        return None
    if (Path(folder) / "judge.safetensors").is_file():
        from dreamtune.miniature.judge import JudgeFeatures, load_judge

        return JudgeFeatures(load_judge(Path(folder)))
    from dreamtune.evaluation.features import load_dino

    return load_dino(folder, name="identity")


def rl_prompts(config: Config) -> tuple[str, ...]:
    from dreamtune.sampling.generate import fill_prompt

    return tuple(fill_prompt(p, config.rl.subject, config.rl.class_noun) for p in config.rl.prompts)


def build_rewards_for(config: Config, photos: list, class_dir: Path | None = None):
    from dreamtune.rewards.registry import build_rewards
    from dreamtune.training.run_steps import photo_images

    rl = config.rl
    in_context = bool(rl.rewards.subject_in_context or rl.rewards.print_in_context)
    needs_clip = rl.rewards.clip_score or rl.rewards.subject_fidelity or in_context
    return build_rewards(
        rl,
        reward_features(config) if needs_clip else None,
        photos,
        photo_images(class_dir) if rl.rewards.subject_in_context else [],
        rl_prompts(config),
        identity_features(config) if in_context else None,
    )


def build_ddpo(ing: Ingredients):
    """DDPO: rollouts as the batch source (each process samples its own prompts and seeds)."""
    from dreamtune.objectives.ddpo import DDPOObjective, DDPOSettings
    from dreamtune.training.rollouts import RolloutSettings, RolloutSource

    config, rl = ing.config, ing.config.rl
    rewards = build_rewards_for(config, ing.photos, ing.class_dir)
    objective = DDPOObjective(ing.wrapped, ing.parts.modules, settings_from(DDPOSettings, rl, config.data))
    rollout = settings_from(
        RolloutSettings, rl, config.train, config.data, prompts=rl_prompts(config), stream=ing.accelerator.process_index
    )
    source = RolloutSource(ing.wrapped, rewards, rollout, autocast=ing.accelerator.autocast, on_round=ing.on_round)
    return objective, source, rewards


def build_draft(ing: Ingredients):
    """DRaFT-K: prompts as the batch source, samples inside the objective."""
    from dreamtune.objectives.draft import DraftObjective, DraftSettings
    from dreamtune.training.rollouts import PromptSource

    config = ing.config
    rewards = build_rewards_for(config, ing.photos, ing.class_dir)
    objective = DraftObjective(
        ing.wrapped,
        ing.parts.modules,
        rewards,
        settings_from(DraftSettings, config.rl, config.data, prompts=rl_prompts(config)),
    )
    source = PromptSource(rl_prompts(config), config.train.batch_size, config.train.seed, ing.accelerator.process_index)
    return objective, source, rewards


def build_distill(ing: Ingredients):
    """Few-step distillation: pool indices as the batch source, the teacher's samples inside the objective;
    LADD's game (adversarial.weight) wraps it as it wraps the denoising objective."""
    from dreamtune.objectives.distill import DistillSettings, FewStepDistillation, PoolSource

    config = ing.config
    prompts = tuple(p.replace("{instance}", config.data.instance_prompt) for p in config.distill.prompts)
    settings = settings_from(DistillSettings, config.distill, config.data, config.train, prompts=prompts)
    objective = FewStepDistillation(ing.wrapped, ing.parts.modules, settings)
    if config.adversarial.weight:
        objective = build_adversarial(config, ing.wrapped, objective, ing.components)
    source = PoolSource(settings.pool, config.train.batch_size, config.train.seed, ing.accelerator.process_index)
    return objective, source, None


OBJECTIVES = {"ddpo": build_ddpo, "draft": build_draft}  # rl.algorithm -> builder; "" trains by denoising alone


def build(ing: Ingredients, plan: RunPlan):
    """(objective, batch source, rewards or None) for the run ``plan`` describes."""
    if plan.distills:
        return build_distill(ing)
    denoising = build_denoising(ing) if plan.denoises else None
    if not plan.rewards:
        return (*denoising, None)
    objective, source, rewards = OBJECTIVES[plan.rewards](ing)
    start = ing.config.rl.start_step
    if start and denoising is None:
        raise UserError(
            f"rl.start_step={start} delays the reward within a run that personalizes first; set rl.regularize_weight "
            "(e.g. 1.0) so that the run trains on the subject's photos until then (or rl.handover=true: on the photos "
            "until then, the reward alone after), or set rl.start_step=0."
        )
    weight = ing.config.rl.regularize_weight
    if start:
        micro_start = start * ing.config.train.grad_accum
        objective = source = LateStart(objective, source, micro_start)
        if ing.config.rl.handover:  # the personalizing loss as configured until the start, the plain subject loss after
            personalize, photos = denoising
            plain = personalize.base if ing.config.adversarial.weight else personalize
            handover = Handover(personalize, photos, plain, weight, micro_start)  # weighs its own loss after the start
            denoising, weight = (handover, handover), 1.0
    if denoising is not None:
        objective = WeightedSum({"reward": (1.0, objective), "denoise": (weight, denoising[0])})
        source = JointSource({"reward": source, "denoise": denoising[1]})
    return objective, source, rewards
