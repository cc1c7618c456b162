"""What the Photos page's buttons do (uploads, sample renders, prepare, captions by hand or by a model):
plain functions of the request's JSON, mixed into ``actions.Actions``. Work that runs long goes through the
CLI as a job (jobs.py)."""

from __future__ import annotations

import io
import json
from pathlib import Path

from dreamtune.atomic import atomic_file
from dreamtune.data.ingest import IMAGE_SUFFIXES
from dreamtune.data.masks import is_mask_file
from dreamtune.errors import UserError
from dreamtune.ui import runs
from dreamtune.ui.safety import HUB_ID, safe_name

UPLOADS = "uploads"
PHOTOS = "photos"
CAPTION_SUFFIXES = (".txt", ".jsonl")


class PhotoActions:
    """The photo sets under ``<runs>/uploads`` (as uploaded) and ``<runs>/photos`` (prepared). Needs
    ``root``, ``limits``, ``access`` and ``jobs`` from the class it is mixed into."""

    # ---- photos -------------------------------------------------------------------------------
    def upload(self, photo_set: str, filename: str, body: bytes, declared: int | None) -> dict:
        folder = self.root / UPLOADS / safe_name(photo_set, "photo set name")
        count = len(list(folder.iterdir())) if folder.is_dir() else 0
        name = self.limits.check_upload(filename, declared, count)
        folder.mkdir(exist_ok=True)
        target, n = folder / name, 1
        while target.exists():  # never overwrite an earlier upload
            target, n = folder / f"{Path(name).stem}-{n}{Path(name).suffix}", n + 1
        with atomic_file(target) as temp:
            temp.write_bytes(body)
        captions = sum(1 for f in folder.iterdir() if f.suffix.lower() in CAPTION_SUFFIXES)
        masks = sum(1 for f in folder.iterdir() if is_mask_file(f, IMAGE_SUFFIXES))
        return {"saved": target.name, "count": count + 1 - captions - masks, "captions": captions, "masks": masks}

    def uploads(self, photo_set: str) -> dict:
        """The files uploaded to ``photo_set`` so far (photos and caption files), for the thumbnails."""
        folder = self.root / UPLOADS / safe_name(photo_set, "photo set name")
        files = (
            sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")) if folder.is_dir() else []
        )
        return {
            "files": [
                {
                    "name": p.name,
                    "path": p.relative_to(self.root).as_posix(),
                    "photo": p.suffix.lower() not in CAPTION_SUFFIXES,
                }
                for p in files
            ]
        }

    def remove_upload(self, photo_set: str, name: str) -> dict:
        """Remove one uploaded file (the UI's own copy under uploads/, never a file of yours elsewhere)."""
        folder = self.root / UPLOADS / safe_name(photo_set, "photo set name")
        target = folder / safe_name(Path(name).name, "file name")
        if not target.is_file():
            raise UserError(f"photo set {folder.name} has no upload {name}; reload the page.")
        target.unlink()
        return self.uploads(photo_set)

    def sample_photos(self, photo_set: str, subject: str, count: int = 5) -> dict:
        """Renders of a held-out subject of the miniature's world, as if photographed (offline trial)."""
        from dreamtune.miniature import world
        from dreamtune.miniature.demo import TRAIN_CONTEXTS

        if subject not in world.HELD_OUT:
            raise UserError(
                f"{subject} is not a held-out subject of the miniature; choose one of {', '.join(world.HELD_OUT)}."
            )
        saved = []
        for index in range(count):
            image = world.render(world.Scene(subject, TRAIN_CONTEXTS[index % len(TRAIN_CONTEXTS)]), 50_000 + index)
            encoded = io.BytesIO()
            image.save(encoded, format="PNG")
            saved.append(self.upload(photo_set, f"{subject}-{index}.png", encoded.getvalue(), encoded.tell())["saved"])
        return {"saved": saved, "class_noun": world.instance(subject).class_noun}

    def prepare(self, photo_set: str, instance_prompt: str, resolution: int, folder: str = "") -> dict:
        """``dreamtune prepare`` of the uploads (or a local folder) into photos/<set>; its verdicts."""
        name = safe_name(photo_set, "photo set name")
        source = self.access.local_path(folder, "the photo folder") if folder else self.root / UPLOADS / name
        if not folder and not source.is_dir():
            raise UserError(f"photo set {name} has no uploads yet; drop some photos first.")
        out = self.root / PHOTOS / name
        if out.exists():
            raise UserError(f"photo set {name} is already prepared; pick another name to prepare again.")
        arguments = ["prepare", str(source), "--out", str(out), "--resolution", str(int(resolution))]
        if instance_prompt.strip():
            arguments += ["--instance-prompt", instance_prompt.strip()]
        job = self.jobs.run("prepare", arguments, out)
        error = self.jobs.error(job.id)
        if error:
            raise UserError(error)
        return self.photo_set(name)

    def autocaption(self, photo_set: str, model: str, prefix: str) -> dict:
        """``dreamtune caption`` of a prepared set with an image-captioning model; its captions."""
        folder = self.root / PHOTOS / safe_name(photo_set, "photo set name")
        model = (model or "").strip()
        if not model:
            raise UserError(
                "no captioning model is given; type a folder or hub id, e.g. Salesforce/blip-image-captioning-base."
            )
        if not (HUB_ID.match(model) and not Path(model).exists()):
            model = str(self.access.local_path(model, "the captioning model"))
        job = self.jobs.run(
            "caption", ["caption", str(folder), "--model", model, "--prefix", prefix or "a sks"], folder
        )
        error = self.jobs.error(job.id)
        if error:
            raise UserError(error)
        return self.photo_set(photo_set)

    def photo_set(self, name: str) -> dict:
        from dreamtune.data.ingest import prepared_records
        from dreamtune.data.prepare import read_report

        folder = self.root / PHOTOS / safe_name(name, "photo set name")
        report = read_report(folder)
        captions = prepared_records(folder)
        return {
            "name": folder.name,
            "kept": report["kept"],
            "skipped": report["skipped"],
            "entries": report["entries"],
            "images": [
                {
                    "file": f"{PHOTOS}/{folder.name}/{c['file_name']}",
                    "file_name": c["file_name"],
                    "caption": c.get("text", ""),
                    "source": c.get("source", ""),
                }
                for c in captions
            ],
        }

    def photo_sets(self) -> list[str]:
        folder = self.root / PHOTOS
        return sorted(p.name for p in folder.iterdir() if runs.is_photo_set(p)) if folder.is_dir() else []

    def edit_captions(self, name: str, captions: dict) -> dict:
        folder = self.root / PHOTOS / safe_name(name, "photo set name")
        from dreamtune.data.ingest import prepared_records

        manifest = folder / "metadata.jsonl"
        if not manifest.is_file():
            raise UserError(f"photo set {name} is not prepared; prepare it first.")
        records = prepared_records(folder)
        unknown = set(captions) - {r["file_name"] for r in records}
        if unknown:
            raise UserError(f"photo set {name} has no image {sorted(unknown)[0]}; reload the page.")
        for record in records:
            if record["file_name"] in captions:
                record["text"] = " ".join(str(captions[record["file_name"]]).split())
        with atomic_file(manifest) as temp:
            temp.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
        return self.photo_set(name)
