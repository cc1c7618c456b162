"""Checks across config sections that would crowd config.py: each refusal one sentence naming the
setting and the fix (called from ``Config.__post_init__``)."""

from __future__ import annotations

from dreamtune.errors import UserError
from dreamtune.methods import method_of


def check_quantization(config) -> None:
    """Quantization applies to frozen weights only, and fp8 weights compute in bf16."""
    m = config.model
    method = method_of(config.method)
    full = method.trains_denoiser_weights or m.from_scratch
    if m.quantize != "none" and full:
        raise UserError(
            f"model.quantize={m.quantize} quantizes frozen weights, but method {config.method.kind} trains the denoiser's "
            "weights themselves; set model.quantize: none, or train a LoRA (method.kind: lora) on the quantized base."
        )
    if m.quantize_text_encoders != "none" and (method.learns_token or (full and config.method.train_text_encoder)):
        raise UserError(
            f"model.quantize_text_encoders={m.quantize_text_encoders} cannot be combined with {config.method.kind}, which "
            "trains inside the text encoders; set model.quantize_text_encoders: none."
        )
    if "fp8" in (m.quantize, m.quantize_text_encoders) and config.train.mixed_precision != "bf16":
        raise UserError(
            f"fp8 weights compute in bf16, and train.mixed_precision is {config.train.mixed_precision}; "
            "set train.mixed_precision: bf16, or quantize to int8 instead."
        )


def check_lean_updates(config) -> None:
    """bf16 trained weights need stochastic rounding (torchao's AdamW family); the fused update steps
    each weight from its own gradient, which rules out accumulation, loss scaling and multi-pass objectives."""
    t = config.train
    if t.trainable_dtype == "bf16":
        if t.optimizer == "adafactor":
            raise UserError(
                "train.trainable_dtype=bf16 needs stochastic rounding, which torch's Adafactor does not do (small updates "
                "would round away); set train.optimizer: adamw8bit (8-bit state, torchao) or adamw."
            )
        if t.mixed_precision != "bf16":
            raise UserError(
                f"train.trainable_dtype=bf16 computes in bf16, and train.mixed_precision is {t.mixed_precision}; "
                "set train.mixed_precision: bf16, or train.trainable_dtype: fp32."
            )
    if not t.fused_update:
        return
    if t.grad_accum > 1:
        raise UserError(
            f"train.fused_update steps each weight as soon as its gradient is ready, so it cannot accumulate "
            f"{t.grad_accum} micro-batches; set train.grad_accum: 1 (raise train.batch_size instead) or train.fused_update: false."
        )
    if t.mixed_precision == "fp16":
        raise UserError(
            "train.fused_update cannot unscale fp16 gradients one weight at a time; set train.mixed_precision: bf16."
        )
    if config.rl.algorithm or config.adversarial.weight:
        which = f"rl.algorithm={config.rl.algorithm}" if config.rl.algorithm else "adversarial.weight"
        raise UserError(
            f"train.fused_update supports the denoising methods, and {which} runs several backward passes per step; "
            "set train.fused_update: false."
        )


def check_offload(config) -> None:
    """Offload keeps frozen weights in host memory and relies on recomputing each block in the backward."""
    t = config.train
    if not t.offload:
        return
    if method_of(config.method).trains_denoiser_weights or config.model.from_scratch:
        raise UserError(
            f"train.offload keeps frozen weights in host memory, and method {config.method.kind} trains the denoiser's "
            "weights themselves; set train.offload: false (a full fine-tune saves memory with train.fused_update, "
            "train.trainable_dtype: bf16 or train.shard: fsdp)."
        )
    if t.gradient_checkpointing is False:
        raise UserError(
            "train.offload copies each frozen weight to the GPU again when the backward recomputes its block, which "
            "needs gradient checkpointing; set train.gradient_checkpointing: auto (or true)."
        )


def check_sharding(config) -> None:
    """FSDP shards what a full fine-tune trains; what would need the whole model on one process is refused."""
    if config.train.shard != "fsdp":
        return
    t = config.train
    clashes = [
        (
            not method_of(config.method).trains_denoiser_weights,
            f"method.kind={config.method.kind} (a LoRA or an embedding is small enough for plain data parallelism)",
            "method.kind: dreambooth",
        ),
        (
            config.method.train_text_encoder,
            "method.train_text_encoder (only the denoiser is sharded)",
            "method.train_text_encoder: false",
        ),
        (
            bool(config.rl.algorithm or config.adversarial.weight),
            "reward or adversarial training",
            "rl.algorithm: '' and adversarial.weight: 0",
        ),
        (t.fused_update, "train.fused_update", "train.fused_update: false"),
        (bool(t.ema_decay), "train.ema_decay", "train.ema_decay: null"),
        (
            bool(t.validate_every or config.monitor.every),
            "validation sheets or the monitor (they sample on one process)",
            "train.validate_every: 0 and monitor.every: 0",
        ),
    ]
    for clash, what, fix in clashes:
        if clash:
            raise UserError(
                f"train.shard=fsdp splits a full fine-tune of the denoiser across processes and cannot run with {what}; "
                f"set {fix}, or train.shard: none."
            )


