"""Typed, strict configuration: frozen dataclasses loaded from YAML plus dotted overrides.

An unknown or misspelled key is an error that names the key and the closest valid one
(ai-toolkit's ``.get``-based configs silently ignore typos; ours refuse them).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from dreamtune.errors import UserError
from dreamtune.yaml_config import apply_override, load_as, replace, to_dict  # noqa: F401  (the public API)


@dataclass(frozen=True)
class ModelConfig:
    pretrained: str = ""  # local diffusers folder, hub id, single-file .safetensors, or "miniature"
    config: str = ""  # a single-file checkpoint's configs + tokenizers: a diffusers folder or hub id
    revision: str | None = None  # hub revision (branch, tag or commit) of model.pretrained
    variant: str | None = None  # e.g. "fp16" weight files
    allow_pickle: bool = False  # load .bin/.ckpt weights (executes pickled code)
    from_scratch: bool = False  # random init from the pretrained folder's configs
    quantize: Literal["none", "int8", "fp8", "nf4"] = (
        "none"  # the frozen denoiser's weights, quantized while loading (torchao; LoRA / DoRA train on top)
    )
    quantize_text_encoders: Literal["none", "int8", "fp8", "nf4"] = "none"  # the same for frozen text encoders


@dataclass(frozen=True)
class DataConfig:
    instance_dir: str = ""  # raw photo folder or a `dreamtune prepare` output
    instance_prompt: str = ""  # used when images carry no caption
    resolution: int = 512  # training side in pixels, a multiple of 8 (the miniature: 64)
    crop: Literal["center", "random", "face"] = "center"  # center, random or face (needs the face extra)
    buckets: bool = False  # aspect-ratio buckets instead of square crops
    grayscale: bool = False  # train on greyscale copies of the photos
    background: str = "white"  # alpha is composited on this colour
    repeats: int = 1  # each photo appears this many times per pass over the data
    flip_p: float = 0.5  # probability of a horizontal flip (seeded per step)
    rotate_degrees: float = 0.0  # largest random rotation in degrees (turns the latent cache off)
    rotate_p: float = 0.0  # probability of a rotation
    color_jitter: float = 0.0  # max relative change of brightness/contrast/saturation
    color_jitter_p: float = 0.0  # probability of a colour jitter
    caption_dropout: float = 0.0  # replace caption by "" (classifier-free guidance)
    subject_masks: bool = False  # loss on the subject: each photo's NAME.mask.png beside it (white = subject) or alpha
    background_weight: float = 0.1  # with subject_masks: the loss weight outside the mask (0: backgrounds not learned)
    cache_latents: bool = (
        True  # encode the photos once and keep the latents on disk (off automatically with rotation / jitter)
    )
    cache_dir: str = ""  # default: <output_dir>/../.dreamtune-cache


@dataclass(frozen=True)
class LoraConfig:
    rank: int = 4  # LoRA rank: the capacity of the low-rank update (4-32 typical)
    alpha: float = 4.0  # LoRA scale = alpha / rank
    dropout: float = 0.0  # LoRA dropout
    target_modules: tuple[str, ...] = (
        "to_q",
        "to_k",
        "to_v",
        "to_out.0",
    )  # denoiser layers that get a LoRA (names as in diffusers)
    text_encoder: bool = False  # also train a LoRA on the text encoder(s) (UNet families)
    text_encoder_target_modules: tuple[str, ...] = (
        "q_proj",
        "k_proj",
        "v_proj",
        "out_proj",
    )  # text-encoder layers that get a LoRA
    dora: bool = False  # DoRA: weight-decomposed LoRA (a magnitude per output channel)
    init_from: str = ""  # start from a trained LoRA (a dreamtune model/ folder or .safetensors)


@dataclass(frozen=True)
class TextualInversionConfig:
    placeholder_token: str = "<sks>"  # the new token the embedding is learned for
    initializer_token: str = ""  # empty: initialise from the class noun's first token
    num_vectors: int = 1  # embedding vectors behind the placeholder


@dataclass(frozen=True)
class MethodConfig:
    kind: Literal["dreambooth", "lora", "textual_inversion", "scratch"] = (
        "lora"  # what trains: all weights, a LoRA, a new token, or a model from scratch
    )
    train_text_encoder: bool = False  # full DreamBooth only
    lora: LoraConfig = field(default_factory=LoraConfig)
    textual_inversion: TextualInversionConfig = field(default_factory=TextualInversionConfig)


@dataclass(frozen=True)
class PriorConfig:
    enabled: bool = False  # prior preservation: also train on class images so the class noun keeps its meaning
    class_prompt: str = ""  # prompt of the class images, e.g. 'a dog'
    class_dir: str = ""  # default: <output_dir>/class_images
    num_class_images: int = 100  # class images generated once (or taken from class_dir)
    loss_weight: float = 1.0  # weight of the class images' loss against the subject's
    sample_steps: int = 25  # sampler steps per generated class image
    sampler: Literal["default", "ddim", "euler", "euler_a", "dpm++", "pndm", "ddpm"] = (
        "default"  # of the class images; default: DDIM (flow models: Euler)
    )
    guidance_scale: float | None = (
        None  # none: the model family's (SD 7.5, SD3 7.0, FLUX.1 3.5 embedded, FLUX.2 klein 4.0)
    )
    shared_cache: bool = True  # keep generated class images in $DREAMTUNE_CACHE (~/.cache/dreamtune) for any later run


@dataclass(frozen=True)
class TrainConfig:
    output_dir: str = "runs/dreamtune"  # the run's folder: checkpoints, model/, metrics.jsonl, report.html
    steps: int = 400  # optimizer steps of the run
    batch_size: int = 1  # images per step (per process)
    grad_accum: int = 1  # batches accumulated per optimizer step
    lr: float = 1e-4  # learning rate (LoRA ~1e-4 to 1e-3, full DreamBooth ~5e-6)
    text_encoder_lr: float | None = None  # learning rate of trained text-encoder parts (None: train.lr)
    lr_scheduler: Literal["constant", "linear", "cosine", "constant_with_warmup"] = (
        "constant"  # constant, constant_with_warmup, linear or cosine
    )
    warmup_steps: int = 0  # steps of linear warm-up
    optimizer: Literal["adamw", "adamw8bit", "adafactor"] = (
        "adamw"  # adamw8bit: 8-bit state (bitsandbytes; torchao with bf16 weights); adafactor: factored second moments (torch)
    )
    trainable_dtype: Literal["fp32", "bf16"] = (
        "fp32"  # bf16: trained weights in bf16, updated with stochastic rounding (torchao): half the weights and gradients
    )
    fused_update: bool = False  # step each weight in the backward pass as its gradient is ready (clipping per weight)
    weight_decay: float = 1e-2  # AdamW weight decay
    adam_beta1: float = 0.9  # AdamW beta1
    adam_beta2: float = 0.999  # AdamW beta2
    max_grad_norm: float = 1.0  # gradient clipping norm (0: off)
    mixed_precision: Literal["no", "fp16", "bf16"] = (
        "no"  # bf16: fast on recent GPUs and CPUs with AMX / AVX512-BF16, emulated and slow on others (see train.memory)
    )
    shard: Literal["none", "fsdp"] = (
        "none"  # fsdp: a full fine-tune split across launched processes (torch FSDP2; training/sharding.py)
    )
    memory: Literal["auto", "manual"] = (
        # auto: before loading, the cheapest savings that fit the device (training/memory_auto.py), and fp32
        # for bf16 on a CPU without bf16 instructions where it fits (training/cpu_precision.py), said in one line
        "auto"
    )
    release_freed_memory: bool = (
        False  # CPU: freed buffers >= 4 MiB go back at once (glibc); less memory, slower; auto: sharded runs
    )
    offload: bool = False  # CUDA: frozen denoiser and VAE weights in host memory, copied to the GPU at each use (training/offload.py)
    gradient_checkpointing: bool | Literal["auto"] = (
        "auto"  # recompute activations; auto: only when a step would not fit
    )
    free_text_encoders: bool | Literal["auto"] = (
        "auto"  # encode prompts once, then free the text encoders (auto: over 1 GiB)
    )
    compile: bool = False  # torch.compile the denoiser: less Python overhead per step, minutes of compiling first (pays on long GPU runs)
    min_snr_gamma: float | None = None  # Min-SNR loss weighting gamma (DDPM models only; None: off)
    noise_offset: float = 0.0  # noise offset (Guttenberg): brighter / darker images become learnable
    timestep_sampling: Literal["default", "uniform", "logit_normal", "mode"] = (
        "default"  # flow models' t density (default: logit_normal, SD3); DDPM models: uniform
    )
    loss_weighting: Literal["none", "sigma_sqrt", "cosmap"] = (
        "none"  # flow models' per-sample loss weight (SD3 sec. 3.1)
    )
    guidance_embedding: float = 3.5  # guidance-distilled models (FLUX.1-dev): the guidance input while training
    ema_decay: float | None = None  # exponential moving average of the trained weights, exported instead (None: off)
    seed: int = 0  # noise, timesteps and augmentation: the same seed gives the same run
    checkpoint_every: int = 0  # 0: no intermediate checkpoints
    keep_checkpoints: int = 2  # newest checkpoints kept; older ones are rotated out
    validate_every: int = 0  # steps between validation contact sheets (0: none)
    validation_prompts: tuple[str, ...] = ()  # prompts rendered on each validation sheet
    validation_seeds: tuple[int, ...] = (0,)  # seeds of the validation images
    validation_steps: int = 25  # sampler steps of the validation images
    log_every: int = 10  # steps between tracker / console loss reports (metrics.jsonl has every step)
    log_with: Literal["none", "tensorboard", "wandb"] = "none"  # accelerate trackers, logs in <output_dir>/logs


@dataclass(frozen=True)
class MonitorConfig:
    """Overfitting / language-drift monitor (training/monitor.py): every ``every`` steps it renders
    ``prompts`` (contexts the photos never showed) and class-prompt images, and logs subject
    fidelity (CLIP-I), prompt fidelity (CLIP-T, identifier removed) and class drift (PRES)."""

    every: int = 0  # steps between CLIP-I / CLIP-T measurements (0: off)
    prompts: tuple[str, ...] = (
        "in the jungle",
        "in the snow",
        "on the beach",
        "with a city in the background",
    )  # contexts the subject is rendered in (after the instance prompt)
    seeds: tuple[int, ...] = (0, 1)  # seeds of the monitor's images
    class_images: int = 4  # class-prompt generations per point, for PRES
    identifier: str = "sks"  # removed for CLIP-T (textual inversion: its placeholder token)
    sample_steps: int = 25  # sampler steps of the monitor's images
    guidance_scale: float = 7.5  # guidance of the monitor's images
    clip: str = ""  # default: the base model's clip/ (the miniature), else openai/clip-vit-base-patch32
    select_best: Literal[
        "", "clip_i_with_clip_t_floor", "clip_i", "reward_with_clip_t_floor", "reward_with_clip_i_floor"
    ] = ""  # keep the best monitored step ("": the last)
    clip_t_floor: float = (
        0.95  # *_with_clip_t_floor: eligible when CLIP-T >= this x its start value ("" keeps the last step)
    )
    clip_i_floor: float = 0.95  # reward_with_clip_i_floor: eligible when CLIP-I >= this x its start value


@dataclass(frozen=True)
class AdversarialConfig:
    """Adversarial objective (objectives/adversarial.py): a discriminator on the model's x̂0."""

    weight: float = 0.0  # 0: off; generator loss weight added to the denoising loss
    warmup_steps: int = 0  # the weight ramps in linearly over these steps
    lr: float = 2.0e-4  # the discriminator's own learning rate
    r1_gamma: float = 1.0  # R1 gradient penalty on real images
    instance_noise: float = 0.1  # max shared pixel noise level on real and fake
    augment: tuple[str, ...] = ("translation", "color", "cutout")  # DiffAugment policies ([] = none)
    discriminator: Literal["clip", "denoiser"] = (
        "clip"  # frozen CLIP tower on pixels | frozen denoiser copy on re-noised latents (LADD; UNets)
    )
    features: str = ""  # clip: frozen CLIP image tower (default: the model's clip/, else OpenAI ViT-B/32)
    layers: tuple[int, ...] = ()  # clip: tapped layers (default: 4 spread over the tower)
    hidden: int = 128  # head width
    renoise_max: float = 0.5  # denoiser: x̂0 and real latents re-noised to t ~ U(0, renoise_max x T)
    generator_every: int = 1  # the generator's term on every k-th step; the discriminator learns on every step
    min_timestep: int = 0  # judge x̂0 only from training timesteps >= this (below, x̂0 is nearly the real image)


