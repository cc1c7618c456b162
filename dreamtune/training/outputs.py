"""What a run leaves behind: ``model/`` (weights, dreamtune.json, model card) and ``config.yaml``."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from dreamtune import config as config_module
from dreamtune.atomic import atomic_dir, atomic_file
from dreamtune.config import Config
from dreamtune.models.adapters import ExportInfo, TrainableParts
from dreamtune.models.model_card import write_model_card
from dreamtune.objectives.distill import few_step_sampling, usage_hint
from dreamtune.training.checkpoint import TrainingState


def export(
    parts: TrainableParts,
    state: TrainingState,
    config: Config,
    output_dir: Path,
    selected: dict | None = None,
    instance_prompt: str = "",
) -> Path:
    """Write ``output_dir/model`` atomically (EMA weights when EMA is on, unless the monitor
    selected a step: then the weights of that step) plus its description and model card."""
    final = output_dir / "model"
    with atomic_dir(final) as temp:
        emas = (
            [ema.swapped_in() for ema in state.emas.values()] if not (selected and selected["step"] is not None) else []
        )
        for context in emas:
            context.__enter__()
        try:
            sampling = few_step_sampling(config, parts.components) if config.distill.steps else None
            info = ExportInfo(
                title=output_dir.resolve().name,
                base_model=config.model.pretrained,
                steps=state.step,
                usage_hint=usage_hint(sampling),
            )
            weights = parts.export(temp, info)
        finally:
            for context in emas:
                context.__exit__(None, None, None)
        description = {
            "kind": parts.kind,
            "base_model": config.model.pretrained,
            "base_config": config.model.config,
            "family": parts.components.family.name,
            "weights": Path(weights).name,
            "instance_prompt": config.data.instance_prompt or instance_prompt,
            "class_prompt": config.prior.class_prompt,
            "steps": state.step,
            "placeholder_token": config.method.textual_inversion.placeholder_token if parts.learns_token else None,
            "num_vectors": config.method.textual_inversion.num_vectors,
            "selected": selected,
            "sampling": sampling,
        }
        (temp / "dreamtune.json").write_text(json.dumps(description, indent=2))
        sheets = sorted((output_dir / "validation").glob("step-*.png"))
        kohya = [f.name for f in temp.glob("*.safetensors") if f.name != "pytorch_lora_weights.safetensors"]
        kohya = kohya if parts.writes_kohya_file else []
        write_model_card(
            temp, {**description, "title": info.title}, sheets[-1] if sheets else None, kohya[0] if kohya else None
        )
    return final


def save_resolved_config(config: Config, output_dir: Path) -> None:
    with atomic_file(output_dir / "config.yaml") as temp:
        temp.write_text(yaml.safe_dump(config_module.to_dict(config), sort_keys=False), encoding="utf-8")
