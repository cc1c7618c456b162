"""What a method trains, and how its result is exported in diffusers' own formats.

* full (DreamBooth / from scratch): the denoiser (and optionally text encoders) -> pipeline folder
* lora (peft; optional text-encoder LoRA, DoRA) -> ``pytorch_lora_weights.safetensors`` (diffusers /
  PEFT, with adapter metadata) and, for SD UNets, ``<title>.safetensors`` in kohya format (ComfyUI, A1111, Forge)
* textual inversion (new token rows only) -> ``learned_embeds.safetensors``
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from dreamtune.config import Config
from dreamtune.errors import UserError
from dreamtune.methods import method_of
from dreamtune.models.components import Components
from dreamtune.models.loading import freeze


@dataclass(frozen=True)
class ExportInfo:
    """What an exported file says about itself (file names, headers, model card)."""

    title: str = "dreamtune"  # e.g. the run folder's name
    base_model: str = ""
    steps: int = 0
    usage_hint: str = ""  # how to sample it, when it needs care (a few-step model's steps, guidance, scheduler)


class TrainableParts:
    """Named trainable modules of a method (named as the pipeline names them: unet / transformer /
    text_encoder(_2)); exports the trained result and answers what the method changes about
    prompts and precision."""

    kind = "full"  # dreamtune.json's "kind"
    learns_token = False  # textual inversion: the export records its placeholder
    writes_kohya_file = False  # LoRA: a second, kohya-keyed file beside the diffusers one

    def __init__(self, components: Components, modules: dict[str, nn.Module]):
        self.components = components
        self.modules = modules

    def rewrite_prompt(self, prompt: str) -> str:
        """The prompt the text encoder sees (textual inversion expands its placeholder)."""
        return prompt

    def identifier(self, configured: str) -> str:
        """The word that names the subject in prompts (removed for CLIP-T)."""
        return configured

    @property
    def text_encoders_train_in_fp32(self) -> bool:
        """Gradients run through the text encoders to trained rows: keep them fp32 (CPU autocast
        does not cover their layer norms)."""
        return False

    def module_dict(self) -> nn.ModuleDict:
        return nn.ModuleDict(self.modules)

    def export(self, out_dir: Path, info: ExportInfo = ExportInfo()) -> Path:
        """Full fine-tune: a complete diffusers pipeline folder; untrained parts byte-identical to the base."""
        from dreamtune.models.full_export import export_full

        return export_full(self.components, self.modules, out_dir, self.components.extra.get("variant"))


class LoraParts(TrainableParts):
    kind = "lora"
    writes_kohya_file = True

    def export(self, out_dir: Path, info: ExportInfo = ExportInfo()) -> Path:
        # PEFT key names as they are: diffusers loads them directly, and converting them to its
        # legacy names renames attention keys but not conv keys, a mix its loader misreads
        out_dir.mkdir(parents=True, exist_ok=True)
        self.components.family.save_lora(out_dir, self.modules)
        if self.components.family.kohya_export:
            self.export_kohya(out_dir / f"{kohya_file_stem(info.title)}.safetensors", info)
        return out_dir / "pytorch_lora_weights.safetensors"

    def export_kohya(self, path: Path, info: ExportInfo) -> Path:
        """The kohya / LyCORIS-format file (fp16) that ComfyUI and A1111 / Forge load."""
        from safetensors.torch import save_file

        from dreamtune.models.kohya import kohya_metadata, kohya_state_dict

        settings = self.modules["unet"].peft_config["default"]
        c = self.components
        metadata = kohya_metadata(
            c.family,
            c.prediction_type,
            settings.r,
            settings.lora_alpha,
            settings.use_dora,
            info.title,
            info.base_model,
            info.steps,
            len(self.modules) > 1,
            info.usage_hint,
        )
        save_file(kohya_state_dict(self.modules, c.family), str(path), metadata=metadata)
        return path


class NewTokenEmbedding(nn.Module):
    """A token embedding whose first rows are frozen and whose last ``n`` rows train."""

    def __init__(self, base: nn.Embedding, initial_rows: torch.Tensor):
        super().__init__()
        self.register_buffer("base_weight", base.weight.detach().clone(), persistent=False)
        self.new_rows = nn.Parameter(initial_rows.detach().clone().float())

    @property
    def weight(self) -> torch.Tensor:
        return torch.cat([self.base_weight, self.new_rows.to(self.base_weight.dtype)], dim=0)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return nn.functional.embedding(input_ids, self.weight)


class TextualInversionParts(TrainableParts):
    kind = "textual_inversion"
    learns_token = True

    def __init__(self, components: Components, modules: dict[str, nn.Module], tokens: list[str]):
        super().__init__(components, modules)
        self.tokens = tokens

    def rewrite_prompt(self, prompt: str) -> str:
        return expand_placeholder(prompt, self.tokens[0], len(self.tokens))

    def identifier(self, configured: str) -> str:
        return self.tokens[0]

    @property
    def text_encoders_train_in_fp32(self) -> bool:
        return True

    def export(self, out_dir: Path, info: ExportInfo = ExportInfo()) -> Path:
        from safetensors.torch import save_file

        out_dir.mkdir(parents=True, exist_ok=True)
        rows = [m.new_rows.detach().float().cpu().contiguous() for m in self.modules.values()]
        # one encoder: {token: rows} (diffusers / A1111); SDXL's two: {"clip_l", "clip_g"} (its loaders' keys)
        tensors = {"clip_l": rows[0], "clip_g": rows[1]} if len(rows) == 2 else {self.tokens[0]: rows[0]}
        path = out_dir / "learned_embeds.safetensors"
        save_file(tensors, str(path))
        return path


def kohya_file_stem(title: str) -> str:
    """A file name ComfyUI / A1111 list the LoRA under: the title, safe characters only."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", title).strip("._") or "dreamtune"
    return stem if stem != "pytorch_lora_weights" else f"{stem}_kohya"


