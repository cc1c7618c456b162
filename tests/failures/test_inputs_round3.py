"""Round 3 of the user-mistake sweep (issue 31): generate's inputs, a LoRA of another base,
folders the user may not read or write, a finished run's folder, the class-image cache, a prepared
folder whose manifest points elsewhere. Each ends in exit status 2 and one sentence with nothing
written, or in a documented success with a note."""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import traceback
from pathlib import Path

import pytest

from dreamtune import config
from dreamtune.cli import main
from dreamtune.data.prepare import PrepareOptions, prepare
from dreamtune.training.run import train
from tests.conftest import tiny_overrides
from tests.failures.test_failures import _one_sentence, _train_args

NOBODY = 65534


def _lora(tiny_models, photos, out: Path) -> Path:
    cfg = config.load(
        None,
        tiny_overrides(
            tiny_models["sd1"], photos, out, **{"data.instance_prompt": "a photo of sks dog", "prior.enabled": False}
        ),
    )
    return train(cfg, show_progress=False, log=lambda *_: None).model_dir


@pytest.fixture(scope="module")
def trained_lora(tiny_models, tmp_path_factory):
    from tests.conftest import make_photos

    root = tmp_path_factory.mktemp("lora")
    return _lora(tiny_models, make_photos(root / "photos"), root / "run")


@pytest.mark.parametrize(
    "option, fragment",
    [
        (["--steps", "0"], "--steps 0 must be at least 1"),
        (["--steps", "-3"], "--steps -3 must be at least 1"),
        (["--images-per-prompt", "0"], "--images-per-prompt 0 must be at least 1"),
        (["--resolution", "0"], "--resolution 0 must be a positive multiple of 8"),
        (["--resolution", "60"], "--resolution 60 must be a positive multiple of 8"),
        (["--guidance-scale", "nan"], "--guidance-scale nan must be a number of 0 or more"),
        (["--guidance-scale", "-2"], "--guidance-scale -2.0 must be a number of 0 or more"),
        (["--lora-scale", "1e30"], "--lora-scale 1e+30 must lie between -10 and 10"),
        (["--lora-scale", "inf"], "--lora-scale inf must lie between -10 and 10"),
    ],
)
def test_generate_settings_out_of_range(capsys, trained_lora, tmp_path, option, fragment):
    _one_sentence(
        capsys,
        ["generate", "--trained", str(trained_lora), "--prompt", "a sks dog", *option, "--out", str(tmp_path / "g")],
        fragment,
    )
    assert not (tmp_path / "g").exists()


def test_a_prompts_file_that_is_not_utf8(capsys, trained_lora, tmp_path):
    (tmp_path / "prompts.txt").write_bytes("a sks dog in a caf\xe9\n".encode("latin-1"))
    _one_sentence(
        capsys,
        [
            "generate",
            "--trained",
            str(trained_lora),
            "--prompts-file",
            str(tmp_path / "prompts.txt"),
            "--out",
            str(tmp_path / "g"),
        ],
        "is not UTF-8 text; save it as UTF-8",
    )


@pytest.mark.parametrize(
    "trained, fragment",
    [
        ("missing/model", "does not exist; pass a run's model/ folder"),
        ("empty", "is not a trained model folder"),
    ],
)
def test_a_bad_trained_path_names_trained_not_model_pretrained(capsys, tmp_path, trained, fragment):
    (tmp_path / "empty").mkdir()
    err = _one_sentence(
        capsys,
        ["generate", "--trained", str(tmp_path / trained), "--prompt", "a dog", "--out", str(tmp_path / "g")],
        fragment,
    )
    assert "model.pretrained" not in err and not (tmp_path / "g").exists()


