"""The web UI's own logic (dreamtune/ui): form <-> config overrides, run discovery, log tailing,
what it refuses to touch; and its HTTP gate, through a real server on a free port."""

import base64
import json
import os
import socket
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from dreamtune import config
from dreamtune.config_help import field_comments, help_text
from dreamtune.errors import UserError
from dreamtune.recipes import find_recipe
from dreamtune.ui import form, runs
from dreamtune.ui.jobs import JobManager
from dreamtune.ui.safety import TOKEN_HEADER, Access, Limits, inside, safe_name

RECIPE = find_recipe("miniature-lora")


@dataclass(frozen=True)
class _Example:
    size: int = 3  # how big it is
    name: str = "x"
    other: float = 1.0  # a: colon, "quotes" and # inside


def test_field_comments_read_the_trailing_comment_of_each_field():
    assert field_comments(_Example) == {"size": "how big it is", "other": 'a: colon, "quotes" and # inside'}


def test_every_form_field_has_help_from_config_py_and_the_recipes_value():
    fields = form.form_fields(RECIPE)
    recipe = config.load(RECIPE)
    assert [f.key for f in fields] == list(form.FORM_KEYS)  # a LoRA recipe: every setting
    assert all(f.label and f.label != f.key for f in fields)  # labelled in words
    only_token = [f.key for f in form.form_fields(find_recipe("miniature-textual-inversion"))]
    assert "train.lr" in only_token and not [k for k in only_token if k.startswith("method.lora.")]
    for field in fields:
        assert field.help, f"{field.key} has no help comment in config.py"
        assert field.help == help_text(config.Config, field.key)
    by_key = {f.key: f for f in fields}
    assert by_key["train.steps"].value == recipe.train.steps and by_key["train.steps"].kind == "int"
    assert by_key["train.mixed_precision"].kind == "choice" and "bf16" in by_key["train.mixed_precision"].choices
    assert by_key["prior.enabled"].kind == "bool" and by_key["prior.enabled"].value is True


def test_form_values_become_overrides_only_where_they_differ_and_load_back():
    overrides = form.overrides_from_form(
        RECIPE,
        {
            "train.steps": "20",
            "train.lr": "0.001",
            "prior.enabled": False,
            "train.mixed_precision": "no",
            "method.lora.rank": "16",
        },
    )
    assert overrides == ["train.steps=20", "prior.enabled=false", 'train.mixed_precision="no"']
    loaded = form.check(RECIPE, overrides)
    assert (loaded.train.steps, loaded.prior.enabled, loaded.train.mixed_precision, loaded.train.lr) == (
        20,
        False,
        "no",
        1e-3,
    )


@pytest.mark.parametrize(
    "values, words",
    [
        ({"train.steps": "many"}, "train.steps got 'many'; it must be a whole number"),
        ({"train.lr": "fast"}, "train.lr got 'fast'; it must be a number"),
        ({"train.mixed_precision": "fp8"}, "choose one of"),
        ({"train.stepz": "3"}, "the form has no setting 'train.stepz'"),
    ],
)
def test_a_bad_form_value_is_one_sentence(values, words):
    with pytest.raises(UserError, match=words):
        form.overrides_from_form(RECIPE, values)


def test_the_cli_checks_catch_what_the_form_cannot():
    overrides = form.overrides_from_form(RECIPE, {"train.lr": "-1"})
    with pytest.raises(UserError, match="train.lr is -1.0; it must be above 0"):
        form.check(RECIPE, overrides)


def _metrics(folder: Path, steps: int, per_step: float = 0.5) -> None:
    lines = [
        json.dumps({"step": s, "seconds": s * per_step, "loss": 1.0 / s, "lr/model": 1e-3}) for s in range(1, steps + 1)
    ]
    (folder / "metrics.jsonl").write_text("\n".join(lines) + '\n{"step": 99, "los')  # a line being written


