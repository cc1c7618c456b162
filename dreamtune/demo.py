"""``dreamtune demo --out DIR``: the whole pipeline offline, end to end, in well under a minute.

Until the miniature model ships (issue 3) it runs on a tiny *randomly initialised* pipeline:
prepare -> LoRA DreamBooth with prior preservation -> generate in new contexts. The pictures
are noise; what it shows is that every stage runs and where each output lands.
"""
from __future__ import annotations

import random
from pathlib import Path

from PIL import Image, ImageDraw

from dreamtune import config
from dreamtune.models.tiny import build_tiny_pipeline
from dreamtune.sampling.generate import GenerateRequest, generate
from dreamtune.training.run import train

CONTEXTS = ["on the beach", "in the snow", "in the jungle", "on a cobblestone street",
            "with a city in the background", "on top of a wooden floor", "floating on top of water", "on a white rug"]


def synthetic_photos(folder: Path, count: int = 5, seed: int = 0) -> Path:
    """Five 'photos' of one subject (a red ball with a stripe) on varied backgrounds."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        image = Image.new("RGB", (96, 96), tuple(rng.randint(60, 220) for _ in range(3)))
        draw = ImageDraw.Draw(image)
        x, y = rng.randint(20, 40), rng.randint(20, 40)
        draw.ellipse((x, y, x + 40, y + 40), fill=(200, 30, 30))
        draw.rectangle((x + 5, y + 17, x + 35, y + 23), fill=(250, 250, 250))
        image.save(folder / f"photo{index}.png")
    return folder


def run_demo(out: Path, images: Path | None = None, steps: int = 60) -> dict:
    out = Path(out)
    model = build_tiny_pipeline(out / "tiny-model", "sd1")
    photos = Path(images) if images else synthetic_photos(out / "photos")
    overrides = [f"model.pretrained={model}", f"data.instance_dir={photos}", "data.instance_prompt=a photo of sks ball",
                 "data.resolution=32", f"train.output_dir={out / 'run'}", f"train.steps={steps}", "train.lr=1e-3",
                 "prior.enabled=true", "prior.class_prompt=a photo of ball", "prior.num_class_images=8",
                 "prior.sample_steps=10", "train.validate_every=30", "train.validation_steps=10",
                 "train.validation_prompts=[a photo of sks ball on the beach]"]
    result = train(config.load(None, overrides))
    request = GenerateRequest(trained=str(result.model_dir), prompts=tuple(f"a photo of {{subject}} {{class}} {c}" for c in CONTEXTS),
                              class_noun="ball", steps=10, resolution=32)
    record = generate(request, out / "generations")
    print(f"demo finished: contact sheet {out / 'generations' / 'contact_sheet.png'}, "
          f"trained LoRA {result.model_dir / 'pytorch_lora_weights.safetensors'}, loss log {result.output_dir / 'metrics.jsonl'}")
    return record
