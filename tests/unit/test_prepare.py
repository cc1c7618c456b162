import hashlib
import json
import os
from pathlib import Path

import pytest
from PIL import Image

from dreamtune.data.prepare import PrepareOptions, prepare
from dreamtune.errors import UserError
from tests.conftest import DREAMBENCH, make_photos


def _tree_digest(folder: Path) -> dict:
    return {
        str(p.relative_to(folder)): (
            hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() and not p.is_symlink() else "x"
        )
        for p in sorted(folder.rglob("*"))
    }


def _hostile_folder(root: Path) -> Path:
    src = make_photos(root / "src", count=3)
    (src / "empty.jpg").write_bytes(b"")
    (src / "notes.pdf").write_bytes(b"%PDF-1.4")
    (src / "fake.png").write_bytes(b"this is not a png at all")
    good = (src / "photo0.jpg").read_bytes()
    (src / "truncated.jpg").write_bytes(good[: len(good) // 2])
    (src / "zcopy.jpg").write_bytes(good)
    Image.new("RGB", (10, 10), "red").save(src / "tiny.png")
    (src / "subdir").mkdir()
    os.symlink("loop_b.jpg", src / "loop_a.jpg")
    os.symlink("loop_a.jpg", src / "loop_b.jpg")
    bomb = Image.new("1", (12000, 12000))
    bomb.save(src / "bomb.png")
    Image.new("RGB", (40, 40), "blue").save(src / "latin1.png")
    (src / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    Image.new("RGB", (40, 40), "green").save(src / "captioned.png")
    (src / "captioned.txt").write_text("a photo of sks ball", encoding="utf-8")
    (src / "metadata.jsonl").write_text(
        json.dumps({"file_name": "../outside.png", "text": "x"})
        + "\n"
        + json.dumps({"file_name": "photo1.jpg", "text": "from manifest"})
        + "\n"
    )
    return src


def test_every_hostile_input_gets_a_reason_and_src_is_untouched(tmp_path):
    src = _hostile_folder(tmp_path)
    before = _tree_digest(src)
    report = prepare(src, tmp_path / "out", PrepareOptions(resolution=32, caption="a photo of sks thing"))
    assert _tree_digest(src) == before
    reasons = {e["file"]: e["reason"] for e in report["entries"] if not e["kept"]}
    assert "zero-byte" in reasons["empty.jpg"]
    assert "not an image file" in reasons["notes.pdf"]
    assert "not an image Pillow can read" in reasons["fake.png"]
    assert "truncated" in reasons["truncated.jpg"]
    assert "duplicate" in reasons["zcopy.jpg"]
    assert "too small" in reasons["tiny.png"]
    assert "folder" in reasons["subdir"]
    assert "symlink loop" in reasons["loop_a.jpg"]
    assert "decompression bomb" in reasons["bomb.png"]
    assert "UTF-8" in reasons["latin1.png"]
    assert "outside the source folder" in reasons["../outside.png"]
    kept = {e["file"]: e["caption"] for e in report["entries"] if e["kept"]}
    assert kept == {
        "captioned.png": "a photo of sks ball",
        "photo0.jpg": "a photo of sks thing",
        "photo1.jpg": "from manifest",
        "photo2.jpg": "a photo of sks thing",
    }
    manifest = [json.loads(l) for l in (tmp_path / "out" / "metadata.jsonl").read_text().splitlines()]
    assert len(manifest) == 4
    for record in manifest:
        assert Image.open(tmp_path / "out" / record["file_name"]).size == (32, 32)
    assert json.loads((tmp_path / "out" / "report.json").read_text())["skipped"] == len(reasons)


def test_strict_turns_skip_into_error_and_leaves_nothing(tmp_path):
    src = make_photos(tmp_path / "src", count=2)
    (src / "empty.jpg").write_bytes(b"")
    with pytest.raises(UserError, match="empty.jpg"):
        prepare(src, tmp_path / "out", PrepareOptions(resolution=32, strict=True))
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["src"]


def test_no_usable_image_is_a_clear_error(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_text("hi")
    with pytest.raises(UserError, match="no usable image"):
        prepare(src, tmp_path / "out", PrepareOptions(resolution=32))
    assert not (tmp_path / "out").exists()


def test_output_inside_source_is_refused(tmp_path):
    src = make_photos(tmp_path / "src", count=1)
    with pytest.raises(UserError, match="inside the source"):
        prepare(src, src / "out", PrepareOptions(resolution=32))


def test_buckets_keep_aspect(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    Image.new("RGB", (160, 80), "red").save(src / "wide.png")
    Image.new("RGB", (80, 160), "blue").save(src / "tall.png")
    prepare(src, tmp_path / "out", PrepareOptions(resolution=64, buckets=True, caption="x"))
    sizes = sorted(Image.open(p).size for p in (tmp_path / "out" / "images").iterdir())
    assert sizes[0][0] < sizes[0][1] and sizes[1][0] > sizes[1][1]


def test_rerun_replaces_output_atomically(tmp_path):
    src = make_photos(tmp_path / "src", count=2)
    prepare(src, tmp_path / "out", PrepareOptions(resolution=32, caption="x"))
    (src / "photo1.jpg").unlink()
    report = prepare(src, tmp_path / "out", PrepareOptions(resolution=32, caption="x"))
    assert report["kept"] == 1 and len(list((tmp_path / "out" / "images").iterdir())) == 1
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]


@pytest.mark.skipif(not (DREAMBENCH / "dog").is_dir(), reason="../shared/dreambench is not present")
def test_real_dreambench_photos(tmp_path):
    report = prepare(DREAMBENCH / "dog", tmp_path / "out", PrepareOptions(resolution=64, caption="a photo of sks dog"))
    assert report["kept"] >= 4 and report["skipped"] == 0
    for path in (tmp_path / "out" / "images").iterdir():
        assert Image.open(path).size == (64, 64)
