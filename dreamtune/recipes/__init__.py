"""The shipped YAML recipes (``configs/`` in the checkout links here), found by name from anywhere:
``dreamtune train lora-sd15 ...`` is ``dreamtune train <package>/recipes/lora-sd15.yaml ...``."""

from __future__ import annotations

from pathlib import Path

RECIPES_DIR = Path(__file__).resolve().parent


def recipe_names() -> list[str]:
    return [str(p.relative_to(RECIPES_DIR).with_suffix("")) for p in sorted(RECIPES_DIR.rglob("*.yaml"))]


def find_recipe(name: str | Path) -> Path:
    """``name`` when that file exists, else the shipped recipe it names: ``lora-sd15``,
    ``lora-sd15.yaml``, ``configs/lora-sd15.yaml`` (from any folder) or ``miniature/unet``."""
    path = Path(name).expanduser()
    if path.exists():
        return path
    relative = Path(*path.parts[1:]) if len(path.parts) > 1 and path.parts[0] in ("configs", "recipes") else path
    for candidate in (RECIPES_DIR / relative, RECIPES_DIR / f"{relative}.yaml"):
        if candidate.is_file():
            return candidate
    return path