def test_a_lora_of_another_base_names_both_bases(capsys, tiny_models, trained_lora, tmp_path):
    err = _one_sentence(
        capsys,
        [
            "generate",
            "--trained",
            str(trained_lora),
            "--model",
            str(tiny_models["sdxl"]),
            "--prompt",
            "a sks dog",
            "--steps",
            "2",
            "--out",
            str(tmp_path / "g"),
        ],
        "does not fit",
    )
    assert f"was trained on {tiny_models['sd1']}" in err and f"does not fit {tiny_models['sdxl']}" in err
    assert "size mismatch" in err and f"pass --model {tiny_models['sd1']}" in err
    assert not (tmp_path / "g").exists()


def test_prepare_min_size_must_be_positive(capsys, photos, tmp_path):
    _one_sentence(
        capsys,
        ["prepare", str(photos), "--out", str(tmp_path / "p"), "--min-size", "-5"],
        "--min-size -5 must be a positive",
    )
    assert not (tmp_path / "p").exists()


# ---- a run's folder ---------------------------------------------------------------------------
def _digest(folder: Path) -> dict:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != ".lock"
    }


def test_a_finished_runs_folder_is_never_replaced(capsys, tiny_models, photos, tmp_path):
    out = tmp_path / "run"
    assert main(_train_args(tiny_models, photos, out)) == 0
    before = _digest(out)
    capsys.readouterr()
    _one_sentence(
        capsys,
        _train_args(tiny_models, photos, out, **{"train.lr": "1e-3"}),
        f"train.output_dir {out} already holds a finished run",
    )
    assert _digest(out) == before  # model, metrics and report untouched


def test_a_stopped_runs_folder_says_resume(capsys, tiny_models, photos, tmp_path):
    out = tmp_path / "run"
    assert main(_train_args(tiny_models, photos, out, **{"train.checkpoint_every": 1})) == 0
    shutil.rmtree(out / "model")  # as if stopped after its last checkpoint
    capsys.readouterr()
    _one_sentence(
        capsys,
        _train_args(tiny_models, photos, out),
        "holds a stopped run (checkpoint-000002); continue it with --resume latest",
    )
    assert main(_train_args(tiny_models, photos, out) + ["--resume", "latest"]) == 0


# ---- class images -----------------------------------------------------------------------------
def test_class_images_of_another_prompt_are_refused(capsys, tiny_models, photos, tmp_path):
    classes = tmp_path / "classes"
    assert (
        main(
            _train_args(
                tiny_models,
                photos,
                tmp_path / "a",
                **{"prior.enabled": True, "prior.class_prompt": "a dog", "prior.class_dir": str(classes)},
            )
        )
        == 0
    )
    capsys.readouterr()
    _one_sentence(
        capsys,
        _train_args(
            tiny_models,
            photos,
            tmp_path / "b",
            **{"prior.enabled": True, "prior.class_prompt": "a cat", "prior.class_dir": str(classes)},
        ),
        f"the class images in {classes} show 'a dog' but prior.class_prompt is 'a cat'",
    )


def _components(tiny_models):
    from dreamtune.config import ModelConfig
    from dreamtune.models.loading import load_components

    return load_components(ModelConfig(pretrained=str(tiny_models["sd1"])))


def _class_images(components, folder: Path, messages: list, count: int = 3) -> list[bytes]:
    from dreamtune.config import PriorConfig
    from dreamtune.training.class_images import ensure_class_images

    prior = PriorConfig(enabled=True, class_prompt="a dog", num_class_images=count, sample_steps=2)
    ensure_class_images(components, prior, folder, 32, 0, show_progress=False, log=messages.append)
    return [(folder / "images" / f"class-{i:05d}.png").read_bytes() for i in range(count)]