@dataclass(frozen=True)
class DistillConfig:
    """Few-step distillation (objectives/distill.py): the run's starting model (base + method.lora.init_from) is
    the teacher; the trained weights learn to sample in 1 to ``steps`` steps without guidance."""

    steps: int = 0  # 0: off; the student's most sampler steps (4: one LoRA for 1, 2 and 4 steps)
    teacher_steps: int = 24  # sampler steps of the teacher's samples (trailing DDIM / the flow Euler grid)
    teacher_guidance: float = 4.0  # the teacher's classifier-free guidance
    student_guidance: float = (
        1.0  # 1: the student samples without guidance (baked in); > 1: with its own (2 calls a step)
    )
    pool: int = 64  # teacher samples made at the start (prompts in turn, each with its own seed)
    prompts: tuple[str, ...] = ("{instance}",)  # teacher prompts; {instance} is data.instance_prompt
    loss_weight: float = 1.0  # weight of the latent MSE to the teacher's sample (adversarial.* adds LADD's game)
    trajectory_weight: float = 0.0  # weight of the MSE to the teacher's guided path from the student's state (see docs)


@dataclass(frozen=True)
class RewardWeights:
    """Weights of the rewards (dreamtune/rewards/) summed into the RL reward; 0 = unused."""

    print_quality: float = 0.0  # the older hand-made gamut hull (gameable by paler images; see print_proof)
    print_proof: float = 0.0  # soft proof through rl.print_profile, scored against the starting model's same-seed image
    jpeg_compressibility: float = 0.0  # DDPO's JPEG-size reward (smaller files score higher)
    jpeg_incompressibility: float = 0.0  # its opposite (larger files score higher)
    clip_score: float = 0.0  # CLIP image-prompt similarity
    subject_fidelity: float = 0.0  # CLIP-I to data.instance_dir's photos
    subject_in_context: float = 0.0  # the subject (vs prior's class images) and its scene (vs rl.prompts'), harmonic
    print_in_context: float = (
        0.0  # the simulated print shows the subject in its scene, with floors (print_in_context.py)
    )