# (section.key, lowest allowed, lowest is allowed itself, highest or None): values a typo or a sign
# slip produces, which would otherwise train without a word (a negative learning rate ascends)
RANGES = (
    ("train.lr", 0.0, False, None),
    ("train.text_encoder_lr", 0.0, False, None),
    ("train.warmup_steps", 0, True, None),
    ("train.weight_decay", 0.0, True, None),
    ("train.max_grad_norm", 0.0, True, None),
    ("train.noise_offset", 0.0, True, None),
    ("train.min_snr_gamma", 0.0, False, None),
    ("train.ema_decay", 0.0, False, 1.0),
    ("train.adam_beta1", 0.0, True, 1.0),
    ("train.adam_beta2", 0.0, True, 1.0),
    ("train.checkpoint_every", 0, True, None),
    ("train.keep_checkpoints", 0, True, None),
    ("train.validate_every", 0, True, None),
    ("train.validation_steps", 1, True, None),
    ("data.resolution", 8, True, None),
    ("data.repeats", 1, True, None),
    ("data.rotate_degrees", 0.0, True, 180.0),
    ("data.color_jitter", 0.0, True, 1.0),
    ("method.lora.rank", 1, True, None),
    ("method.lora.alpha", 0.0, False, None),
    ("method.lora.dropout", 0.0, True, 1.0),
    ("method.textual_inversion.num_vectors", 1, True, None),
    ("prior.num_class_images", 1, True, None),
    ("prior.loss_weight", 0.0, True, None),
    ("prior.sample_steps", 1, True, None),
    ("monitor.every", 0, True, None),
    ("rl.sample_steps", 1, True, None),
    ("rl.samples_per_round", 1, True, None),
    ("rl.images_per_prompt", 1, True, None),
    ("adversarial.weight", 0.0, True, None),
    ("distill.loss_weight", 0.0, True, None),
    ("distill.trajectory_weight", 0.0, True, None),
    ("adversarial.lr", 0.0, False, None),
    ("rl.lr", 0.0, False, None),
    ("rl.identity_weight", 0.0, False, 1.0),
    ("rl.print_width_cm", 0.0, False, None),
    ("rl.viewing_distance_cm", 0.0, False, None),
    ("rl.floor_samples", 1, True, None),
    ("rl.kl_weight", 0.0, True, None),
)


def check_ranges(config) -> None:
    """One sentence for the first value outside its range (see RANGES)."""
    for dotted, low, inclusive, high in RANGES:
        section, *path = dotted.split(".")
        value = getattr(config, section)
        for part in path:
            value = getattr(value, part)
        if value is None:
            continue
        below = value < low or (value == low and not inclusive)
        if below or (high is not None and value > high):
            bound = f"at least {low}" if inclusive else f"above {low}"
            rule = f"{bound}{f' and at most {high}' if high is not None else ''}"
            raise UserError(f"{dotted} is {value}; it must be {rule}.")


def check_rewards(config) -> None:
    """Rewards that need more of the run than their weight, in one sentence each."""
    if config.rl.rewards.subject_in_context and not config.prior.enabled:
        raise UserError(
            "rl.rewards.subject_in_context tells the subject from its class by prior preservation's class images; "
            "set prior.enabled=true and prior.class_prompt (e.g. 'a dog'; prior.class_dir for a folder of your own)."
        )
    for name in ("subject_in_context", "print_in_context"):
        if getattr(config.rl.rewards, name) and len(set(config.rl.prompts)) < 2:
            raise UserError(
                f"rl.rewards.{name} scores the prompted scene against the run's other scenes; list at least "
                "two rl.prompts in different scenes."
            )


def check_distill(config) -> None:
    """Few-step distillation: what it can combine with, in one sentence each."""
    d = config.distill
    if not d.steps:
        return
    if d.steps < 0 or d.teacher_steps < 1 or d.pool < 1:
        raise UserError(
            f"distill.steps={d.steps}, distill.teacher_steps={d.teacher_steps} and distill.pool={d.pool} must be "
            "positive (e.g. 4, 24 and 64)."
        )
    if d.steps >= d.teacher_steps:
        raise UserError(
            f"distill.steps={d.steps} is not fewer than distill.teacher_steps={d.teacher_steps}; a few-step student "
            "learns from a teacher that takes more steps (e.g. distill.steps=4, distill.teacher_steps=24)."
        )
    if config.rl.algorithm:
        raise UserError(
            f"distill.steps and rl.algorithm={config.rl.algorithm} both replace the training loss; run the reward "
            "first and distill its result in a second run (method.lora.init_from=<its model/>)."
        )
    if config.prior.enabled:
        raise UserError(
            "prior.enabled has no role in a distillation run (the teacher's samples are its only data); set "
            "prior.enabled=false."
        )
    if d.trajectory_weight and d.teacher_steps % d.steps:
        raise UserError(
            f"distill.trajectory_weight needs distill.teacher_steps ({d.teacher_steps}) to be a multiple of "
            f"distill.steps ({d.steps}), so the teacher's steps fall between the student's (e.g. 24 and 4)."
        )
    if not d.prompts or not all(p.strip() for p in d.prompts):
        raise UserError("distill.prompts is empty; list the teacher's prompts, e.g. distill.prompts='[{instance}]'.")