def placeholder_tokens(token: str, count: int) -> list[str]:
    """diffusers' multi-vector convention: ``tok``, ``tok_1``, ``tok_2`` ..."""
    return [token] + [f"{token}_{i}" for i in range(1, count)]


def expand_placeholder(prompt: str, token: str, count: int) -> str:
    return prompt.replace(token, " ".join(placeholder_tokens(token, count))) if count > 1 else prompt


def textual_inversion_parts(components: Components, config: Config) -> TextualInversionParts:
    settings = config.method.textual_inversion
    tokens = placeholder_tokens(settings.placeholder_token, settings.num_vectors)
    initializer = settings.initializer_token or (config.prior.class_prompt.split() or ["a"])[-1]
    modules = {}
    for index, (tokenizer, encoder) in enumerate(zip(components.tokenizers, components.text_encoders)):
        if tokenizer.add_tokens(tokens) != len(tokens):
            raise UserError(
                f"placeholder token {settings.placeholder_token} already exists in the tokenizer; pick a new one, e.g. '<my-subject>'."
            )
        init_ids = tokenizer.encode(initializer, add_special_tokens=False)
        if not init_ids:
            raise UserError(
                f"initializer token '{initializer}' tokenizes to nothing; set "
                "method.textual_inversion.initializer_token to a word like 'dog'."
            )
        base = encoder.get_input_embeddings()
        rows = base.weight[init_ids[0]].detach().unsqueeze(0).repeat(len(tokens), 1)
        replacement = NewTokenEmbedding(base, rows)
        encoder.set_input_embeddings(replacement)
        encoder.config.vocab_size = len(tokenizer)
        modules[components.family.text_encoder_names[index]] = replacement
    return TextualInversionParts(components, modules, tokens)


def lora_parts(components: Components, config: Config) -> LoraParts:
    from peft import LoraConfig as PeftLoraConfig

    settings = config.method.lora

    def peft_config(targets):
        return PeftLoraConfig(
            r=settings.rank,
            lora_alpha=settings.alpha,
            lora_dropout=settings.dropout,
            init_lora_weights="gaussian",
            target_modules=list(targets),
            use_dora=settings.dora,
        )

    family = components.family
    try:
        components.denoiser.add_adapter(peft_config(settings.target_modules))
    except ValueError as exc:
        raise UserError(
            f"method.lora.target_modules {list(settings.target_modules)} match no {family.denoiser_name} layer ({exc}); "
            "use names like to_q, to_k, to_v, to_out.0."
        ) from None
    modules = {family.denoiser_name: components.denoiser}
    if settings.text_encoder:
        for name, encoder in zip(family.text_encoder_names, components.text_encoders):
            encoder.add_adapter(peft_config(settings.text_encoder_target_modules))
            modules[name] = encoder
    if settings.init_from:
        _load_lora(modules, Path(settings.init_from))
    return LoraParts(components, modules)


def _load_lora(modules: dict[str, nn.Module], path: Path) -> None:
    """Start from a trained LoRA (this exporter's PEFT key names, prefixed unet. / text_encoder.)."""
    from peft.utils import set_peft_model_state_dict
    from safetensors.torch import load_file

    file = path / "pytorch_lora_weights.safetensors" if path.is_dir() else path
    if not file.is_file():
        raise UserError(
            f"method.lora.init_from: {path} holds no pytorch_lora_weights.safetensors; pass a dreamtune LoRA model/ folder."
        )
    tensors = load_file(str(file))
    for name, module in modules.items():
        prefix = f"{name}."
        own = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
        if not own:
            continue
        result = set_peft_model_state_dict(module, own)
        unexpected = getattr(result, "unexpected_keys", None) or []
        if unexpected:
            raise UserError(
                f"method.lora.init_from: {file} does not match this LoRA's layers ({len(unexpected)} unknown keys, "
                f"e.g. {unexpected[0]}); use the same rank and target_modules it was trained with."
            )


def make_trainable(components: Components, config: Config) -> TrainableParts:
    """Freeze everything, then unfreeze / add exactly what ``config.method`` trains (its method object decides)."""
    method = method_of(config.method)
    components.family.check_method(method, config.method)
    freeze(components.denoiser, components.vae, *components.text_encoders)
    parts = method.add_trainable(components, config)
    trained = torch.bfloat16 if config.train.trainable_dtype == "bf16" else torch.float32
    for module in parts.modules.values():
        module.train()
        for parameter in module.parameters():
            if parameter.requires_grad:  # fp32 under mixed precision, or bf16 with stochastic rounding
                parameter.data = parameter.data.to(trained)
    return parts


def full_parts(components: Components, config: Config) -> TrainableParts:
    """A full fine-tune: the denoiser's weights, and the text encoders' with method.train_text_encoder."""
    components.denoiser.requires_grad_(True)
    modules = {components.family.denoiser_name: components.denoiser}
    if config.method.train_text_encoder:
        for name, encoder in zip(components.family.text_encoder_names, components.text_encoders):
            encoder.requires_grad_(True)
            modules[name] = encoder
    return TrainableParts(components, modules)


def text_encoders_train(method) -> bool:
    """Whether ``method`` (config.method) trains inside the text encoders (their weights, a LoRA or a new token)."""
    return method_of(method).trains_inside_text_encoders(method)
