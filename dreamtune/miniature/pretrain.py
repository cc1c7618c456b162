"""``dreamtune pretrain STAGE``: build the miniature model with the one training loop.

Stages (each resumable: rerunning continues from the newest checkpoint of its folder):
  clip  mini CLIP, contrastive on world renders + captions   -> <root>/clip/final
  clip_image  the image tower again, text tower frozen, with distractor objects added so that
        it tells unseen instances apart (CLIP-I, retrieval)        -> <root>/clip_image/final
  vae   mini VAE on world renders                            -> <root>/vae/final
  unet  UNet from scratch (or from ``unet_init``) on cached latents, frozen text tower, caption dropout (for
        CFG); ``world.outline_glyphs`` adds renders of more glyph outlines, captioned by context alone
        -> <root>/unet/final
  assemble  a diffusers StableDiffusionPipeline folder in fp16 (+ the CLIP for metrics)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch

from dreamtune import config as config_module
from dreamtune.atomic import atomic_dir
from dreamtune.config import TrainConfig
from dreamtune.errors import UserError
from dreamtune.miniature import architecture
from dreamtune.miniature.pool import Pool, PoolBatches, build_pool
from dreamtune.miniature.vocabulary import build_tokenizer
from dreamtune.training import checkpoint
from dreamtune.training.assembly import settings_from
from dreamtune.training.callbacks import Checkpointer, MetricLog
from dreamtune.training.loop import LoopSettings, run_loop
from dreamtune.training.optim import build_training_state


@dataclass(frozen=True)
class WorldConfig:
    pool_size: int = 20000
    seed: int = 0
    caption_dropout: float = 0.1
    outline_glyphs: int = 0  # unet stage: add this many wider-vocabulary glyphs (miniature/outlines.py) to the pool
    outline_renders: int = 2  # unet stage: renders of each such glyph in each world context


@dataclass(frozen=True)
class PretrainConfig:
    stage: Literal["clip", "clip_image", "vae", "unet"] = "clip"
    root: str = "runs/miniature"
    instance_weight: float = 1.0  # clip stages: weight of the image-image (instance) term
    edge_weight: float = 0.0  # vae stage: weight of the L1 between Sobel gradients (sharper edges)
    unet_heads: tuple[int, ...] = architecture.SHIPPED_HEADS  # unet stage: heads per down block; (2, 4, 6): head dim 32
    unet_init: str = ""  # unet stage: start from this UNet folder's weights (same shapes, e.g. other heads), not random
    world: WorldConfig = field(default_factory=WorldConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


def _accelerator(train: TrainConfig):
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)
    return Accelerator(mixed_precision=train.mixed_precision, cpu=not torch.cuda.is_available())


def _device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _train(objective, source, folder: Path, train: TrainConfig, show_progress: bool):
    accelerator = _accelerator(train)
    for module in objective.trainable_modules().values():
        module.to(accelerator.device)
    state = build_training_state(objective, train, accelerator)
    if checkpoint.list_checkpoints(folder):
        checkpoint.load(state, checkpoint.list_checkpoints(folder)[-1])
        print(f"resuming {folder.name} at step {state.step}")
    callbacks = [
        MetricLog(folder / "metrics.jsonl"),
        Checkpointer(folder, train.checkpoint_every, train.keep_checkpoints),
    ]
    settings = settings_from(LoopSettings, train, show_progress=show_progress)
    run_loop(objective, source, state, accelerator, settings, callbacks)
    return state


def _tokenizer(root: Path):
    return build_tokenizer(root / "tokenizer", architecture.MAX_TOKENS)


def stage_clip(cfg: PretrainConfig, pool: Pool, show_progress: bool) -> Path:
    from dreamtune.objectives.contrastive import ContrastiveObjective

    root = Path(cfg.root)
    tokenizer = _tokenizer(root)
    torch.manual_seed(cfg.train.seed)
    model = architecture.clip_model(len(tokenizer), tokenizer.eos_token_id, tokenizer.bos_token_id)
    source = PoolBatches(pool, cfg.train.batch_size, cfg.train.seed, pairs=True)
    objective = ContrastiveObjective(model, tokenizer, cfg.instance_weight)
    return _save_clip(
        _train(objective, source, root / "clip", cfg.train, show_progress), model, tokenizer, root / "clip"
    )


def stage_clip_image(cfg: PretrainConfig, pool: Pool, show_progress: bool) -> Path:
    from transformers import CLIPModel, CLIPTokenizer

    from dreamtune.miniature.distractors import ImageTowerBatches
    from dreamtune.models.loading import load_folder, quiet_libraries
    from dreamtune.objectives.contrastive import ContrastiveObjective

    root = Path(cfg.root)
    if not (root / "clip" / "final").is_dir():
        raise UserError(
            "the clip_image stage refines the clip stage's model; run dreamtune "
            f"pretrain configs/miniature/clip.yaml (root {cfg.root}) first."
        )
    quiet_libraries()
    model = load_folder(CLIPModel, root / "clip" / "final")
    tokenizer = CLIPTokenizer.from_pretrained(str(root / "clip" / "final"))
    objective = ContrastiveObjective(model, tokenizer, cfg.instance_weight, freeze_text=True)
    source = ImageTowerBatches(pool, cfg.train.batch_size, cfg.train.seed)
    state = _train(objective, source, root / "clip_image", cfg.train, show_progress)
    return _save_clip(state, model, tokenizer, root / "clip_image")


def _save_clip(state, model, tokenizer, folder: Path) -> Path:
    with atomic_dir(folder / "final", owned=True) as temp:
        _with_ema(state, lambda: model.save_pretrained(temp, safe_serialization=True))
        tokenizer.save_pretrained(temp)
    return folder / "final"


def stage_vae(cfg: PretrainConfig, pool: Pool, show_progress: bool) -> Path:
    from dreamtune.objectives.autoencoder import AutoencoderObjective

    root = Path(cfg.root)
    torch.manual_seed(cfg.train.seed)
    vae = architecture.vae()
    source = PoolBatches(pool, cfg.train.batch_size, cfg.train.seed)
    state = _train(
        AutoencoderObjective(vae, seed=cfg.train.seed, edge_weight=cfg.edge_weight),
        source,
        root / "vae",
        cfg.train,
        show_progress,
    )
    with torch.no_grad(), _ema_weights(state):
        sample = pool.tensor(range(0, len(pool.scenes), max(1, len(pool.scenes) // 512)))
        latents = torch.cat([vae.encode(chunk.to(vae.device)).latent_dist.mean for chunk in sample.split(64)])
        vae.register_to_config(scaling_factor=float(1.0 / latents.flatten().std()))  # unit-variance latents, as SD
        with atomic_dir(root / "vae" / "final", owned=True) as temp:
            vae.save_pretrained(temp, safe_serialization=True)
    return root / "vae" / "final"


def _ema_weights(state):
    import contextlib

    emas = list(state.emas.values())
    return emas[0].swapped_in() if emas else contextlib.nullcontext()


def _with_ema(state, save) -> None:
    with _ema_weights(state):
        save()


def _load_unet_weights(unet, folder: Path) -> None:
    """``folder``'s UNet weights into ``unet`` (a resume then loads its checkpoint over them)."""
    from safetensors.torch import load_file

    files = sorted(folder.glob("diffusion_pytorch_model*.safetensors"))
    if not files:
        raise UserError(
            f"unet_init {folder} holds no diffusion_pytorch_model.safetensors; give a diffusers UNet folder."
        )
    weights = {k: v for f in files for k, v in load_file(str(f)).items()}
    shapes = {k: v.shape for k, v in unet.state_dict().items()}
    if {k: v.shape for k, v in weights.items()} != shapes:
        raise UserError(
            f"unet_init {folder} is not the miniature UNet's architecture (its weights' names or shapes differ); "
            "give a UNet with the same channels and layers."
        )
    unet.load_state_dict(weights)