def test_a_truncated_shared_cache_entry_is_dropped_and_made_again(tiny_models, tmp_path, monkeypatch):
    from PIL import Image

    monkeypatch.setenv("DREAMTUNE_CACHE", str(tmp_path / "shared"))
    components, messages = _components(tiny_models), []
    first = _class_images(components, tmp_path / "a", messages)
    entries = sorted((tmp_path / "shared").rglob("*.png"))
    assert len(entries) == 3 and len(list((tmp_path / "shared").rglob("*.json"))) == 3  # each with its size and hash
    entries[1].write_bytes(entries[1].read_bytes()[:40])  # truncated
    entries[2].write_bytes(b"garbage")
    again = _class_images(components, tmp_path / "b", messages)
    assert again == first  # the same images: two remade, one copied
    assert any("dropped a damaged entry of the shared class-image cache" in m for m in messages)
    for path in sorted((tmp_path / "b" / "images").glob("*.png")):
        Image.open(path).load()  # every copy decodes
    assert [
        p.read_bytes() for p in sorted((tmp_path / "shared").rglob("*.png"))
    ] == first  # and the cache is whole again


def test_a_damaged_class_image_in_the_runs_folder_is_made_again(tiny_models, tmp_path, monkeypatch):
    monkeypatch.setenv("DREAMTUNE_CACHE", str(tmp_path / "shared"))
    components, messages = _components(tiny_models), []
    first = _class_images(components, tmp_path / "a", messages)
    (tmp_path / "a" / "images" / "class-00001.png").write_bytes(b"truncated")
    assert _class_images(components, tmp_path / "a", messages) == first
    assert any("1 class image(s) in" in m and "are damaged" in m for m in messages)


def test_a_cache_that_cannot_be_written_is_a_note_not_a_failure(tiny_models, tmp_path, monkeypatch):
    (tmp_path / "not-a-folder").write_text("x")
    monkeypatch.setenv("DREAMTUNE_CACHE", str(tmp_path / "not-a-folder"))  # the cache path is a file: nothing can go in
    components, messages = _components(tiny_models), []
    _class_images(components, tmp_path / "a", messages)
    notes = [m for m in messages if "cannot be written" in m]
    assert len(notes) == 1 and "later runs will generate these class images again" in notes[0]


# ---- prepared folders -------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["/etc/hostname", "../../outside.png", "images/../../outside.png"])
def test_a_manifest_that_points_outside_its_prepared_folder(capsys, tiny_models, photos, tmp_path, name):
    prepared = tmp_path / "prepared"
    prepare(photos, prepared, PrepareOptions(resolution=32, caption="a photo of sks dog"))
    records = [json.loads(line) for line in (prepared / "metadata.jsonl").read_text().splitlines()]
    records[0]["file_name"] = name
    (prepared / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    _one_sentence(capsys, _train_args(tiny_models, prepared, tmp_path / "run"), "outside the prepared folder")


# ---- as an ordinary user: folders that may not be read or written --------------------------------
def _as_ordinary_user(argv: list[str], cwd: Path) -> tuple[int, str]:
    """The CLI run as ``nobody`` (see ``_as_nobody``)."""
    import dreamtune.data.prepare  # noqa: F401  (imported before the drop: the interpreter's files may be private to root)
    import dreamtune.sampling.generate  # noqa: F401
    import dreamtune.training.run  # noqa: F401

    return _as_nobody(lambda: main(argv), cwd)


def _as_nobody(work, cwd: Path) -> tuple[int, str]:
    """Run ``work()`` (its return value is the exit status) in a forked child that, when this test
    runs as root, drops to ``nobody`` first: root reads and writes everywhere, so root cannot show
    these refusals. Returns the status and what the child wrote to stderr."""
    errors = Path(tempfile.mkstemp(dir=cwd, suffix=".stderr")[1])
    errors.chmod(0o666)
    pid = os.fork()
    if pid == 0:  # the child: never returns to pytest
        code = 99
        try:
            import torch

            torch.set_num_threads(1)  # OpenMP's pool does not survive a fork; run its loops inline
            with open(errors, "w") as sys.stderr:
                os.chdir(cwd)
                if os.geteuid() == 0:
                    os.setgroups([])
                    os.setgid(NOBODY)
                    os.setuid(NOBODY)
                code = work()
        except BaseException:
            with open(errors, "a") as handle:
                traceback.print_exc(file=handle)
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), errors.read_text()