def test_run_discovery_reads_status_progress_and_curves_from_the_folder(tmp_path):
    (tmp_path / "config.yaml").write_text("")
    finished, stopped, running, incomplete = (tmp_path / n for n in ("finished", "stopped", "running", "incomplete"))
    for folder in (finished, stopped, running, incomplete):
        folder.mkdir()
        (folder / "config.yaml").write_text("train:\n  steps: 100\n")
        _metrics(folder, 40)
    (finished / "model").mkdir()
    (finished / "model" / "dreamtune.json").write_text("{}")
    (finished / "model" / "pytorch_lora_weights.safetensors").write_bytes(b"")
    (stopped / "checkpoint-000040").mkdir()
    (stopped / "checkpoint-000040" / "state.json").write_text('{"step": 40}')
    (running / ".lock").write_text(f"pid {os.getpid()} on {socket.gethostname()}")
    (incomplete / ".lock").write_text("pid 999999999 on elsewhere")
    (tmp_path / "photos").mkdir()  # not a run
    found = {r["name"]: r["status"] for r in runs.discover(tmp_path)}
    assert found == {"finished": "finished", "stopped": "stopped", "running": "running", "incomplete": "incomplete"}
    info = runs.describe(running, tmp_path)
    assert (info["step"], info["total"]) == (40, 100)
    assert info["eta_s"] == pytest.approx(60 * 0.5)  # 60 steps left at 0.5 s each
    assert list(info["curves"]) == ["loss"] and info["curves"]["loss"][0] == (1, 1.0)
    assert runs.describe(finished, tmp_path)["files"]["weights"] == ["finished/model/pytorch_lora_weights.safetensors"]


