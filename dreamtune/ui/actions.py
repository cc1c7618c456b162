"""What each button does, as plain functions of the request's JSON (the HTTP layer in server.py
only routes). Work that trains or renders runs as a CLI subprocess (jobs.py)."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

from dreamtune import config
from dreamtune.atomic import claim_output_dir
from dreamtune.errors import UserError
from dreamtune.methods import method_of
from dreamtune.ui import form, runs
from dreamtune.ui.jobs import JobManager
from dreamtune.ui.machine import machine_load
from dreamtune.ui.photo_actions import PHOTOS, UPLOADS, PhotoActions
from dreamtune.ui.safety import HUB_ID, Access, Limits, confine_config, safe_name, ui_recipe

MEMORY_LINE = re.compile(r"memory after step \d+: ([^\r\n]+)")
MINIATURE = "miniature"


class FieldErrors(UserError):
    """Every wrong field of a form at once: one sentence each, keyed by the field (a request field such as
    ``name`` or a setting's config key), so the page can show each beside its field."""

    def __init__(self, fields: dict[str, str]):
        super().__init__(" ".join(fields.values()))
        self.fields = fields


class Actions(PhotoActions):
    def __init__(self, root: Path, access: Access, limits: Limits | None = None):
        self.root = Path(root).resolve()
        self.access, self.limits = access, limits or Limits()
        for folder in (self.root, self.root / UPLOADS, self.root / PHOTOS):
            claim_output_dir(folder, "--runs" if folder == self.root else f"--runs' {folder.name} folder")
        self.jobs = JobManager(self.root, self.limits.max_device_jobs)

    # ---- training -----------------------------------------------------------------------------
    def recipe_model(self, recipe: str) -> str:
        """The base model a recipe trains, as the base-model box shows it (``miniature`` for the packaged one)."""
        return _model_label(ui_recipe(self.root, recipe))

    def base_model(self, text: str, recipe: Path) -> str:
        """The model to train: the box's text, or the recipe's own model when the box is empty (never the
        miniature in place of a recipe's model the user did not change)."""
        text = (text or "").strip() or _model_label(recipe)
        if text == MINIATURE:
            return MINIATURE
        if HUB_ID.match(text) and not Path(text).exists():
            return text
        return str(self.access.local_path(text, "the base model"))

    def train(self, request: dict) -> dict:
        """Check the settings as the CLI will, then start ``dreamtune train`` into <runs>/<name>. Every
        check reports on its own: one sentence per field that is wrong, all of them at once."""
        found: dict[str, str] = {}  # the form field each sentence belongs to -> the sentence

        def checked(field, check):
            try:
                return check()
            except UserError as error:
                found[field(str(error)) if callable(field) else field] = str(error)
                return None

        name = checked("name", lambda: safe_name(request.get("name", ""), "run name"))
        recipe = ui_recipe(self.root, request.get("recipe") or "miniature-lora")
        photos = checked("photos", lambda: self._photo_set_for_training(request.get("photos") or ""))
        identifier = (request.get("identifier") or "sks").strip()
        noun = (request.get("class_noun") or "").strip()
        if not noun:
            found["class_noun"] = "the class noun is empty; say what the subject is, e.g. dog or backpack."
        output = self.root / name if name else None
        if output is not None and output.exists():
            found["name"] = f"a run named {name} already exists; pick another name, or resume it on the Runs page."
        settings = checked(form.key_named, lambda: form.overrides_from_form(recipe, request.get("settings", {})))
        chosen = checked(form.key_named, lambda: form.check(recipe, settings)) if settings is not None else None
        if found:
            raise FieldErrors(found)
        subject_prompt = f"a {method_of(chosen.method).identifier(chosen.method, identifier)} {noun}"
        model = self.base_model(request.get("base_model", ""), recipe)
        fixed = [
            f"model.pretrained={json.dumps(model)}",
            f"data.instance_dir={json.dumps(str(photos))}",
            f"data.instance_prompt={json.dumps(subject_prompt)}",
            f"prior.class_prompt={json.dumps(f'a {noun}')}",
            f"train.output_dir={json.dumps(str(output))}",
        ]
        every = chosen.train.validate_every or (max(10, chosen.train.steps // 6) if model == MINIATURE else 0)
        if every != chosen.train.validate_every:  # samples while it trains, by default on the miniature (cheap there)
            fixed.append(f"train.validate_every={every}")
        if every and not chosen.train.validation_prompts:
            fixed.append(
                "train.validation_prompts="
                + json.dumps([f"{subject_prompt} on the beach", f"{subject_prompt} in the snow"])
            )
        if chosen.monitor.every:
            fixed.append(f"monitor.identifier={json.dumps(subject_prompt.split()[1])}")
        overrides = [*settings, *fixed]
        confine_config(form.check(recipe, overrides), self.root, self.access)  # the CLI's checks, then the UI's own
        claim_output_dir(output, "run folder")
        job = self.jobs.start("train", ["train", str(recipe), *overrides], output)
        return {"run": name, "job": job.id}

    def _photo_set_for_training(self, chosen: str) -> Path:
        if not chosen.strip():
            raise UserError("no photo set is chosen; prepare photos on the Photos page, then pick them here.")
        photos = self.root / PHOTOS / safe_name(chosen, "photo set name")
        if not runs.is_photo_set(photos):
            raise UserError(f"photo set {photos.name} is not prepared; prepare photos on the Photos page first.")
        return photos

    def _run_folder(self, name: str) -> Path:
        folder = self.root / safe_name(name, "run name")
        if not runs.is_run(folder):
            raise UserError(f"there is no run named {name} under {self.root}; pick one on the Runs page.")
        return folder

    def stop(self, name: str) -> dict:
        folder = self._run_folder(name)
        job = self.jobs.latest_for(folder)
        if job is None or not self.jobs.stop(job.id):
            raise UserError(f"run {name} is not running from this UI; stop it where it was started (Ctrl-C).")
        return {"stopping": name}

    def resume(self, name: str) -> dict:
        folder = self._run_folder(name)
        status = runs.run_status(folder)
        if status == "running":
            raise UserError(f"run {name} is already running.")
        if status == "finished":
            raise UserError(f"run {name} has finished; start a new run to train further.")
        if status != "stopped":
            raise UserError(f"run {name} has no checkpoint to resume from; start it again as a new run.")
        confine_config(form.check(folder / "config.yaml", []), self.root, self.access)
        job = self.jobs.start("resume", ["train", str(folder / "config.yaml"), "--resume", "latest"], folder)
        return {"run": folder.name, "job": job.id}

    def job_running(self, name: str) -> bool:
        """Whether a job this UI started for run ``name`` is still going (a resumed run may not say so yet)."""
        job = self.jobs.latest_for(self.root / safe_name(name, "run name"))
        return bool(job and job.running)

    def job_list(self) -> list[dict]:
        """Queued and running jobs in the order they will run, then the last ten that ended."""
        every = self.jobs.jobs()
        waiting = self.jobs.queue()
        active = [j for j in every if j.state == "running"] + waiting
        ended = sorted((j for j in every if not j.running), key=lambda j: j.ended or 0, reverse=True)[:10]
        return [
            {
                "id": j.id,
                "kind": j.kind,
                "target": Path(j.target).relative_to(self.root).as_posix()
                if self.root in Path(j.target).parents
                else Path(j.target).name,
                "state": j.state,
                "place": waiting.index(j) + 1 if j in waiting else None,
                "error": self.jobs.error(j.id),
            }
            for j in active + ended
        ]

    def cancel(self, job_id: str) -> dict:
        if not self.jobs.cancel(str(job_id)):
            raise UserError(f"job {job_id} has already ended; nothing to cancel.")
        return {"cancelled": job_id}

    def move(self, job_id: str, by: int) -> dict:
        if str(job_id) not in [j.id for j in self.jobs.queue()]:
            raise UserError(f"job {job_id} is not waiting in the queue; only waiting jobs move.")
        return {"queue": [j.id for j in self.jobs.move(str(job_id), int(by))]}

    def run(self, name: str) -> dict:
        folder = self.root / safe_name(name, "run name")
        job = self.jobs.latest_for(folder)
        if job and job.running and not runs.is_run(folder):  # queued, or started a moment ago: no run files yet
            waiting = [j.id for j in self.jobs.queue()]
            return {
                "name": folder.name,
                "status": "queued" if job.id in waiting else "starting",
                "queue_place": waiting.index(job.id) + 1 if job.id in waiting else None,
                "step": 0,
                "total": None,
                "eta_s": None,
                "curves": {},
                "held": None,
                "machine": machine_load(),
                "monitor": [],
                "checkpoints": [],
                "files": runs.files_of(folder, self.root),
                "error": "",
                "notice": "",
                "phase": self.jobs.progress(job.id),
                "log": self.jobs.output(job.id, 3000).strip().splitlines()[-8:],
            }
        folder = self._run_folder(name)
        info = runs.describe(folder, self.root)
        info["error"] = self.jobs.error(job.id) if job else ""
        info["notice"] = ""
        if (
            job and job.exit_code in (128 + 15, 128 + 2) and info["status"] == "stopped"
        ):  # stopped on request: a pause, not a failure
            said = [
                line[line.index("paused after") :]
                for line in self.jobs.output(job.id).splitlines()
                if "paused after" in line
            ]
            info["notice"] = (said[-1] if said else "paused").replace(
                "continue with the same command and --resume latest", "Resume continues it"
            )
            info["error"], info["status"] = "", "paused"
        ended = job is not None and not job.running and job.exit_code not in (None, 0, 128 + 15, 128 + 2)
        if ended and info["status"] in ("incomplete", "stopped"):  # it ended with an error: failed, not paused
            info["status"] = "failed"
        info["phase"] = self.jobs.progress(job.id) if job and job.running else None
        info["log"] = self.jobs.output(job.id, 3000).strip().splitlines()[-8:] if job else []
        said = MEMORY_LINE.findall(self.jobs.head(job.id)) if job else []  # said once, after step 2
        info["memory"] = said[-1] if said else ""  # the run's own account of its memory (memory_report.py)
        if (
            info["status"] in ("incomplete", "stopped", "paused") and job and job.running
        ):  # launched, not yet holding the run's lock
            info["status"], info["notice"] = "starting", ""
        info["machine"] = machine_load() if info["status"] in ("running", "starting") else None
        return info

    def list_runs(self) -> list[dict]:
        return runs.discover(self.root)

    # ---- generation ---------------------------------------------------------------------------
    def generate(self, request: dict) -> dict:
        """The trained model and its base, same prompts and seeds: two CLI jobs, one after the other."""
        folder = self._run_folder(request.get("run", ""))
        if runs.run_status(folder) != "finished":
            raise UserError(f"run {folder.name} has no trained model yet; wait for it to finish (or resume it).")
        prompts = [p.strip() for p in request.get("prompts", []) if p.strip()]
        if not prompts:
            raise UserError("no prompt given; write one per line, e.g. a {subject} {class} on the beach.")
        if len(prompts) > 50:
            raise UserError(f"{len(prompts)} prompts at once is too many for one batch here; keep it to 50.")
        settings = json.loads((folder / "model" / "dreamtune.json").read_text(encoding="utf-8"))
        words = (settings.get("instance_prompt") or "a sks").split()  # "a sks dog": identifier, class noun
        identifier = request.get("subject") or (words[1] if len(words) > 1 else "sks")
        noun = request.get("class_noun") or " ".join(words[2:])
        common = [
            "--subject",
            identifier,
            "--class-noun",
            noun,
            "--images-per-prompt",
            str(int(request.get("images_per_prompt", 1))),
            "--seed",
            str(int(request.get("seed", 0))),
            "--guidance-scale",
            str(float(request.get("guidance_scale", 7.5))),
            "--steps",
            str(int(request.get("steps", 30))),
        ]
        for prompt in prompts:
            common += ["--prompt", prompt]
        out = folder / "generations" / time.strftime("%Y%m%d-%H%M%S")
        claim_output_dir(out, "generation folder")
        personalized = ["generate", "--trained", str(folder / "model"), *common, "--out", str(out / "personalized")]
        base = self._base_arguments(folder, common, out)

        def then_base(job):
            if job.exit_code == 0 and base and request.get("base", True):
                self.jobs.start("generate", base, out / "base")

        job = self.jobs.start("generate", personalized, out / "personalized", on_exit=then_base)
        return {"generation": out.relative_to(self.root).as_posix(), "job": job.id}

    def _base_arguments(self, folder: Path, common: list[str], out: Path) -> list[str]:
        import yaml

        base = yaml.safe_load((folder / "config.yaml").read_text(encoding="utf-8"))["model"]["pretrained"]
        blank = list(common)
        blank[blank.index("--subject") + 1] = ""  # the base model has no identifier: "a dog on the beach"
        if runs.model_sampling(folder):  # a few-step model's steps and guidance-free sampling are not the base's
            for flag in ("--steps", "--guidance-scale"):
                at = blank.index(flag)
                del blank[at : at + 2]
        return ["generate", "--model", str(base), *blank, "--out", str(out / "base")]

    def generation(self, relative: str) -> dict:
        out = (self.root / relative).resolve()
        if self.root not in out.parents or not (out / ".dreamtune").exists():
            raise UserError(f"{relative} is not a generation of this UI's runs; pick one from the run's page.")
        sides = {}
        for side in ("personalized", "base"):
            record_path = out / side / "generations.json"
            job = self.jobs.latest_for(out / side)
            entry = {
                "images": [],
                "prompts": [],
                "seeds": [],
                "error": self.jobs.error(job.id) if job else "",
                "running": bool(job and job.running),
                "progress": self.jobs.progress(job.id) if job and job.running else None,
            }
            if record_path.is_file():
                record = json.loads(record_path.read_text(encoding="utf-8"))
                entry["images"] = [f"{relative}/{side}/{r['file']}" for r in record["images"]]
                entry["prompts"] = [r.get("prompt", "") for r in record["images"]]
                entry["seeds"] = [r.get("seed") for r in record["images"]]
            sides[side] = entry
        return sides


def _model_label(recipe: Path) -> str:
    """A recipe's base model as the UI names it: ``miniature`` for the packaged one, else as written."""
    from dreamtune.models.loading import MINIATURE_NAMES

    pretrained = config.load(recipe).model.pretrained
    return MINIATURE if pretrained in MINIATURE_NAMES else pretrained
