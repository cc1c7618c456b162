"""Evaluation end to end on tiny models built here: `dreamtune evaluate`, the DreamBench
harness (train → generate → score → table, resumable), the MiniDreamBench and its ceiling,
and the method comparison."""

from __future__ import annotations

import json
import math

import pytest

from dreamtune import cli
from dreamtune.bench.comparison import compare
from dreamtune.bench.harness import BenchSettings, run_bench
from dreamtune.errors import UserError
from dreamtune.evaluation.dreambench import read_benchmark, write_prompts_file
from dreamtune.evaluation.evaluate import load_features, read_generations, read_photos, strip_identifier
from dreamtune.evaluation.metrics import prompt_fidelity, subject_fidelity
from dreamtune.models.tiny import build_tiny_feature_models
from dreamtune.sampling.generate import GenerateRequest, generate
from tests.conftest import DREAMBENCH, make_photos

TINY_TRAINING = [
    "data.resolution=32",
    "train.steps=2",
    "prior.num_class_images=2",
    "prior.sample_steps=2",
    "train.mixed_precision=no",
    "train.gradient_checkpointing=false",
]


@pytest.fixture(scope="module")
def feature_models(tmp_path_factory):
    return build_tiny_feature_models(tmp_path_factory.mktemp("features"))


@pytest.fixture
def tiny_bench(tmp_path):
    root = tmp_path / "bench"
    root.mkdir()
    write_prompts_file(
        root / "prompts_and_classes.txt",
        {"rex": "dog", "tin": "can", "absent": "vase"},
        ["a {0} {1} on the beach", "a red {0} {1}"],
        ["a {0} {1} in the snow", "a {0} {1} wearing a red hat"],
    )
    make_photos(root / "dataset" / "rex", count=3, seed=1)
    make_photos(root / "tin", count=3, seed=2)
    return read_benchmark(root)


def test_evaluate_command_scores_generations_against_photos(tmp_path, tiny_models, photos, feature_models):
    out = tmp_path / "generated"
    generate(
        GenerateRequest(
            base_model=str(tiny_models["sd1"]),
            prompts=("a {subject} dog on the beach", "a {subject} dog"),
            images_per_prompt=2,
            steps=2,
            resolution=32,
        ),
        out,
        show_progress=False,
    )
    code = cli.main(
        [
            "evaluate",
            "--generated",
            str(out),
            "--real",
            str(photos),
            "--clip",
            str(feature_models["clip"]),
            "--dino",
            str(feature_models["dino"]),
        ]
    )
    assert code == 0
    result = json.loads((out / "metrics.json").read_text())
    assert {"dino", "clip_i", "clip_t", "div"} <= set(result) and result["images"] == 4
    assert result["subject_photos"] == str(photos) and result["generated"] == str(out)  # what was measured
    assert all(-1 <= result[k] <= 1 for k in ("dino", "clip_i", "clip_t")) and 0 <= result["div"] <= 2
    # CLIP-T is scored against the prompt without the identifier
    features = load_features(str(feature_models["clip"]), "none")
    images, records = read_generations(out)
    expected = prompt_fidelity(
        features.clip.images(images), features.clip.texts([strip_identifier(r["prompt"], "sks") for r in records])
    )
    assert math.isclose(result["clip_t"], expected, rel_tol=1e-5)
    assert "DINO: " + str(feature_models["dino"]) in result["features"]


def test_evaluate_names_a_missing_generations_folder(tmp_path, photos, capsys):
    assert (
        cli.main(["evaluate", "--generated", str(tmp_path), "--real", str(photos), "--clip", str(tmp_path / "none")])
        == 2
    )
    assert "error:" in capsys.readouterr().err


def test_benchmark_layout_errors_are_one_sentence(tmp_path, tiny_bench):
    with pytest.raises(UserError, match="not a DreamBench folder"):
        read_benchmark(tmp_path)
    assert tiny_bench.available == ["rex", "tin"]  # 'absent' has no photos
    assert (
        tiny_bench.prompts("rex")[1] == "a {0} {1} wearing a red hat"
        and tiny_bench.prompts("tin")[1] == "a red {0} {1}"
    )
    with pytest.raises(UserError, match="absent"):
        run_bench(tiny_bench, BenchSettings(recipe=None, subjects=("absent",)), None, tmp_path / "out")


def test_harness_trains_scores_tabulates_and_resumes_per_subject(tmp_path, tiny_models, tiny_bench, feature_models):
    features = load_features(str(feature_models["clip"]), str(feature_models["dino"]))
    settings = BenchSettings(
        recipe="configs/lora-sd15.yaml",
        overrides=tuple(TINY_TRAINING),
        base_model=str(tiny_models["sd1"]),
        seeds=2,
        sample_steps=2,
        resolution=32,
    )
    out = tmp_path / "out"
    table = run_bench(tiny_bench, settings, features, out, show_progress=False)
    assert [r["subject"] for r in table["rows"]] == ["rex", "tin"]
    for row in table["rows"]:
        assert {"dino", "clip_i", "clip_t", "pres", "div", "train_seconds"} <= set(row)
        assert len(json.loads((out / row["subject"] / "generated" / "generations.json").read_text())["images"]) == 4
    assert set(table["per_class"]) == {"dog", "can"} and table["overall"]["clip_i"][1] >= 0
    assert (out / "class_images" / "dog" / "metadata.jsonl").is_file()
    assert "| **all** |" in (out / "table.md").read_text() and (out / "report.html").is_file()
    # resume: a finished subject is not redone; a missing one is
    kept = (out / "rex" / "metrics.json").stat().st_mtime_ns
    (out / "tin" / "metrics.json").unlink()
    again = run_bench(tiny_bench, settings, features, out, show_progress=False)
    assert (out / "rex" / "metrics.json").stat().st_mtime_ns == kept and (out / "tin" / "metrics.json").is_file()
    assert again["rows"][0] == table["rows"][0]


