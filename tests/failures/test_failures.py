"""Every mistake a user can make ends in exit status 2 and one sentence, or a documented success;
never a traceback, a silent accept, a half-written file, or a user's file lost (issue 12)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from dreamtune import config
from dreamtune.cli import main
from dreamtune.data.prepare import PrepareOptions, prepare
from dreamtune.errors import UserError
from dreamtune.training.run import train
from dreamtune.training.run_lock import RunLock
from tests.conftest import tiny_overrides

ROOT = Path(__file__).resolve().parents[2]


def _error_lines(stderr: str) -> list[str]:
    """What the user reads as the outcome (progress bars share stderr)."""
    assert "Traceback" not in stderr, stderr[-2000:]
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def _one_sentence(capsys, argv: list[str], fragment: str) -> str:
    """Run the CLI in-process: exit 2, one line on stderr holding ``fragment`` (an unexpected
    exception would propagate and fail the test: that is the traceback a user would see)."""
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert fragment in err, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    return err


def _train_args(tiny_models, photos, out, **extra) -> list[str]:
    return [
        "train",
        *tiny_overrides(tiny_models["sd1"], photos, out, **{"data.instance_prompt": "a photo of sks dog", **extra}),
    ]


@pytest.mark.parametrize(
    "override, fragment",
    [
        ("train.lr=-1e-4", "train.lr is -0.0001; it must be above 0"),
        ("train.warmup_steps=-5", "train.warmup_steps is -5"),
        ("train.weight_decay=-1", "train.weight_decay is -1"),
        ("train.ema_decay=1.5", "train.ema_decay is 1.5"),
        ("data.resolution=0", "data.resolution is 0"),
        ("data.resolution=-64", "data.resolution is -64"),
        ("data.resolution=30", "multiple of 8"),
        ("method.lora.rank=0", "method.lora.rank is 0"),
        ("method.lora.dropout=2", "method.lora.dropout is 2"),
        ("prior.num_class_images=0", "prior.num_class_images is 0"),
        ("train.log_every=0", "train.log_every is 0"),
        ("train.keep_checkpoints=-1", "train.keep_checkpoints is -1"),
        ("train.batch_size=100000", "so a batch would repeat photos"),
    ],
)
def test_out_of_range_values_are_refused(capsys, tiny_models, photos, tmp_path, override, fragment):
    _one_sentence(capsys, _train_args(tiny_models, photos, tmp_path / "run") + [override], fragment)
    assert not (tmp_path / "run" / "model").exists() and not (tmp_path / "run" / "metrics.jsonl").exists()


@pytest.mark.parametrize(
    "resolution, fragment", [("0", "positive multiple of 8"), ("-8", "positive multiple of 8"), ("30", "multiple of 8")]
)
def test_prepare_resolution_is_checked(capsys, photos, tmp_path, resolution, fragment):
    _one_sentence(
        capsys, ["prepare", str(photos), "--out", str(tmp_path / "out"), "--resolution", resolution], fragment
    )


def test_recipe_that_is_not_utf8(capsys, tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_bytes("train:\n  lr: 1e-4  # caf\xe9\n".encode("latin-1"))
    _one_sentence(capsys, ["train", str(recipe)], "is not UTF-8 text")


def test_output_dir_that_is_a_file(capsys, tiny_models, photos, tmp_path):
    (tmp_path / "out").write_text("mine")
    _one_sentence(capsys, _train_args(tiny_models, photos, tmp_path / "out"), "is a file")
    assert (tmp_path / "out").read_text() == "mine"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders; this check needs an ordinary user")
def test_output_dir_that_is_read_only(capsys, tiny_models, photos, tmp_path):
    (tmp_path / "ro").mkdir()
    (tmp_path / "ro").chmod(0o555)
    _one_sentence(capsys, _train_args(tiny_models, photos, tmp_path / "ro" / "run"), "cannot write")


def test_prepared_folder_with_a_damaged_report(capsys, tiny_models, photos, tmp_path):
    prepare(photos, tmp_path / "prepared", PrepareOptions(resolution=32, caption="a photo of sks dog"))
    (tmp_path / "prepared" / "report.json").write_bytes(b"\x00{not json")
    _one_sentence(
        capsys,
        _train_args(tiny_models, tmp_path / "prepared", tmp_path / "run"),
        "report.json is unreadable or damaged",
    )


def _user_folder(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "holiday.jpg").write_bytes(b"my photo")
    return path


@pytest.mark.parametrize(
    "command", ["bench-minidreambench", "prepare", "generate", "train", "demo", "bench-dreambench", "evaluate"]
)
def test_a_users_folder_is_never_replaced_or_emptied(capsys, tiny_models, photos, tmp_path, command):
    folder = _user_folder(tmp_path / "mine")
    argv = {
        "bench-minidreambench": ["bench", "minidreambench", "--out", str(folder)],
        "bench-dreambench": ["bench", "dreambench", "--out", str(folder), "--recipe", "base"],
        "prepare": ["prepare", str(photos), "--out", str(folder)],
        "generate": ["generate", "--model", str(tiny_models["sd1"]), "--prompt", "a dog", "--out", str(folder)],
        "train": _train_args(tiny_models, photos, folder),
        "demo": ["demo", "--out", str(folder)],
        "evaluate": [
            "evaluate",
            "--generated",
            str(tmp_path),
            "--real",
            str(photos),
            "--out",
            str(folder / "holiday.jpg"),
        ],
    }[command]
    _one_sentence(capsys, argv, "already")
    assert (
        sorted(p.name for p in folder.iterdir()) == ["holiday.jpg"]
        and (folder / "holiday.jpg").read_bytes() == b"my photo"
    )


def test_a_folder_in_use_by_a_live_run_is_refused_and_a_stale_lock_taken_over(capsys, tiny_models, photos, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / ".dreamtune").touch()
    holder = RunLock(out).acquire()  # another run holds it
    try:
        _one_sentence(capsys, _train_args(tiny_models, photos, out), "is in use by another dreamtune run")
    finally:
        holder.release()  # its process "died": the lock file stays behind
    assert (out / ".lock").exists()
    assert main(_train_args(tiny_models, photos, out)) == 0


def test_two_runs_at_once_into_one_folder(tiny_models, photos, tmp_path):
    # the first run is long enough to still hold the folder whatever the machine's speed; it is
    # stopped with SIGTERM once the second has been refused (and then exits 128 + 15, checkpointed)
    args = _train_args(tiny_models, photos, tmp_path / "run", **{"train.steps": 100_000})
    first = subprocess.Popen(
        [sys.executable, "-m", "dreamtune.cli", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 120
    while not (tmp_path / "run" / "metrics.jsonl").exists() and time.time() < deadline:
        time.sleep(0.2)
    second = subprocess.run([sys.executable, "-m", "dreamtune.cli", *args], cwd=ROOT, capture_output=True, text=True)
    first.send_signal(signal.SIGTERM)
    first.communicate(timeout=300)
    assert first.returncode == 128 + signal.SIGTERM
    assert (
        second.returncode == 2
        and "in use by another dreamtune run" in second.stderr
        and "Traceback" not in second.stderr
    )


def _checkpointed_run(tiny_models, photos, out, **extra):
    cfg = config.load(
        None,
        tiny_overrides(
            tiny_models["sd1"],
            photos,
            out,
            **{"data.instance_prompt": "a photo of sks dog", "train.steps": 2, "train.checkpoint_every": 1, **extra},
        ),
    )
    train(cfg, show_progress=False, log=lambda *_: None)
    return cfg


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: max(1, path.stat().st_size // 3)])


class Pickled:  # a class weights_only=True refuses to unpickle
    pass


DAMAGE = {
    "truncated weights": lambda c: _truncate(c / "trainable-model.safetensors"),
    "truncated optimizer": lambda c: _truncate(c / "optimizer-model.pt"),
    "pickled optimizer": lambda c: torch.save({"state": Pickled()}, c / "optimizer-model.pt"),
    "missing file": lambda c: (c / "schedule-model.pt").unlink(),
    "malformed state.json": lambda c: (c / "state.json").write_text("{step: two"),
    "truncated rng": lambda c: _truncate(c / "rng.pt"),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_damaged_latest_checkpoint_falls_back_to_the_previous_one(tiny_models, photos, tmp_path, damage):
    cfg = _checkpointed_run(tiny_models, photos, tmp_path / "run")
    DAMAGE[damage](tmp_path / "run" / "checkpoint-000002")
    with pytest.raises(UserError, match=r"cannot resume: .*checkpoint-000002.*resume from .*checkpoint-000001 instead"):
        train(cfg, resume=str(tmp_path / "run" / "checkpoint-000002"), show_progress=False, log=lambda *_: None)
    messages = []
    result = train(cfg, resume="latest", show_progress=False, log=messages.append)
    assert any("checkpoint-000002" in m and "trying the checkpoint before it" in m for m in messages), messages
    assert any("resumed from" in m and "checkpoint-000001" in m for m in messages)
    assert result.state.step == 2


def test_checkpoint_of_another_lora_rank_is_one_sentence(tiny_models, photos, tmp_path):
    _checkpointed_run(tiny_models, photos, tmp_path / "run")
    cfg = config.load(
        None,
        tiny_overrides(
            tiny_models["sd1"],
            photos,
            tmp_path / "run",
            **{"data.instance_prompt": "a photo of sks dog", "train.steps": 3, "method.lora.rank": 8},
        ),
    )
    with pytest.raises(UserError, match="another LoRA rank or model"):
        train(cfg, resume="latest", show_progress=False, log=lambda *_: None)


def _fsize_limit(kilobytes: int):
    def apply():
        import resource

        resource.setrlimit(resource.RLIMIT_FSIZE, (kilobytes * 1024, kilobytes * 1024))

    return apply


@pytest.mark.parametrize(
    "method, kilobytes", [("dreambooth", 96), ("lora", 60)]
)  # lora: torch.save's zip writer is cut mid-file
def test_file_size_limit_while_saving_a_checkpoint(tiny_models, photos, tmp_path, method, kilobytes):
    out = tmp_path / "run"
    args = _train_args(
        tiny_models, photos, out, **{"method.kind": method, "train.steps": 3, "train.checkpoint_every": 1}
    )
    done = subprocess.run(
        [sys.executable, "-m", "dreamtune.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        preexec_fn=_fsize_limit(kilobytes),
    )
    assert done.returncode == 2, done.stderr[-2000:]
    assert "file-size limit" in done.stderr and "needs about" in done.stderr
    assert len(_error_lines(done.stderr)) == 1
    assert not [p.name for p in out.iterdir() if ".tmp-" in p.name]  # no partial file left


def test_disk_full_while_saving_a_checkpoint(tiny_models, photos, tmp_path):
    mount = tmp_path / "small"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=400k", "tmpfs", str(mount)], capture_output=True)
    if made.returncode:
        pytest.skip(
            "cannot mount a small tmpfs here (needs root in a mount namespace); the file-size-limit test covers the write path"
        )
    try:
        args = _train_args(
            tiny_models,
            photos,
            mount / "run",
            **{
                "method.kind": "dreambooth",
                "train.steps": 3,
                "train.checkpoint_every": 1,
                "data.cache_dir": str(tmp_path / "cache"),
            },
        )
        done = subprocess.run([sys.executable, "-m", "dreamtune.cli", *args], cwd=ROOT, capture_output=True, text=True)
        assert done.returncode == 2, done.stderr[-2000:]
        assert ("not enough disk space" in done.stderr or "is full" in done.stderr) and "Traceback" not in done.stderr
        assert not [p.name for p in (mount / "run").iterdir() if ".tmp-" in p.name]
    finally:
        subprocess.run(["umount", str(mount)], capture_output=True)


@pytest.mark.parametrize("signal_number", [signal.SIGTERM, signal.SIGINT])
def test_sigterm_and_sigint_save_a_checkpoint_and_say_how_to_resume(tiny_models, photos, tmp_path, signal_number):
    reference = _checkpointed_run(
        tiny_models, photos, tmp_path / "reference", **{"train.steps": 30, "train.checkpoint_every": 0}
    )
    out = tmp_path / "run"
    args = _train_args(tiny_models, photos, out, **{"train.steps": 30})
    process = subprocess.Popen(
        [sys.executable, "-m", "dreamtune.cli", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 120
    while time.time() < deadline and (
        not (out / "metrics.jsonl").exists() or len((out / "metrics.jsonl").read_text().splitlines()) < 3
    ):
        time.sleep(0.1)
    process.send_signal(signal_number)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 128 + signal_number, err[-2000:]
    paused = [
        line for line in err.splitlines() if line.startswith("paused after step")
    ]  # a pause the user asked for, not an error
    assert len(paused) == 1 and "--resume latest" in paused[0] and _error_lines(err) == []
    saved = sorted(out.glob("checkpoint-*"))
    assert len(saved) == 1 and not [p for p in out.iterdir() if ".tmp-" in p.name]
    assert main(args + ["--resume", "latest"]) == 0
    a = load_file(str(tmp_path / "reference" / "model" / "pytorch_lora_weights.safetensors"))
    b = load_file(str(out / "model" / "pytorch_lora_weights.safetensors"))
    assert (
        all(torch.equal(a[k], b[k]) for k in a) and reference.train.steps == 30
    )  # bit-identical to the uninterrupted run


def test_stale_temp_folders_of_a_killed_run_are_swept(tiny_models, photos, tmp_path):
    out = tmp_path / "run"
    _checkpointed_run(tiny_models, photos, out)
    (out / ".checkpoint-000003.tmp-abc123").mkdir()
    (out / ".checkpoint-000003.tmp-abc123" / "trainable-model.safetensors").write_bytes(b"half")
    (out / ".model.tmp-xyz").mkdir()
    messages = []
    train(
        config.load(
            None,
            tiny_overrides(
                tiny_models["sd1"], photos, out, **{"data.instance_prompt": "a photo of sks dog", "train.steps": 2}
            ),
        ),
        resume="latest",
        show_progress=False,
        log=messages.append,
    )
    assert not [p for p in out.iterdir() if ".tmp-" in p.name]
    assert any("removed 2 unfinished temp file(s)" in m for m in messages)


def test_nan_names_the_step_and_does_not_suggest_bf16_to_a_bf16_run(tiny_models, photos, tmp_path):
    from dreamtune.errors import TrainingDiverged

    cfg = config.load(
        None,
        tiny_overrides(
            tiny_models["sd1"],
            photos,
            tmp_path / "run",
            **{
                "train.steps": 4,
                "train.lr": 1e30,
                "train.max_grad_norm": 0,
                "method.kind": "dreambooth",
                "train.grad_accum": 2,
                "data.instance_prompt": "a photo of sks dog",
                "train.weight_decay": 0,
                "train.mixed_precision": "bf16",
                "train.memory": "manual",  # bf16 compute itself, also on CPUs without bf16 instructions
            },
        ),
    )
    with pytest.raises(TrainingDiverged) as error:
        train(cfg, show_progress=False, log=lambda *_: None)
    message = str(error.value)
    assert "at step " in message and "micro-step" not in message and "bf16" not in message


def test_html_reports_escape_what_users_type(tiny_models, photos, tmp_path):
    out = tmp_path / "<img src=x onerror=alert(1)>"
    cfg = config.load(
        None,
        tiny_overrides(
            tiny_models["sd1"],
            photos,
            out,
            **{
                "data.instance_prompt": "a photo of sks <script>alert(1)</script>",
                "prior.enabled": True,
                "prior.class_prompt": "a photo of <script>alert(2)</script>",
            },
        ),
    )
    train(cfg, show_progress=False, log=lambda *_: None)
    page = (out / "report.html").read_text()
    assert "<script>" not in page and "<img src=x" not in page


@pytest.mark.parametrize("subject", ["../escape", "/etc", "a/b", ".."])
def test_dreambench_subject_names_cannot_write_outside_out(capsys, tmp_path, subject):
    from dreamtune.evaluation.dreambench import write_prompts_file

    data = tmp_path / "bench"
    data.mkdir()
    write_prompts_file(data / "prompts_and_classes.txt", {subject: "dog"}, ["a {0} {1}"], ["a {0} {1}"])
    _one_sentence(
        capsys,
        ["bench", "dreambench", "--data", str(data), "--out", str(tmp_path / "out"), "--recipe", "base"],
        "not a plain folder name",
    )
    assert not (tmp_path / "escape").exists()


def _descendants(pid: int) -> list[int]:
    found = []
    for child in subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split():
        found += [int(child), *_descendants(int(child))]
    return found


@pytest.mark.parametrize("victim", ["main", "other"])
def test_killing_one_of_two_processes_ends_the_other_and_resume_works(tiny_models, photos, tmp_path, victim):
    launcher = Path(sys.executable).with_name("accelerate")
    out = tmp_path / "run"
    overrides = tiny_overrides(
        tiny_models["sd1"],
        photos,
        out,
        **{"data.instance_prompt": "a photo of sks dog", "train.steps": 60, "train.checkpoint_every": 2},
    )
    command = [
        str(launcher),
        "launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--main_process_port",
        "29534" if victim == "main" else "29535",
        "-m",
        "dreamtune.cli",
        "train",
        *overrides,
    ]
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT, start_new_session=True
    )
    deadline = time.time() + 180
    while time.time() < deadline and len(list(out.glob("checkpoint-*"))) < 1:
        time.sleep(0.2)
    workers = [
        pid
        for pid in _descendants(process.pid)
        if "dreamtune.cli" in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        and "launch" not in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    ]
    assert len(workers) == 2, workers
    os.kill(sorted(workers)[0 if victim == "main" else 1], signal.SIGKILL)
    killed_at = time.time()
    _, err = process.communicate(timeout=120)
    print(
        f"survivor ended {time.time() - killed_at:.1f} s after the kill; stderr tail: {err.strip().splitlines()[-1][:200]}"
    )
    assert time.time() - killed_at < 30, "the surviving process kept running"
    assert process.returncode != 0 and all(not Path(f"/proc/{pid}").exists() for pid in workers)
    resumed = subprocess.run(
        command + ["--resume", "latest"], capture_output=True, text=True, env=env, cwd=ROOT, timeout=600
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resumed from" in resumed.stdout and (out / "model" / "pytorch_lora_weights.safetensors").is_file()


def test_an_earlier_versions_demo_folder_is_recognised_as_dreamtunes(tmp_path):
    from dreamtune.atomic import claim_output_dir

    old = tmp_path / "demo"
    (old / "run").mkdir(parents=True)
    (old / "run" / "config.yaml").write_text("model: {}")
    (old / "run" / "metrics.jsonl").write_text("{}\n")
    (old / "metrics.json").write_text("{}")
    assert claim_output_dir(old) == old and (old / ".dreamtune").exists()


def test_a_users_folder_with_common_file_names_is_not_mistaken_for_dreamtunes(capsys, photos, tmp_path):
    folder = _user_folder(tmp_path / "project")
    (folder / "config.yaml").write_text("mine: true")
    (folder / "sub").mkdir()
    (folder / "sub" / "report.json").write_text("{}")
    _one_sentence(capsys, ["prepare", str(photos), "--out", str(folder)], "already")
    assert (folder / "config.yaml").read_text() == "mine: true" and (folder / "holiday.jpg").exists()
