from __future__ import annotations

import json
from pathlib import Path

import pytest

from dreamtune import config
from dreamtune.cli import main
from dreamtune.sampling.generate import fill_prompt, read_prompts
from dreamtune.training.run import train
from tests.conftest import DREAMBENCH, tiny_overrides


def test_fill_prompt_handles_both_placeholder_styles():
    assert fill_prompt("a {subject} {class} on the beach", "sks", "dog") == "a sks dog on the beach"
    assert fill_prompt("a {0} {1} in the jungle", "sks", "dog") == "a sks dog in the jungle"


@pytest.mark.skipif(
    not (DREAMBENCH / "prompts_and_classes.txt").is_file(), reason="../shared/dreambench is not present"
)
def test_dreambench_prompt_list_reads_as_is():
    prompts = read_prompts(DREAMBENCH / "prompts_and_classes.txt")
    assert len(prompts) == 50 and prompts[0] == "a {0} {1} in the jungle"


def test_generate_cli_writes_images_sheet_and_record(tiny_models, tmp_path, capsys):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("# comment\na {subject} {class} on the beach\na {0} {1} in the snow\n")
    code = main(
        [
            "generate",
            "--model",
            str(tiny_models["sd1"]),
            "--prompts-file",
            str(prompts),
            "--class-noun",
            "dog",
            "--images-per-prompt",
            "2",
            "--steps",
            "2",
            "--scheduler",
            "euler",
            "--out",
            str(tmp_path / "out"),
        ]
    )
    assert code == 0
    record = json.loads((tmp_path / "out" / "generations.json").read_text())
    assert [r["prompt"] for r in record["images"]] == ["a sks dog on the beach"] * 2 + ["a sks dog in the snow"] * 2
    assert [r["seed"] for r in record["images"]] == [0, 1, 0, 1]
    assert (tmp_path / "out" / "contact_sheet.png").is_file() and (tmp_path / "out" / "0003.png").is_file()


@pytest.mark.skipif(
    not Path("/usr/share/color/icc/ghostscript/default_cmyk.icc").is_file(),
    reason="Ghostscript's default_cmyk.icc is not installed (apt-get install libgs-common; make setup does it)",
)
def test_generate_makes_images_ready_for_print_and_refuses_bad_print_settings(tiny_models, tmp_path, capsys):
    from PIL import Image

    from dreamtune.rewards.colour import ciede2000
    from dreamtune.sampling.print_ready import _to_lab

    profile = "/usr/share/color/icc/ghostscript/default_cmyk.icc"
    common = [
        "generate",
        "--model",
        str(tiny_models["sd1"]),
        "--prompt",
        "a dog",
        "--steps",
        "2",
        "--scheduler",
        "euler",
    ]
    printing = ["--print-profile", profile, "--print-size", "2x2cm", "--ppi", "254"]
    assert main([*common, *printing, "--out", str(tmp_path / "out")]) == 0
    out = tmp_path / "out"
    record = json.loads((out / "generations.json").read_text())["images"][0]
    tiff = Image.open(out / record["print"]["file"])
    # the profile embedded as the shop's file, 2 cm at 254 ppi = 200 px, and the ppi in the resolution tags
    assert tiff.mode == "CMYK" and tiff.info.get("icc_profile") == Path(profile).read_bytes()
    assert tiff.size == (200, 200) and tuple(round(v) for v in tiff.info["dpi"]) == (254, 254)
    assert (out / "print_sheet.png").is_file() and Image.open(out / record["print"]["proof"]).mode == "RGB"
    # the recorded check is what LittleCMS reads back from the 8-bit file on disk
    meant = Image.open(out / record["file"]).convert("RGB").resize((200, 200), Image.Resampling.LANCZOS)
    delta = ciede2000(_to_lab(meant).unsqueeze(0), _to_lab(tiff, profile).unsqueeze(0)).mean()
    assert abs(float(delta) - record["print"]["delta_e00_mean"]) < 0.5  # sharpening is the difference
    assert 0 < record["print"]["delta_e00_mean"] < 10 and 0.5 < record["print"]["chroma_kept"] <= 1.05
    (tmp_path / "rgb.icc").write_bytes(b"junk")
    assert main([*common, "--print-profile", str(tmp_path / "rgb.icc"), "--out", str(tmp_path / "bad")]) != 0
    assert "not an ICC profile" in capsys.readouterr().err and not (tmp_path / "bad").exists()  # nothing half-written
    assert main([*common, *printing[:2], "--print-size", "big", "--out", str(tmp_path / "bad")]) != 0
    assert "--print-size 'big' is not a size" in capsys.readouterr().err and not (tmp_path / "bad").exists()