def test_method_comparison_has_one_row_per_method_and_a_sheet(tmp_path, tiny_models, tiny_bench, feature_models):
    features = load_features(str(feature_models["clip"]), "none")
    common = BenchSettings(
        recipe=None,
        overrides=tuple(TINY_TRAINING),
        base_model=str(tiny_models["sd1"]),
        subjects=("tin",),
        seeds=1,
        sample_steps=2,
        resolution=32,
    )
    methods = {
        "base (class noun)": (None, ()),
        "lora": ("configs/lora-sd15.yaml", ("prior.enabled=false",)),
        "textual inversion": ("configs/textual-inversion-sd15.yaml", ()),
    }
    result = compare(tiny_bench, common, features, tmp_path / "cmp", methods=methods, steps=2, show_progress=False)
    assert [r["method"] for r in result["rows"]] == list(methods)
    assert all("clip_i" in r and "dino" not in r for r in result["rows"])
    assert (tmp_path / "cmp" / "comparison.png").is_file() and "| lora |" in (
        tmp_path / "cmp" / "comparison.md"
    ).read_text()
    ti = json.loads((tmp_path / "cmp" / "textual_inversion" / "tin" / "generated" / "generations.json").read_text())
    assert ti["images"][0]["prompt"] == "a <sks> can on the beach"  # the placeholder token, not 'sks'


def test_minidreambench_reads_back_with_a_ground_truth_ceiling(tmp_path):
    from dreamtune.miniature.assemble import MODEL_DIR
    from dreamtune.miniature.minidreambench import write_minidreambench

    bench = read_benchmark(write_minidreambench(tmp_path / "mini", subjects=("dog3", "can3"), seeds=1))
    assert bench.available == ["dog3", "can3"] and len(bench.prompts("can3")) == 22 and len(bench.prompts("dog3")) == 12
    features = load_features(model_dir=MODEL_DIR)
    table = run_bench(bench, BenchSettings(recipe="ceiling"), features, tmp_path / "ceiling", show_progress=False)
    dog, can = table["rows"]
    assert dog["images"] == 12 and can["images"] == 22 and "dino" not in dog
    assert "mini-CLIP" in table["features"]
    # the subject's ground truth is closer to its own photos than to another subject's
    dog_truth = features.clip.images(read_generations(bench.ceiling_dir("dog3"))[0])
    assert (
        dog["clip_i"] > subject_fidelity(dog_truth, features.clip.images(read_photos(bench.photos_dir("can3")))) + 0.1
    )


@pytest.mark.skipif(not DREAMBENCH.is_dir(), reason="../shared/dreambench is not present")
def test_reads_the_real_dreambench_layout():
    bench = read_benchmark(DREAMBENCH)
    assert len(bench.classes) == 30 and len(bench.object_prompts) == 25 and len(bench.live_prompts) == 25
    assert bench.classes["dog8"] == "dog" and "wearing a red hat" in bench.prompts("dog8")[10]
    assert "a cube shaped {0} {1}" in bench.prompts("teapot") and "backpack" in bench.available


def test_bench_command_runs_a_recipe_over_a_benchmark_folder(tmp_path, tiny_models, tiny_bench, feature_models, capsys):
    out = tmp_path / "cli"
    code = cli.main(
        [
            "bench",
            "dreambench",
            *TINY_TRAINING,
            "--data",
            str(tiny_bench.root),
            "--recipe",
            "configs/lora-sd15.yaml",
            "--model",
            str(tiny_models["sd1"]),
            "--clip",
            str(feature_models["clip"]),
            "--dino",
            "none",
            "--subjects",
            "tin",
            "--seeds",
            "1",
            "--sample-steps",
            "2",
            "--resolution",
            "32",
            "--out",
            str(out),
        ]
    )
    assert code == 0 and "| **all** |" in capsys.readouterr().out
    assert (out / "tin" / "metrics.json").is_file() and (out / "report.html").is_file()


def test_bench_command_scores_the_minidreambench_ceiling(tmp_path, capsys):
    out = tmp_path / "mini"
    assert cli.main(["bench", "dreambench", "--recipe", "ceiling", "--subjects", "can3", "--out", str(out)]) == 0
    table = json.loads((out / "table.json").read_text())
    assert (
        table["rows"][0]["subject"] == "can3" and table["rows"][0]["clip_i"] > 0.5 and "mini-CLIP" in table["features"]
    )
