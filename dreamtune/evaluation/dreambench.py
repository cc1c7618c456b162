"""The DreamBench layout (Ruiz et al. 2023, github.com/google/dreambooth): subject folders of
photos and ``prompts_and_classes.txt`` (subject -> class, and 25 object / 25 live-subject prompt
templates 'a {0} {1} in the jungle'). Both the upstream layout (``dataset/<subject>/``) and the
flat one (``<subject>/``) are read. A ``ceiling/<subject>/`` folder of ground-truth images with a
generations.json (the MiniDreamBench has one) gives a ceiling row.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from dreamtune.errors import UserError

PROMPTS_FILE = "prompts_and_classes.txt"
LIVE_CLASSES = {"cat", "dog"}  # DreamBench's live subjects get the live-subject prompt list
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp"}


@dataclass(frozen=True)
class Benchmark:
    root: Path
    classes: dict[str, str]  # subject -> class noun, as listed
    object_prompts: tuple[str, ...]
    live_prompts: tuple[str, ...]

    def photos_dir(self, subject: str) -> Path | None:
        for folder in (self.root / "dataset" / subject, self.root / subject):
            if folder.is_dir() and any(p.suffix.lower() in IMAGE_SUFFIXES for p in folder.iterdir()):
                return folder
        return None

    @property
    def available(self) -> list[str]:
        """Listed subjects whose photos are present (the shared subset has 11 of 30)."""
        return [s for s in self.classes if self.photos_dir(s)]

    def prompts(self, subject: str) -> tuple[str, ...]:
        return self.live_prompts if self.classes[subject] in LIVE_CLASSES else self.object_prompts

    def ceiling_dir(self, subject: str) -> Path | None:
        folder = self.root / "ceiling" / subject
        return folder if (folder / "generations.json").is_file() else None


def _section(text: str, start: str, end: str | None) -> str:
    begin = text.find(start)
    if begin < 0:
        return ""
    stop = text.find(end, begin) if end else -1
    return text[begin : stop if stop >= 0 else None]


def read_benchmark(root: str | Path) -> Benchmark:
    root = Path(root)
    path = root / PROMPTS_FILE
    if not path.is_file():
        raise UserError(
            f"{root} is not a DreamBench folder (no {PROMPTS_FILE}); pass the folder that holds it and the subject folders."
        )
    text = path.read_text(encoding="utf-8")
    classes = {}
    for line in _section(text, "subject_name,class", "Prompts").splitlines()[1:]:
        if line.count(",") == 1:
            subject, noun = (part.strip() for part in line.split(","))
            if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", subject) or ".." in subject:
                # the name becomes a folder under --out: it must not reach outside it
                raise UserError(
                    f"{path} lists the subject '{subject}', which is not a plain folder name; "
                    "use letters, digits, '_', '-' and '.' only."
                )
            classes[subject] = noun
    quoted = lambda section: tuple(re.findall(r"^\s*'(.*?)'\.format", section, flags=re.M))
    objects = quoted(_section(text, "Object Prompts", "Live Subject Prompts"))
    live = quoted(_section(text, "Live Subject Prompts", None)) or objects
    if not classes or not objects:
        raise UserError(
            f"{path} lists no subjects or no prompts; it should follow DreamBench's prompts_and_classes.txt."
        )
    return Benchmark(root, classes, objects, live)


def write_prompts_file(path: Path, classes: dict[str, str], object_prompts, live_prompts) -> None:
    """The same format, so that a generated benchmark (MiniDreamBench) reads back identically."""
    lines = ["Classes", "", "subject_name,class", *[f"{s},{c}" for s, c in classes.items()], "", "Prompts", ""]
    for title, prompts in (("Object Prompts", object_prompts), ("Live Subject Prompts", live_prompts)):
        body = ",\n".join(f"'{p}'.format(unique_token, class_token)" for p in prompts)
        lines += [title, "", "prompt_list = [", body, "]", ""]
    Path(path).write_text("\n".join(lines), encoding="utf-8")
