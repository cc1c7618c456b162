"""dreamtune caption: a prepared set captioned by an image-captioning model (a tiny BLIP built here, random
weights: the words are noise, the plumbing is real), after the subject's words; hand-written captions kept."""

import json
from pathlib import Path

import pytest

from dreamtune.cli import main
from dreamtune.data.autocaption import caption_set
from dreamtune.errors import UserError
from dreamtune.models.loading import load_captioner

WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]", "a", "dog", "on", "the", "beach", "red", "sofa"]


@pytest.fixture(scope="module")
def tiny_blip(tmp_path_factory) -> Path:
    import torch
    from transformers import (
        BertTokenizer,
        BertTokenizerFast,
        BlipConfig,
        BlipForConditionalGeneration,
        BlipImageProcessor,
        BlipProcessor,
    )

    folder = tmp_path_factory.mktemp("tiny-blip")
    (folder / "vocab.txt").write_text("\n".join(WORDS) + "\n")
    BertTokenizer(str(folder / "vocab.txt"), bos_token="[DEC]").save_pretrained(folder)
    tokenizer = BertTokenizerFast.from_pretrained(folder)
    BlipProcessor(
        image_processor=BlipImageProcessor(size={"height": 32, "width": 32}), tokenizer=tokenizer
    ).save_pretrained(folder)
    torch.manual_seed(0)
    text = dict(
        vocab_size=len(WORDS),
        hidden_size=32,
        encoder_hidden_size=32,
        intermediate_size=37,
        num_attention_heads=2,
        num_hidden_layers=2,
        max_position_embeddings=40,
        bos_token_id=5,
        pad_token_id=0,
        sep_token_id=3,
        eos_token_id=3,
    )
    vision = dict(
        hidden_size=32, intermediate_size=37, num_attention_heads=2, num_hidden_layers=2, image_size=32, patch_size=8
    )
    BlipForConditionalGeneration(BlipConfig(text_config=text, vision_config=vision, projection_dim=16)).save_pretrained(
        folder
    )
    return folder


@pytest.fixture()
def prepared(tmp_path) -> Path:
    from dreamtune.data.prepare import PrepareOptions, prepare
    from dreamtune.miniature import world

    photos = tmp_path / "photos"
    photos.mkdir()
    for index in range(3):
        world.render(world.Scene("dog3", None), index).save(photos / f"{index}.png")
    (photos / "2.txt").write_text("a sks dog asleep, by hand")
    prepare(photos, tmp_path / "set", PrepareOptions(resolution=64, caption="a sks dog"))
    return tmp_path / "set"


def _captions(folder: Path) -> dict[str, str]:
    records = [json.loads(line) for line in (folder / "metadata.jsonl").read_text().splitlines()]
    return {r["source"]: r["text"] for r in records}


def test_captions_follow_the_subjects_words_and_hand_written_ones_are_kept(tiny_blip, prepared):
    counts = caption_set(prepared, lambda: load_captioner(str(tiny_blip)), "a sks dog", show_progress=False)
    captions = _captions(prepared)
    assert counts == {"captioned": 2, "kept": 1}
    assert captions["2.png"] == "a sks dog asleep, by hand"
    for source in ("0.png", "1.png"):
        words = captions[source].removeprefix("a sks dog, ").split()
        assert captions[source].startswith("a sks dog, ") and words and set(words) <= set(WORDS[6:])
    caption_set(prepared, lambda: load_captioner(str(tiny_blip)), "a sks dog", overwrite=True, show_progress=False)
    assert _captions(prepared)["2.png"].startswith("a sks dog, ")


def test_the_cli_and_its_mistakes(tiny_blip, prepared, tmp_path, capsys):
    assert main(["caption", str(prepared), "--model", str(tiny_blip), "--prefix", "a sks dog"]) == 0
    assert "captioned 2 image(s)" in capsys.readouterr().out
    before = (prepared / "metadata.jsonl").read_bytes()
    (tmp_path / "not-a-model").mkdir()
    assert main(["caption", str(prepared), "--model", str(tmp_path / "not-a-model"), "--prefix", "a sks dog"]) == 2
    assert "cannot load the captioning model" in capsys.readouterr().err
    assert (prepared / "metadata.jsonl").read_bytes() == before  # nothing half-written
    with pytest.raises(UserError, match="is not a prepared photo set"):
        caption_set(tmp_path, lambda: load_captioner(str(tiny_blip)), "a sks dog")


@pytest.mark.slow  # launches the CLI
def test_the_ui_captions_a_prepared_set_through_the_cli(tiny_blip, tmp_path):
    from dreamtune.ui.actions import Actions
    from dreamtune.ui.safety import Access

    actions = Actions(tmp_path / "runs", Access("127.0.0.1", 0))
    actions.sample_photos("cat", "cat3")
    actions.prepare("cat", "a sks cat", 64)
    shown = actions.autocaption("cat", str(tiny_blip), "a sks cat")
    assert all(image["caption"].startswith("a sks cat, ") for image in shown["images"])
    with pytest.raises(UserError, match="no captioning model is given"):
        actions.autocaption("cat", " ", "a sks cat")
    remote = Actions(tmp_path / "runs", Access("0.0.0.0", 0, auth="a:b"))
    with pytest.raises(UserError, match="names a path on the server"):  # off loopback: no server paths
        remote.autocaption("cat", str(tiny_blip), "a sks cat")
