"""Every pretraining stage runs through the one loop for a few steps, resumes, and the
assembled folder loads as a plain diffusers pipeline."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from dreamtune.miniature.assemble import assemble
from dreamtune.miniature.pretrain import pretrain


def test_stages_resume_and_assemble_into_a_plain_diffusers_pipeline(tmp_path):
    from diffusers import DiffusionPipeline

    root = tmp_path / "mini"
    common = [f"root={root}", "world.pool_size=64", "train.batch_size=4", "train.checkpoint_every=2"]
    for stage in ("clip", "clip_image", "vae", "unet"):
        pretrain(f"configs/miniature/{stage}.yaml", common + ["train.steps=2"], show_progress=False)
    pretrain("configs/miniature/unet.yaml", common + ["train.steps=3"], show_progress=False)  # resumes at 2
    first, refined = (load_file(str(root / s / "final" / "model.safetensors")) for s in ("clip", "clip_image"))
    assert all(torch.equal(first[k], refined[k]) for k in first if k.startswith(("text_model.", "text_projection")))
    assert not all(torch.equal(first[k], refined[k]) for k in first if k.startswith("vision_model."))
    steps = [json.loads(l)["step"] for l in (root / "unet" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3]
    model = assemble(root, tmp_path / "model")
    pipeline = DiffusionPipeline.from_pretrained(str(model), use_safetensors=True)
    assert type(pipeline).__name__ == "StableDiffusionPipeline"
    image = pipeline("a sks dog on the beach", num_inference_steps=2, output_type="np").images[0]
    assert image.shape == (64, 64, 3) and np.isfinite(image).all()


def test_the_unet_stage_can_start_from_the_shipped_weights_with_other_heads(tmp_path):
    from diffusers import UNet2DConditionModel

    from dreamtune.errors import UserError
    from dreamtune.miniature.assemble import MODEL_DIR

    root = tmp_path / "mini"
    common = [f"root={root}", "world.pool_size=64", "train.batch_size=4", "train.steps=1"]
    for stage in ("clip", "vae"):
        pretrain(f"configs/miniature/{stage}.yaml", common, show_progress=False)
    start = [*common, "unet_heads=[2,4,6]", f"unet_init={MODEL_DIR / 'unet'}", "train.lr=0", "train.weight_decay=0"]
    final = pretrain("configs/miniature/unet.yaml", start, show_progress=False)
    shipped = UNet2DConditionModel.from_pretrained(str(MODEL_DIR / "unet")).state_dict()
    trained = UNet2DConditionModel.from_pretrained(str(final))
    assert trained.config.attention_head_dim == [2, 4, 6]
    assert all(torch.equal(v.float(), shipped[k].float()) for k, v in trained.state_dict().items())  # lr 0: the start

    (tmp_path / "empty").mkdir()
    for folder, says in (
        (MODEL_DIR / "vae", "not the miniature UNet's architecture"),
        (tmp_path / "empty", "holds no"),
    ):
        with pytest.raises(UserError, match=f"unet_init .*{says}"):
            pretrain("configs/miniature/unet.yaml", [*common, f"unet_init={folder}"], show_progress=False)


def test_the_unet_stage_adds_the_wider_outline_vocabulary_when_asked(tmp_path):
    from dreamtune.errors import UserError
    from dreamtune.miniature.outlines import OUTLINE_GLYPHS

    root = tmp_path / "mini"
    common = [f"root={root}", "world.pool_size=16", "train.batch_size=4", "train.steps=1"]
    for stage in ("clip", "vae"):
        pretrain(f"configs/miniature/{stage}.yaml", common, show_progress=False)
    wider = [*common, "world.outline_glyphs=2", "world.outline_renders=1"]
    assert (pretrain("configs/miniature/unet.yaml", wider, show_progress=False) / "config.json").is_file()
    cached = sorted(p.name for p in (root / "cache").iterdir())
    assert sum(name.startswith("outlines-") for name in cached) == 1  # rendered once,
    assert sum(name.startswith("latents-") for name in cached) == 2  # encoded apart from the world pool's latents
    too_many = [*common, f"world.outline_glyphs={len(OUTLINE_GLYPHS) + 1}", "train.steps=2"]
    with pytest.raises(UserError, match="world.outline_glyphs is .* set world.outline_glyphs to at most"):
        pretrain("configs/miniature/unet.yaml", too_many, show_progress=False)


def test_demo_runs_end_to_end_on_a_freshly_pretrained_miniature(tmp_path):
    from dreamtune.miniature.demo import run_demo

    root = tmp_path / "mini"
    common = [f"root={root}", "world.pool_size=64", "train.batch_size=4", "train.steps=2"]
    for stage in ("clip", "vae", "unet"):
        pretrain(f"configs/miniature/{stage}.yaml", common, show_progress=False)
    model = assemble(root, tmp_path / "model")
    metrics = run_demo(
        tmp_path / "demo",
        subject="cat3",
        seeds=1,
        model_dir=model,
        overrides=["train.steps=3", "prior.num_class_images=2", "prior.sample_steps=2"],
    )
    judged = {"judge_identity", "judge_identity_all", "judge_context", "judge_class", "judge_similarity"}
    for row in ("floor", "personalized", "ceiling"):  # assemble carries the shipped judge over
        assert set(metrics[row]) == {"clip_i", "clip_t"} | judged and all(np.isfinite(v) for v in metrics[row].values())
    assert all(0 <= metrics[row]["judge_identity"] <= 1 for row in ("floor", "personalized", "ceiling"))
    assert json.loads((tmp_path / "demo" / "metrics.json").read_text())["subject"] == "cat3"
    page = (tmp_path / "demo" / "report.html").read_text()
    for picture in ("inputs.png", "personalized/contact_sheet.png", "side_by_side.png", "loss.png"):
        assert picture in page and (tmp_path / "demo" / picture).is_file()


def test_a_demo_on_your_own_photos_names_them_and_says_what_it_cannot_measure(tmp_path, photos, capsys):
    """With --images the demo's metrics name the photos actually used (not the default world subject),
    and its report says why there is no ceiling and what CLIP-I to real photos can and cannot show."""
    import html

    import pytest

    from dreamtune.errors import UserError
    from dreamtune.miniature.demo import UNMEASURED, run_demo

    short = ["train.steps=2", "prior.num_class_images=2", "prior.sample_steps=2"]
    metrics = run_demo(tmp_path / "mine", images=photos, class_noun="dog", seeds=1, overrides=short)
    assert metrics["subject"] == f"your photos in {photos}" and "ceiling" not in metrics
    saved = json.loads((tmp_path / "mine" / "metrics.json").read_text())
    assert saved["subject"] == metrics["subject"] and saved["class"] == "dog"
    page = (tmp_path / "mine" / "report.html").read_text()
    assert html.escape(UNMEASURED) in page and "dog3" not in page
    with pytest.raises(UserError, match="name two subjects"):
        run_demo(tmp_path / "both", subject="cat3", images=photos, overrides=short)


def test_the_demo_trains_and_asks_the_personalized_model_in_the_same_words(tmp_path):
    """An instance prompt given as an override (here without the class noun) is the photos' caption (with each
    photo's scene) and the prompt the personalized images are drawn from; the base model keeps the class prompt.
    Photos in other scenes are allowed, the held-out evaluation scenes are not."""
    import pytest

    from dreamtune.miniature.demo import run_demo

    short = ["train.steps=2", "prior.num_class_images=2", "prior.sample_steps=2", "data.instance_prompt=a sks"]
    run_demo(tmp_path / "bare", subject="cat3", seeds=1, overrides=short, photo_contexts=(None, "wheat_field"))
    captions = [json.loads(line)["text"] for line in (tmp_path / "bare" / "run" / "data" / "metadata.jsonl").open()]
    assert captions == ["a sks", "a sks with a wheat field in the background"] * 2 + ["a sks"]
    tuned = json.loads((tmp_path / "bare" / "personalized" / "generations.json").read_text())
    base = json.loads((tmp_path / "bare" / "floor" / "generations.json").read_text())
    assert "a sks in the jungle" in {i["prompt"] for i in tuned["images"]}
    assert [i["prompt"] for i in tuned["images"]] == [i["prompt"].replace("a cat ", "a sks ") for i in base["images"]]
    assert all(i["prompt"].startswith("a cat ") for i in base["images"])
    with pytest.raises(ValueError, match="held-out evaluation contexts"):
        run_demo(tmp_path / "leak", subject="cat3", overrides=short, photo_contexts=("beach",))


def test_the_demo_headline_puts_identity_among_all_instances_beside_identity_in_the_class():
    from dreamtune.miniature.demo import headline

    metrics = {
        "personalized": {"judge_identity": 1.0, "judge_identity_all": 0.19, "judge_context": 1.0},
        "ceiling": {"judge_identity": 1.0, "judge_identity_all": 0.81, "judge_context": 1.0},
    }
    line = headline(metrics)
    assert "100% in its class, 19% among all instances (ground truth 81%)" in line
    assert headline({"personalized": {"clip_i": 0.5}}) == ""