def test_the_run_page_shows_the_memory_the_run_holds_now_and_at_its_peak(tmp_path):
    """metrics.jsonl's memory_gib (logged every step) becomes the live line and a curve; older runs have none."""
    from dreamtune.ui.machine import machine_load

    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.yaml").write_text("train:\n  steps: 10\n")
    held = [1.5, 2.25, 2.0]
    lines = [json.dumps({"step": s, "loss": 0.1, "memory_gib": g}) for s, g in enumerate(held, 1)]
    (tmp_path / "run" / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    info = runs.describe(tmp_path / "run", tmp_path)
    assert info["held"] == {"now_gib": 2.0, "peak_gib": 2.25}
    assert info["curves"]["memory_gib"] == [(1, 1.5), (2, 2.25), (3, 2.0)]
    _metrics(tmp_path / "run", 3)  # a run from before memory was logged
    assert runs.describe(tmp_path / "run", tmp_path)["held"] is None
    load = machine_load()
    assert 0 < load["memory_used_gib"] <= load["memory_total_gib"] and 0 <= load["cpu_percent"] <= 100


def test_gpus_are_read_from_the_drivers_nvidia_smi_when_there_is_one(tmp_path, monkeypatch):
    """No GPU here: a stand-in nvidia-smi answers as the driver's does for this query (CSV, no units, [N/A])."""
    from dreamtune.ui import machine

    monkeypatch.setattr(machine, "_last_gpu_look", (-machine.GPU_LOOK_EVERY, []))
    monkeypatch.setenv("PATH", str(tmp_path))
    assert machine.gpu_load() == []  # no nvidia-smi: no GPU line, no error
    tool = tmp_path / "nvidia-smi"
    tool.write_text(
        '#!/bin/sh\necho "$*" >> ' + str(tmp_path / "asked") + "\n"
        "echo '0, NVIDIA H100 80GB HBM3, 34816, 81559, 97, 61'\n"
        "echo '1, NVIDIA H100 80GB HBM3, 0, 81559, [N/A], [N/A]'\n"
        "echo 'garbled'\n"
    )
    tool.chmod(0o755)
    monkeypatch.setattr(machine, "_last_gpu_look", (-machine.GPU_LOOK_EVERY, []))
    gpus = machine.gpu_load()
    assert gpus[0] == {
        "index": 0,
        "name": "NVIDIA H100 80GB HBM3",
        "memory_used_gib": 34.0,
        "memory_total_gib": 79.6,
        "utilization_percent": 97.0,
        "temperature_c": 61.0,
    }
    assert (gpus[1]["utilization_percent"], gpus[1]["temperature_c"]) == (None, None) and len(gpus) == 2
    assert machine.gpu_load() == gpus and len((tmp_path / "asked").read_text().splitlines()) == 1  # one look per 2 s
    assert "--query-gpu=" + machine.GPU_QUERY in (tmp_path / "asked").read_text()


def test_long_curves_are_thinned_but_keep_the_last_point():
    records = [{"step": s, "loss": float(s)} for s in range(1, 5001)]
    points = runs.curves(records)["loss"]
    assert len(points) <= runs.MAX_POINTS + 1 and points[-1] == (5000, 5000.0) and points[0] == (1, 1.0)


def test_jobs_run_the_cli_and_report_its_one_sentence_error(tmp_path):
    jobs = JobManager(tmp_path)
    ok = jobs.run("recipes", ["recipes"], tmp_path)
    assert ok.exit_code == 0 and "miniature-lora" in jobs.output(ok.id) and jobs.error(ok.id) == ""
    bad = jobs.run("train", ["train", "train.stepz=3"], tmp_path)
    assert bad.exit_code == 2
    assert jobs.error(bad.id).startswith("unknown config key 'train.stepz'") or "train.stepz" in jobs.error(bad.id)
    assert jobs.latest_for(tmp_path).id == bad.id
    assert [j.id for j in JobManager(tmp_path).jobs()] == [ok.id, bad.id]  # a restarted UI still knows them


def test_job_output_resolves_progress_bars(tmp_path):
    jobs = JobManager(tmp_path)
    jobs.log_path("x").write_text(
        "start\ntraining:  10%| | 2/20 [00:01<00:09, 2.0step/s]\rtraining:  15%| | 3/20 [00:02<00:08, 2.0step/s]\n"
    )
    assert jobs.output("x").splitlines() == ["start", "training:  15%| | 3/20 [00:02<00:08, 2.0step/s]"]
    assert jobs.progress("x") == {"label": "training", "done": 3, "total": 20, "eta_s": 8}
    jobs.log_path("y").write_text(
        "class images:  0%|  | 0/40 [00:00<?, ?img/s]\rclass images:  60%|##  | 24/40 [01:10<1:02:07, 2.1s/img]"
    )
    assert jobs.progress("y") == {"label": "class images", "done": 24, "total": 40, "eta_s": 3727}


def test_names_paths_and_uploads_the_ui_refuses(tmp_path):
    assert safe_name("../../etc/passwd") == "etc-passwd" and safe_name("my dog (2)") == "my-dog-2"
    with pytest.raises(UserError, match="has no letters or digits"):
        safe_name("../..")
    (tmp_path / "runs").mkdir()
    (tmp_path / "secret.txt").write_text("x")
    (tmp_path / "runs" / "link").symlink_to(tmp_path / "secret.txt")
    for bad in ("../secret.txt", "link", "/../secret.txt", ".ui-jobs/x.log"):
        with pytest.raises(UserError):
            inside(tmp_path / "runs", bad)
    limits = Limits(max_file_mb=1, max_files=2)
    assert limits.check_upload("dog 1.JPG", 100, 0) == "dog-1.JPG"
    with pytest.raises(UserError, match="is not an image this UI accepts"):
        limits.check_upload("run.sh", 10, 0)
    with pytest.raises(UserError, match="over the 1 MB limit"):
        limits.check_upload("big.png", 2 * 2**20, 0)
    with pytest.raises(UserError, match="already holds 2 files, the limit"):
        limits.check_upload("c.png", 10, 2)


def test_access_rules_for_hosts_logins_and_local_paths(tmp_path):
    with pytest.raises(UserError, match="add --auth user:pass, or leave --host at 127.0.0.1"):
        Access("0.0.0.0", 7860)
    remote = Access("0.0.0.0", 7860, "ann:secret")
    assert remote.authorized("Basic " + base64.b64encode(b"ann:secret").decode())
    assert not remote.authorized("Basic " + base64.b64encode(b"ann:wrong").decode()) and not remote.authorized(None)
    with pytest.raises(UserError, match="start it on 127.0.0.1 to use local paths"):
        remote.local_path(str(tmp_path), "the photo folder")
    local = Access("127.0.0.1", 7860)
    assert local.authorized(None) and local.local_path(str(tmp_path), "x") == tmp_path
    assert local.host_allowed("127.0.0.1:7860") and local.host_allowed("localhost:7860")
    assert not local.host_allowed("evil.example:7860")  # DNS rebinding


@pytest.fixture()
def server(tmp_path):
    from dreamtune.ui.server import serve_in_thread

    running = serve_in_thread(tmp_path / "runs", limits=Limits(max_file_mb=0.01, max_files=3), token=TOKEN)
    yield f"http://127.0.0.1:{running.server_address[1]}", tmp_path / "runs"
    running.shutdown()
    running.server_close()


TOKEN = "this-launchs-token"


def _call(url, body=None, headers=None, method=None, token=TOKEN):
    """One request to the UI, carrying this launch's token (as the page does, in its cookie)."""
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url, data=data, headers={**({TOKEN_HEADER: token} if token else {}), **(headers or {})}, method=method
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def test_the_server_gate(server, tmp_path):
    base, root = server
    status, body = _call(base + "/api/info")
    assert status == 200 and "miniature-lora" in json.loads(body)["recipes"] and json.loads(body)["local"] is True
    assert _call(base + "/")[0] == 200 and b"dreamtune" in _call(base + "/static/app.js")[1]
    assert _call(base + "/favicon.ico")[1].startswith(b"<svg")  # no 404 in the browser's console
    status, body = _call(base + "/api/stop", {"run": "x"})  # no X-Dreamtune header: a cross-site form
    assert status == 403 and b"X-Dreamtune" in body
    status, body = _call(base + "/files/..%2F..%2Fetc%2Fpasswd")
    assert status == 400 and b"outside the runs folder" in body
    status, body = _call(base + "/api/upload?set=s", b"x" * 20_000, {"X-Dreamtune": "1", "X-File-Name": "big.png"})
    assert status == 400 and json.loads(body)["error"].startswith("big.png is 0.0 MB, over the 0.01 MB limit")
    status, body = _call(base + "/api/upload?set=s", b"png", {"X-Dreamtune": "1", "X-File-Name": "a.png"})
    assert status == 200 and (root / "uploads" / "s" / "a.png").read_bytes() == b"png"
    status, body = _call(base + "/api/upload?set=s", b"png2", {"X-Dreamtune": "1", "X-File-Name": "a.png"})
    assert (
        json.loads(body)["saved"] == "a-1.png" and (root / "uploads" / "s" / "a.png").read_bytes() == b"png"
    )  # never overwritten
    status, body = _call(
        base + "/api/train", {"name": "r", "photos": "none", "class_noun": "dog"}, {"X-Dreamtune": "1"}
    )
    assert (
        status == 400
        and json.loads(body)["error"] == "photo set none is not prepared; prepare photos on the Photos page first."
    )
    status, body = _call(base + "/api/run?name=../../x")
    assert status == 400 and b"there is no run named" in body
    # the first Start with no photo set chosen says so, not "the photo set name '' has no letters" (issue 37)
    status, body = _call(base + "/api/train", {"name": "r", "photos": "", "class_noun": "dog"}, {"X-Dreamtune": "1"})
    assert status == 400 and json.loads(body)["error"].startswith("no photo set is chosen")


def test_the_base_model_box_shows_the_recipes_model_and_an_empty_box_keeps_it(server, tmp_path):
    """Picking lora-sdxl once trained the miniature with SDXL's settings (the box said 'miniature'
    whatever the recipe): the box now shows each recipe's own model, and an empty box keeps it."""
    from dreamtune.ui.actions import Actions

    base, root = server
    models = json.loads(_call(base + "/api/info")[1])["recipe_models"]
    assert models["miniature-lora"] == "miniature"
    assert models["lora-sdxl"] == config.load(find_recipe("lora-sdxl")).model.pretrained
    actions = Actions(root, Access("127.0.0.1", 0))
    assert actions.base_model("", find_recipe("lora-sdxl")) == models["lora-sdxl"]
    assert actions.base_model("", find_recipe("miniature-lora")) == "miniature"
    assert actions.base_model("miniature", find_recipe("lora-sdxl")) == "miniature"  # what the user typed wins


def test_a_few_step_run_offers_its_own_sampling_and_the_base_side_keeps_the_usual(tmp_path):
    """The run list carries a finished model's sampling (the Generate form takes it); the base model's job
    drops the few-step settings so it is sampled as it usually is."""
    from dreamtune.ui.actions import Actions

    actions = Actions(tmp_path / "runs", Access("127.0.0.1", 0))
    for name, sampling in (
        ("quick", {"steps": 4, "scheduler": "ddim_trailing", "guidance_scale": 1.0}),
        ("plain", None),
    ):
        folder = actions.root / name
        (folder / "model").mkdir(parents=True)
        (folder / "config.yaml").write_text("model:\n  pretrained: base-model\ntrain:\n  steps: 10\n")
        (folder / "model" / "dreamtune.json").write_text(json.dumps({"kind": "lora", "sampling": sampling}))
    listed = {r["name"]: r["sampling"] for r in runs.discover(actions.root)}
    assert listed == {"quick": {"steps": 4, "scheduler": "ddim_trailing", "guidance_scale": 1.0}, "plain": None}
    common = ["--subject", "sks", "--steps", "4", "--guidance-scale", "1.0", "--seed", "0"]
    quick = actions._base_arguments(actions.root / "quick", common, tmp_path / "g")
    plain = actions._base_arguments(actions.root / "plain", common, tmp_path / "g")
    assert "--steps" not in quick and "--guidance-scale" not in quick and "--seed" in quick
    assert plain[plain.index("--steps") + 1] == "4"


def test_a_users_folder_is_never_taken_as_the_runs_folder(tmp_path):
    from dreamtune.ui.server import make_server

    (tmp_path / "holiday.jpg").write_bytes(b"x")
    with pytest.raises(UserError, match="already holds files that dreamtune did not write"):
        make_server(tmp_path, port=0)


def test_login_required_when_auth_is_set(tmp_path):
    from dreamtune.ui.server import serve_in_thread

    running = serve_in_thread(tmp_path / "runs", auth="ann:secret", token=TOKEN)
    try:
        url = f"http://127.0.0.1:{running.server_address[1]}/api/info"
        assert _call(url)[0] == 401
        good = "Basic " + base64.b64encode(b"ann:secret").decode()
        assert _call(url, headers={"Authorization": good})[0] == 200
    finally:
        running.shutdown()
        running.server_close()


def test_the_cli_refuses_an_open_host_without_a_login(tmp_path):
    import subprocess

    result = subprocess.run(
        [sys.executable, "-m", "dreamtune.cli", "ui", "--host", "0.0.0.0", "--runs", str(tmp_path / "r")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("error: --host 0.0.0.0 lets other machines reach the UI")
    assert not (tmp_path / "r").exists()  # refused before anything was made


def test_every_wrong_field_of_a_start_reports_on_its_own(server):
    """Issue 37: one sentence no longer hides the others — a Start with an empty name, no photo set, no
    class noun and a bad learning rate names all four, each with its field."""
    base, _ = server
    request = {"name": "", "photos": "", "class_noun": "", "settings": {"train.lr": "-1"}}
    status, body = _call(base + "/api/train", request, {"X-Dreamtune": "1"})
    error = json.loads(body)["error"]
    assert status == 400
    for words in ("run name", "no photo set is chosen", "the class noun is empty", "train.lr is -1.0"):
        assert words in error, (words, error)
    fields = json.loads(body)["fields"]  # each sentence keyed by its field, for the page to show beside it
    assert set(fields) == {"name", "photos", "class_noun", "train.lr"} and "train.lr is -1.0" in fields["train.lr"]


def test_a_miniature_run_started_from_the_ui_samples_while_it_trains(tmp_path):
    """Issue 37: a default run showed no samples while it trained (validate_every 0); on the miniature the
    UI asks for a validation sheet every sixth of the run unless the form says otherwise."""
    from dreamtune.ui.actions import Actions

    actions = Actions(tmp_path / "runs", Access("127.0.0.1", 0))
    try:
        actions.sample_photos("cat", "cat3")
        actions.prepare("cat", "a sks cat", 64)
        started = actions.train({"name": "r", "photos": "cat", "class_noun": "cat", "settings": {"train.steps": "60"}})
        argv = actions.jobs.get(started["job"]).argv
        assert "train.validate_every=10" in argv and any(a.startswith("train.validation_prompts=") for a in argv)
        again = actions.train(
            {"name": "r2", "photos": "cat", "class_noun": "cat", "settings": {"train.validate_every": "25"}}
        )
        assert not any(a.startswith("train.validate_every=10") for a in actions.jobs.get(again["job"]).argv)
    finally:
        actions.jobs.stop_all()


def test_a_run_that_ended_with_an_error_shows_as_failed_not_incomplete(tmp_path):
    """Issue 37: a run that crashed before its first checkpoint read as "incomplete"; its job's exit
    status tells a failure from a pause (SIGTERM / Ctrl-C) and from a finished run."""
    import time

    from dreamtune.ui.actions import Actions

    actions = Actions(tmp_path / "runs", Access("127.0.0.1", 0))
    empty = tmp_path / "no-photos"
    empty.mkdir()
    folder = actions.root / "broken"
    job = actions.jobs.start(
        "train", ["train", "miniature-lora", f"data.instance_dir={empty}", f"train.output_dir={folder}"], folder
    )
    deadline = time.time() + 120
    while actions.jobs.get(job.id).running and time.time() < deadline:
        time.sleep(0.2)
    info = actions.run("broken")
    assert actions.jobs.get(job.id).exit_code == 2 and info["status"] == "failed" and info["error"]


def _events(url: str, limit: int = 10, timeout: float = 20) -> list[tuple[str, dict]]:
    """(event, data) pairs of a server-sent event stream, read until it ends."""
    request = urllib.request.Request(url, headers={TOKEN_HEADER: TOKEN})
    found, kind = [], "message"
    with urllib.request.urlopen(request, timeout=timeout) as response:
        assert response.headers["Content-Type"].startswith("text/event-stream")
        for raw in response:
            line = raw.decode().rstrip("\n")
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: "):
                found.append((kind, json.loads(line[6:])))
                kind = "message"
                if len(found) >= limit:
                    break
    return found


def test_a_runs_state_streams_as_server_sent_events_until_it_ends(server):
    base, root = server
    folder = root / "done"
    folder.mkdir()
    (folder / "config.yaml").write_text("train:\n  steps: 40\n")
    _metrics(folder, 40)
    (folder / "model").mkdir()
    (folder / "model" / "dreamtune.json").write_text("{}")
    events = _events(base + "/api/events?run=done")
    assert [kind for kind, _ in events] == ["message", "end"]  # the state once, then the stream ends with the run
    assert events[0][1]["status"] == "finished" and events[0][1]["step"] == 40
    failure = _events(base + "/api/events?run=nothing-here")
    assert failure[0][0] == "failure" and "there is no run named nothing-here" in failure[0][1]["error"]
    assert _call(base + "/api/events?run=done", token="guess")[0] == 403  # the gate holds for streams too


def test_uploads_show_as_a_list_with_remove_and_caption_files_are_not_counted_as_photos(server):
    base, root = server
    post = {"X-Dreamtune": "1"}
    assert json.loads(_call(base + "/api/upload?set=s", b"png", {**post, "X-File-Name": "a.png"})[1])["count"] == 1
    answer = json.loads(_call(base + "/api/upload?set=s", b"a sks dog", {**post, "X-File-Name": "a.txt"})[1])
    assert (answer["count"], answer["captions"]) == (1, 1)  # a caption file is not a photo (issue 37)
    answer = json.loads(_call(base + "/api/upload?set=s", b"png", {**post, "X-File-Name": "a.mask.png"})[1])
    assert (answer["count"], answer["masks"]) == (1, 1)  # nor is a subject mask
    _call(base + "/api/remove_upload", {"set": "s", "file": "a.mask.png"}, post)
    listed = json.loads(_call(base + "/api/uploads?set=s")[1])["files"]
    assert [(f["name"], f["photo"], f["path"]) for f in listed] == [
        ("a.png", True, "uploads/s/a.png"),
        ("a.txt", False, "uploads/s/a.txt"),
    ]
    status, body = _call(base + "/api/remove_upload", {"set": "s", "file": "a.png"}, post)
    assert status == 200 and [f["name"] for f in json.loads(body)["files"]] == ["a.txt"]
    assert not (root / "uploads" / "s" / "a.png").exists()
    for name in ("a.png", "../../../etc/passwd", ".dreamtune"):
        status, body = _call(base + "/api/remove_upload", {"set": "s", "file": name}, post)
        assert status == 400, name
    assert (root / ".dreamtune").exists() and (root / "uploads" / "s" / "a.txt").exists()
    assert "GiB" in json.loads(_call(base + "/api/info")[1])["device"]  # what trains here, shown in the header