def _outline_pool(cfg: PretrainConfig, show_progress: bool) -> Pool:
    from dreamtune.miniature.outlines import OUTLINE_GLYPHS, build_outline_pool

    if cfg.world.outline_glyphs > len(OUTLINE_GLYPHS):
        raise UserError(
            f"world.outline_glyphs is {cfg.world.outline_glyphs} but miniature/outlines.py lists "
            f"{len(OUTLINE_GLYPHS)} glyphs; set world.outline_glyphs to at most {len(OUTLINE_GLYPHS)}."
        )
    glyphs = OUTLINE_GLYPHS[: cfg.world.outline_glyphs]
    return build_outline_pool(
        glyphs, cfg.world.outline_renders, cfg.world.seed, Path(cfg.root) / "cache", show_progress
    )


def stage_unet(cfg: PretrainConfig, pool: Pool, show_progress: bool) -> Path:
    from dreamtune.miniature.assemble import frozen_components
    from dreamtune.miniature.latent_source import LatentPoolBatches, encode_pool
    from dreamtune.objectives.denoising import DenoisingObjective, NoiseSettings

    root = Path(cfg.root)
    components = frozen_components(root)
    for frozen in [components.vae, *components.text_encoders]:  # the UNet goes where _train puts it
        frozen.to(_device())
    torch.manual_seed(cfg.train.seed)
    components.denoiser = architecture.unet(cfg.unet_heads)
    if cfg.unet_init:
        _load_unet_weights(components.denoiser, Path(cfg.unet_init))
    latents = encode_pool(components.vae, pool, root / "cache", show_progress)
    if cfg.world.outline_glyphs:
        outlines = _outline_pool(cfg, show_progress)
        latents = torch.cat([latents, encode_pool(components.vae, outlines, root / "cache", show_progress)])
        pool = pool + outlines
    source = LatentPoolBatches(latents, pool, cfg.train.batch_size, cfg.train.seed, cfg.world.caption_dropout)
    objective = DenoisingObjective(
        components,
        {"unet": components.denoiser},
        settings_from(NoiseSettings, cfg.train),
    )
    state = _train(objective, source, root / "unet", cfg.train, show_progress)
    with atomic_dir(root / "unet" / "final", owned=True) as temp:
        _with_ema(state, lambda: components.denoiser.save_pretrained(temp, safe_serialization=True))
    return root / "unet" / "final"


STAGES = {"clip": stage_clip, "clip_image": stage_clip_image, "vae": stage_vae, "unet": stage_unet}


def pretrain(recipe: str | Path | None, overrides: list[str], show_progress: bool = True) -> Path:
    cfg = config_module.load_as(PretrainConfig, recipe, overrides)
    if cfg.stage == "unet" and not (Path(cfg.root) / "vae" / "final").is_dir():
        raise UserError(
            f"the unet stage needs the vae and clip stages first; run dreamtune pretrain configs/miniature/vae.yaml (root {cfg.root})."
        )
    pool = build_pool(cfg.world.pool_size, cfg.world.seed, Path(cfg.root) / "cache", show_progress)
    return STAGES[cfg.stage](cfg, pool, show_progress)