@pytest.fixture()
def shared_place():
    """A folder an ordinary user can reach (pytest's own tmp folders are private to root)."""
    if os.geteuid() != 0:
        pytest.skip(
            "needs root to act as another user (CI runs as root); test_output_dir_that_is_read_only covers ordinary users"
        )
    place = Path(tempfile.mkdtemp(prefix="dreamtune-perm-"))
    place.chmod(0o755)
    yield place
    shutil.rmtree(place, ignore_errors=True)


def _private(folder: Path) -> Path:
    folder.chmod(0o700)
    return folder


def test_a_photo_folder_the_user_may_not_read(photos, shared_place):
    source = _private(shutil.copytree(photos, shared_place / "photos"))
    code, err = _as_ordinary_user(["prepare", str(source), "--out", str(shared_place / "out" / "p")], shared_place)
    assert code == 2 and "Traceback" not in err and err.count("error:") == 1, err
    assert "permission denied" in err and not (shared_place / "out" / "p").exists()


def test_a_prepared_folder_the_user_may_not_read(tiny_models, photos, shared_place):
    prepared = shared_place / "prepared"
    prepare(photos, prepared, PrepareOptions(resolution=32, caption="a photo of sks dog"))
    _private(prepared)
    model = shutil.copytree(tiny_models["sd1"], shared_place / "model")
    argv = _train_args({"sd1": model}, prepared, shared_place / "run")
    code, err = _as_ordinary_user(argv, shared_place)
    assert code == 2 and "Traceback" not in err and err.count("error:") == 1, err
    assert "permission denied" in err and not (shared_place / "run" / "model").exists()


def test_an_output_folder_the_user_may_not_write(trained_lora, shared_place):
    locked = shared_place / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    lora = shutil.copytree(trained_lora, shared_place / "lora")
    code, err = _as_ordinary_user(
        ["generate", "--trained", str(lora), "--prompt", "a dog", "--out", str(locked / "g")], shared_place
    )
    assert code == 2 and "Traceback" not in err and err.count("error:") == 1, err
    assert f"cannot write --out {locked / 'g'} (permission denied on {locked})" in err and not (locked / "g").exists()


def test_the_ordinary_user_helper_really_drops_rights(shared_place):
    """The helper's own check: as nobody, a root-only folder cannot even be listed."""
    secret = shared_place / "secret"
    secret.mkdir()
    _private(secret)
    code, err = _as_ordinary_user(["prepare", str(secret), "--out", str(shared_place / "o")], shared_place)
    assert code == 2 and "permission denied" in err


def test_a_shared_cache_owned_by_another_user_is_a_note(tiny_models, shared_place, monkeypatch):
    cache = shared_place / "roots-cache"
    cache.mkdir()
    _private(cache)  # root's, 0700: nobody can neither read nor write it
    monkeypatch.setenv("DREAMTUNE_CACHE", str(cache))
    components = _components(
        {"sd1": shutil.copytree(tiny_models["sd1"], shared_place / "model")}
    )  # a place nobody can read
    folder = shared_place / "classes"
    folder.mkdir()
    folder.chmod(0o777)  # the run's own folder: nobody may write there

    def work() -> int:
        messages: list[str] = []
        _class_images(components, folder, messages, count=2)
        print("\n".join(messages), file=sys.stderr)
        return 0

    code, err = _as_nobody(work, shared_place)
    assert code == 0, err
    notes = [line for line in err.splitlines() if line.startswith("note:")]
    assert (
        len(notes) == 1
        and f"the shared class-image cache {cache}" in notes[0]
        and "cannot be read (permission denied)" in notes[0]
    )
    assert len(list((folder / "images").glob("*.png"))) == 2 and not list(cache.iterdir())
