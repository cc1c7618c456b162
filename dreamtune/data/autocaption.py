"""``dreamtune caption``: captions for a prepared photo set, written by an image-captioning model
(BLIP, GIT, Florence-style models transformers loads with ``AutoModelForImageTextToText``), each after the
subject's own words: "a sks dog, sitting on a red sofa". Training on such captions lets the identifier hold
the subject and the rest of the caption hold the scene, so the scene is less baked into the subject.

Only ``metadata.jsonl`` is rewritten (atomically); images are untouched. Captions a person wrote are kept
unless ``overwrite``: a caption counts as written by hand when it differs from the set's instance prompt.
"""

from __future__ import annotations

import json
from pathlib import Path

from dreamtune.atomic import atomic_file
from dreamtune.data.ingest import MANIFEST, prepared_records
from dreamtune.errors import UserError


def generate_captions(images: list, processor, captioner, max_new_tokens: int = 30, batch_size: int = 8) -> list[str]:
    import torch

    texts = []
    for start in range(0, len(images), batch_size):
        inputs = processor(images=images[start : start + batch_size], return_tensors="pt")
        with torch.inference_mode():
            tokens = captioner.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
        texts += [" ".join(t.split()) for t in processor.batch_decode(tokens, skip_special_tokens=True)]
    return texts


def caption_set(folder: Path, load_model, prefix: str, overwrite: bool = False, show_progress: bool = True) -> dict:
    """Caption the images of prepared ``folder``: ``"<prefix>, <the model's caption>"``; ``load_model()``
    gives (processor, model) — models/loading.py:load_captioner — once the folder is checked. Returns counts."""
    from PIL import Image
    from tqdm.auto import tqdm

    folder = Path(folder)
    if not (folder / MANIFEST).is_file():
        raise UserError(
            f"{folder} is not a prepared photo set (no {MANIFEST}); run dreamtune prepare on your photos first."
        )
    if not prefix.strip():
        raise UserError("--prefix is empty; give the subject's words, e.g. --prefix 'a sks dog'.")
    records = prepared_records(folder)
    prompt = _instance_prompt(folder)
    chosen = [r for r in records if overwrite or not r.get("text") or r.get("text") == prompt]
    processor, captioner = load_model()
    progress = tqdm(total=len(chosen), desc="captions", unit="img", disable=not show_progress)
    for start in range(0, len(chosen), 8):
        group = chosen[start : start + 8]
        images = [Image.open(folder / r["file_name"]).convert("RGB") for r in group]
        for record, text in zip(group, generate_captions(images, processor, captioner)):
            record["text"] = f"{prefix.strip()}, {text}" if text else prefix.strip()
        progress.update(len(group))
    progress.close()
    with atomic_file(folder / MANIFEST) as temp:
        temp.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return {"captioned": len(chosen), "kept": len(records) - len(chosen)}


def _instance_prompt(folder: Path) -> str:
    report = folder / "report.json"
    try:
        return json.loads(report.read_text(encoding="utf-8")).get("options", {}).get("caption") or ""
    except (OSError, ValueError):
        return ""