def test_latent_cache_is_reused_across_runs(tiny_models, photos, tmp_path):
    shared_cache = tmp_path / "cache"

    def run(name, **extra):
        overrides = tiny_overrides(
            tiny_models["sd1"],
            photos,
            tmp_path / name,
            **{"data.cache_dir": str(shared_cache), "data.instance_prompt": "a photo of sks dog", **extra},
        )
        train(config.load(None, overrides), show_progress=False, log=lambda *_: None)
        return sorted(p.name for p in (shared_cache / "latents").iterdir())

    first = run("a")
    assert first
    assert run("b") == first  # same images, model, resolution: nothing new
    assert len(run("c", **{"data.crop": "random"})) > len(first)  # a changed key part adds entries
    assert len(list((shared_cache / "text").iterdir())) >= 1  # text embeddings of the frozen encoder


def test_class_images_are_generated_once_and_reused(tiny_models, photos, tmp_path):
    class_dir = tmp_path / "classes"

    def run(name, count):
        overrides = tiny_overrides(
            tiny_models["sd1"],
            photos,
            tmp_path / name,
            **{
                "prior.enabled": True,
                "prior.class_prompt": "a photo of dog",
                "prior.class_dir": str(class_dir),
                "prior.num_class_images": count,
                "data.instance_prompt": "a photo of sks dog",
            },
        )
        train(config.load(None, overrides), show_progress=False, log=lambda *_: None)
        return {p.name: p.stat().st_mtime_ns for p in (class_dir / "images").iterdir()}

    first = run("a", 2)
    assert len(first) == 2
    second = run("b", 3)  # tops up to 3; the first two are not regenerated
    assert len(second) == 3 and all(second[name] == stamp for name, stamp in first.items())


def test_class_images_use_the_configured_sampler(tiny_models, tmp_path):
    import numpy as np
    from PIL import Image

    from dreamtune.config import ModelConfig, PriorConfig
    from dreamtune.models.loading import load_components
    from dreamtune.training.class_images import ensure_class_images

    components = load_components(ModelConfig(pretrained=str(tiny_models["sd1"])))
    pixels, messages = {}, []
    for sampler in ("ddim", "dpm++"):
        prior = PriorConfig(enabled=True, class_prompt="a dog", num_class_images=1, sample_steps=3, sampler=sampler)
        folder = ensure_class_images(
            components, prior, tmp_path / sampler, 32, 0, show_progress=False, log=messages.append
        )
        pixels[sampler] = np.asarray(Image.open(next((folder / "images").iterdir())), dtype=np.float32)
    assert any("3 dpm++ steps each" in m for m in messages)
    assert np.abs(pixels["ddim"] - pixels["dpm++"]).mean() > 0.5  # same seed, another sampler: another image


def test_class_images_come_from_the_shared_cache_in_a_later_run_with_the_same_settings(
    tiny_models, tmp_path, monkeypatch
):
    from dreamtune.config import ModelConfig, PriorConfig
    from dreamtune.models.loading import load_components
    from dreamtune.training.class_images import ensure_class_images

    monkeypatch.setenv("DREAMTUNE_CACHE", str(tmp_path / "shared"))
    components = load_components(ModelConfig(pretrained=str(tiny_models["sd1"])))
    messages = []

    def make(name, **settings):
        prior = PriorConfig(
            **{"enabled": True, "class_prompt": "a dog", "num_class_images": 3, "sample_steps": 2, **settings}
        )
        folder = ensure_class_images(
            components, prior, tmp_path / name, 32, 0, show_progress=False, log=messages.append
        )
        return [(folder / "images" / f"class-{i:05d}.png").read_bytes() for i in range(3)]

    first = make("a")
    assert "shared cache" not in messages[-1]
    assert (
        make("b") == first and "3 of them from the shared cache" in messages[-1]
    )  # same settings: copied, not sampled
    assert make("c", sample_steps=3) != first and "shared cache" not in messages[-1]  # another setting: sampled
    make("d", shared_cache=False)
    assert "shared cache" not in messages[-1]
