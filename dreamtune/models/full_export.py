"""Export of a full fine-tune (DreamBooth / from scratch) as a diffusers pipeline folder.

What did not train is copied from the base model byte for byte (its VAE, the text encoders
unless they trained, tokenizers, scheduler); what trained is written in the dtype the base
stored it in (an fp16 download gives an fp16 UNet, not an fp32 one twice the size). Variant
files (``*.fp16.safetensors``) are copied under their plain names, so the folder loads with a
plain ``from_pretrained``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from torch import nn

from dreamtune.models.loading import Components, load_base_pipeline

SAFETENSORS_DTYPES = {"F16": torch.float16, "BF16": torch.bfloat16, "F32": torch.float32}


def stored_dtype(files: list[Path]) -> torch.dtype:
    """The floating dtype most tensors in these safetensors files are stored in (header only)."""
    counts: dict[str, int] = {}
    for file in files:
        with open(file, "rb") as handle:
            header = json.loads(handle.read(int.from_bytes(handle.read(8), "little")))
        for name, entry in header.items():
            if name != "__metadata__" and entry["dtype"] in SAFETENSORS_DTYPES:
                counts[entry["dtype"]] = counts.get(entry["dtype"], 0) + 1
    return SAFETENSORS_DTYPES[max(counts, key=counts.get)] if counts else torch.float32


def _local_base(components: Components) -> Path | None:
    source = Path(components.source)
    if source.is_file():
        return None
    if source.is_dir():
        return source
    from huggingface_hub import snapshot_download  # a hub id: the snapshot from_pretrained already cached

    return Path(snapshot_download(components.source, local_files_only=True))


def _plain_name(name: str, variant: str | None) -> str:
    return name.replace(f".{variant}.", ".") if variant else name


def _weight_file_wanted(name: str, variant: str | None) -> bool:
    """Weights of the loaded variant only: a folder may hold fp32 and fp16 copies side by side."""
    is_weight = name.endswith((".safetensors", ".bin")) or ".safetensors.index" in name or ".bin.index" in name
    has_variant = variant is not None and f".{variant}." in name
    if not is_weight:
        return True
    if variant is None:
        return not any(f".{v}." in name for v in ("fp16", "bf16", "fp32", "non_ema", "ema"))
    return has_variant


def _copy_component(source: Path, target: Path, variant: str | None) -> None:
    target.mkdir(parents=True)
    for file in sorted(source.iterdir()):
        if file.is_file() and _weight_file_wanted(file.name, variant):
            destination = target / _plain_name(file.name, variant)
            if variant and ".index." in file.name:  # an index of variant shards names them: use the plain names
                index = json.loads(file.read_text())
                index["weight_map"] = {k: _plain_name(v, variant) for k, v in index.get("weight_map", {}).items()}
                destination.write_text(json.dumps(index, indent=2))
            else:
                shutil.copy2(file, destination)


def _save_trained(module: nn.Module, target: Path, dtype: torch.dtype) -> None:
    """Save in ``dtype``; a diffusers model tensor by tensor, so no second copy of it is ever in memory
    (an SDXL UNet's fp16 copy is 5 GB, made while the run still holds its optimizer state)."""
    if hasattr(module, "save_config"):  # diffusers model
        target.mkdir(parents=True)
        module.save_config(target)
        write_safetensors(module.state_dict(), target / "diffusion_pytorch_model.safetensors", dtype, {"format": "pt"})
    else:  # transformers model
        state = {k: v.detach().to(dtype).contiguous() for k, v in module.state_dict().items()}
        module.save_pretrained(target, state_dict=state, safe_serialization=True)


SAFETENSORS_NAMES = {torch.float16: "F16", torch.bfloat16: "BF16", torch.float32: "F32"}


def write_safetensors(state: dict[str, torch.Tensor], path: Path, dtype: torch.dtype, metadata: dict[str, str]) -> None:
    """A safetensors file of ``state`` in ``dtype``, written one tensor at a time (the format: an 8-byte
    header length, a JSON header of dtypes, shapes and byte offsets, then the raw little-endian data;
    safetensors' own ``save_file`` needs every converted tensor in memory at once). Other dtypes
    (integer buffers) keep theirs."""
    import json

    names = {**SAFETENSORS_NAMES, torch.int64: "I64", torch.int32: "I32", torch.uint8: "U8", torch.bool: "BOOL"}
    wanted = {k: dtype if v.is_floating_point() else v.dtype for k, v in state.items()}
    # safetensors' own order: wider dtypes first (its Dtype enum, descending), then by name
    rank = [torch.int64, torch.float32, torch.int32, torch.bfloat16, torch.float16, torch.uint8, torch.bool]
    order = sorted(state, key=lambda k: (rank.index(wanted[k]), k))
    header, offset = {"__metadata__": metadata}, 0
    for key in order:
        size = state[key].numel() * torch.empty((), dtype=wanted[key]).element_size()
        header[key] = {
            "dtype": names[wanted[key]],
            "shape": list(state[key].shape),
            "data_offsets": [offset, offset + size],
        }
        offset += size
    encoded = json.dumps(header, separators=(",", ":")).encode()
    encoded += b" " * (-len(encoded) % 8)  # the data starts 8-byte aligned
    with open(path, "wb") as handle:
        handle.write(len(encoded).to_bytes(8, "little"))
        handle.write(encoded)
        for key in order:
            tensor = state[key].detach().to("cpu", wanted[key]).contiguous()
            handle.write(tensor.reshape(-1).view(torch.uint8).numpy().data)


def export_full(components: Components, trained: dict[str, nn.Module], out_dir: Path, variant: str | None) -> Path:
    """Write the fine-tuned pipeline to ``out_dir`` (a fresh folder)."""
    base = _local_base(components)
    if base is None:
        return _export_from_single_file(components, trained, out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for entry in sorted(base.iterdir()):
        if entry.name in trained or entry.name.startswith("."):
            continue
        if entry.is_dir():
            _copy_component(entry, out_dir / entry.name, variant)
        elif entry.is_file() and not entry.name.endswith((".safetensors", ".ckpt", ".bin")):
            shutil.copy2(entry, out_dir / entry.name)  # model_index.json, README, licence
    for name, module in trained.items():
        files = [f for f in (base / name).glob("*.safetensors") if _weight_file_wanted(f.name, variant)]
        _save_trained(module, out_dir / name, stored_dtype(files))
    return out_dir


def _export_from_single_file(components: Components, trained: dict[str, nn.Module], out_dir: Path) -> Path:
    """Base was one original-layout file: the untrained parts are re-read from it in its own dtype."""
    from dreamtune.config import ModelConfig

    dtype = stored_dtype([Path(components.source)])
    config = ModelConfig(pretrained=components.source, config=components.extra.get("config") or "", allow_pickle=True)
    pipeline = load_base_pipeline(config, dtype)
    out_dir.mkdir(parents=True, exist_ok=True)
    pipeline.save_pretrained(out_dir, safe_serialization=True)
    for name, module in trained.items():  # trained parts as the file stored them, not in the training's fp32
        shutil.rmtree(out_dir / name)
        _save_trained(module, out_dir / name, dtype)
    return out_dir