@dataclass(frozen=True)
class RLConfig:
    """Reward fine-tuning (objectives/ddpo.py, objectives/draft.py); "" = ordinary training."""

    algorithm: Literal["", "ddpo", "draft"] = ""  # reward fine-tuning: ddpo or draft ('' = off)
    rewards: RewardWeights = field(default_factory=RewardWeights)
    prompts: tuple[str, ...] = ()  # training prompts; {subject} and {class} are filled in
    subject: str = "sks"  # the identifier in reward prompts ({subject})
    class_noun: str = ""  # the class noun in reward prompts ({class})
    sample_steps: int = 20  # sampler steps of the rollouts
    guidance_scale: float = 5.0  # guidance of the rollouts
    eta: float = 1.0  # DDPO: DDIM noise (> 0: each step is a Gaussian with a log-probability)
    samples_per_round: int = 16  # DDPO: trajectories sampled per round
    images_per_prompt: int = 4  # DDPO: samples of one prompt (advantages are normalised per prompt)
    inner_epochs: int = 1  # DDPO: passes over a round's transitions
    timestep_fraction: float = 1.0  # DDPO: share of each trajectory's (candidate) steps trained on
    last_steps: int = 0  # DDPO: train only the last K sampler steps (0: all); late steps set colour, tone, sharpness
    branch: bool = False  # DDPO: a prompt's images share all steps before the last K and branch for them
    clip_range: float = 1.0e-4  # DDPO: PPO clip of the importance ratio
    adv_clip: float = 5.0  # DDPO: advantages clipped to +-this
    kl_weight: float = (
        0.0  # + weight x KL(policy step || the run's starting weights' step) (DDPO exact; DRaFT: DPOK's bound)
    )
    truncation_steps: int = 1  # DRaFT-K: sampler steps the gradient flows through
    regularize_weight: float = 0.0  # + weight x denoising loss on data.instance_dir (and prior), keeps the subject
    start_step: int = 0  # with regularize_weight: the reward joins at this step, anchored to the weights reached there
    lr: float | None = None  # with start_step: the model's learning rate from that step on (default: train.lr)
    handover: bool = False  # with start_step: go on as a new reward run (no adversary, fresh optimizer)
    identity_weight: float = 0.9  # subject_in_context, print_in_context: identity's weight in the harmonic mean
    identity_model: str = ""  # their identity network: '' = rl.clip; a DINO ViT or a judge/ folder
    clip: str = (
        ""  # CLIP for clip_score / subject_fidelity / subject_in_context / print_in_context (default: the model's)
    )
    print_width_cm: float = 15.0  # print_in_context: the print's width (with the distance: what the eye resolves)
    viewing_distance_cm: float = 40.0  # print_in_context: from how far the print is seen
    floor_samples: int = 4  # print_in_context: images per prompt from the starting weights that set its floors
    print_profile: str = ""  # print_proof, print_in_context: your shop's CMYK .icc (default: Ghostscript's)
    print_intent: Literal["perceptual", "relative", "saturation", "absolute"] = (
        "perceptual"  # rendering intent of the print_proof soft proof: perceptual, relative, saturation or absolute
    )
    ink_limit: float = 300.0  # print_proof, print_in_context: total ink coverage in % above which pixels lose


@dataclass(frozen=True)
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    prior: PriorConfig = field(default_factory=PriorConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    monitor: MonitorConfig = field(default_factory=MonitorConfig)
    rl: RLConfig = field(default_factory=RLConfig)
    adversarial: AdversarialConfig = field(default_factory=AdversarialConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)

    def __post_init__(self):
        from dreamtune import config_checks
        from dreamtune.methods import method_of

        config_checks.check_quantization(self)
        config_checks.check_lean_updates(self)
        config_checks.check_sharding(self)
        config_checks.check_offload(self)
        config_checks.check_distill(self)
        config_checks.check_rewards(self)
        if self.prior.enabled and not self.prior.class_prompt:
            raise UserError(
                "prior.enabled is true but prior.class_prompt is empty; set it, e.g. prior.class_prompt='a photo of a dog'."
            )
        if self.rl.branch and not self.rl.last_steps:
            raise UserError(
                "rl.branch needs rl.last_steps > 0 (the steps the images branch for); set e.g. rl.last_steps=5."
            )
        method_of(self.method).check(self)  # what the method itself cannot combine
        if self.rl.algorithm:
            weights = dataclasses.asdict(self.rl.rewards)
            if not any(weights.values()):
                raise UserError(
                    f"rl.algorithm={self.rl.algorithm} needs a reward; set one of "
                    f"rl.rewards.{{{', '.join(weights)}}}, e.g. rl.rewards.print_quality=1."
                )
            if not self.rl.prompts:
                raise UserError(
                    "rl.prompts is empty; list the prompts to optimize, e.g. rl.prompts='[a dog on the beach]'."
                )
            if self.rl.algorithm == "draft" and (
                self.rl.rewards.jpeg_compressibility or self.rl.rewards.jpeg_incompressibility
            ):
                raise UserError(
                    "JPEG rewards are not differentiable; use rl.algorithm=ddpo with them, or drop them for draft."
                )
            if self.rl.algorithm == "ddpo" and self.rl.eta <= 0:
                raise UserError(
                    "rl.eta must be > 0 for DDPO: with eta 0 the sampler is deterministic and has no log-probability."
                )
            if self.rl.algorithm == "ddpo" and self.rl.samples_per_round % self.rl.images_per_prompt:
                raise UserError("rl.samples_per_round must be a multiple of rl.images_per_prompt.")
        if self.rl.handover and not (self.rl.algorithm and self.rl.start_step):
            raise UserError(
                "rl.handover hands a run's personalization over to a late reward, and this run has none; set rl.algorithm "
                "and rl.start_step (the step where the reward takes over), or drop rl.handover."
            )
        if self.rl.lr is not None and not (self.rl.algorithm and self.rl.start_step):
            raise UserError(
                f"rl.lr={self.rl.lr} is the learning rate from rl.start_step on, and this run has no late reward; "
                "set rl.algorithm and rl.start_step, or set train.lr instead."
            )
        if self.monitor.select_best.startswith("reward") and not self.rl.algorithm:
            raise UserError(
                "monitor.select_best=reward_with_clip_t_floor needs a reward; set rl.algorithm and rl.rewards."
            )
        if self.monitor.select_best and not self.monitor.every:
            raise UserError(
                f"monitor.select_best={self.monitor.select_best} needs the monitor; set monitor.every, e.g. monitor.every=50."
            )
        for name in ("flip_p", "rotate_p", "color_jitter_p", "caption_dropout"):
            value = getattr(self.data, name)
            if not 0.0 <= value <= 1.0:
                raise UserError(f"data.{name} is {value}; a probability must lie in [0, 1].")
        if not 0.0 <= self.data.background_weight <= 1.0:
            raise UserError(
                f"data.background_weight is {self.data.background_weight}; it must lie in [0, 1] "
                "(0: the photos' backgrounds are not learned, 1: as much as the subject)."
            )
        config_checks.check_ranges(self)
        if self.train.steps < 1 or self.train.batch_size < 1 or self.train.grad_accum < 1:
            raise UserError("train.steps, train.batch_size and train.grad_accum must each be at least 1.")
        if self.train.log_every < 1:
            raise UserError(
                f"train.log_every is {self.train.log_every}; it must be at least 1 (steps between loss reports)."
            )
        if self.data.resolution % 8:
            raise UserError(
                f"data.resolution is {self.data.resolution}; it must be a multiple of 8 (the VAE downsamples by 8)."
            )


def load(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Load a YAML recipe (optional) and dotted overrides into a validated :class:`Config`."""
    return load_as(Config, path, overrides)
