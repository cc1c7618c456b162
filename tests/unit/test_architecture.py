"""The data-flow rules of DESIGN.md, enforced by parsing imports."""

import ast
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "dreamtune"


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return {n for n in names if n.startswith("dreamtune")}


def test_nothing_imports_cli_and_lower_layers_do_not_import_training():
    for path in PACKAGE.rglob("*.py"):
        imported = _imports(path)
        assert "dreamtune.cli" not in imported, path
        layer = path.relative_to(PACKAGE).parts[0]
        if layer not in ("ui", "cli.py"):  # the web UI is a top layer nothing else needs
            assert not any(n.startswith("dreamtune.ui") for n in imported), path
        if layer in ("data", "models", "diffusion", "sampling", "evaluation", "objectives"):
            assert not any(n.startswith("dreamtune.training") for n in imported), path
        if layer in ("data", "diffusion"):
            assert not any(n.startswith(("dreamtune.models", "dreamtune.objectives")) for n in imported), path
        if layer == "objectives":  # objectives compute losses; loading feature networks is assembly's job
            assert not any(n.startswith(("dreamtune.evaluation", "dreamtune.models.loading")) for n in imported), path


def _weight_loads(path: Path) -> bool:
    """Calls of ``X.from_pretrained(...)`` (code, not text in strings); tokenizers hold no weights."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "from_pretrained":
            owner = node.func.value
            if not (isinstance(owner, ast.Name) and owner.id.endswith("Tokenizer")):
                return True
    return False


def test_only_models_loading_calls_from_pretrained_for_training_components():
    offenders = [
        p.name
        for p in PACKAGE.rglob("*.py")
        if _weight_loads(p) and p.name not in ("loading.py", "generate.py", "adapters.py")
    ]
    assert offenders == []


def test_no_objective_or_sampler_asks_which_model_family_it_runs():
    """Model differences live in models/families/ and noise-process differences in
    diffusion/process.py: nothing else compares a family name or a prediction type."""
    import re

    switch = re.compile(
        r"(family|family\.name)\s*[!=]=\s*['\"]|prediction_type\s*[!=]=\s*['\"]|\b(components|c|self)\.unet\b"
    )
    allowed = {
        "known_configs.py",
        "tiny.py",
        "tiny_flow.py",
        "architecture.py",
        "assemble.py",
        "noise.py",
        "ddim.py",
    }
    offenders = [
        f"{p.name}:{n + 1}"
        for p in PACKAGE.rglob("*.py")
        if p.name not in allowed and "families" not in p.parts
        for n, line in enumerate(p.read_text().splitlines())
        if switch.search(line)
    ]
    assert offenders == []


def test_files_stay_small():
    assert [
        p.name for p in PACKAGE.rglob("*.py") if len(p.read_text().splitlines()) > 400
    ] == []  # at 120 columns (ruff format)


def test_the_held_out_subjects_split_is_a_partition():
    from dreamtune.miniature import world

    sys.path.insert(0, str(PACKAGE.parent / "benchmarks"))
    from subject_split import TEST, TUNING

    assert not set(TUNING) & set(TEST) and set(TUNING) | set(TEST) == set(world.HELD_OUT)
    assert {"dog3", "backpack3"} <= set(TUNING)  # used to tune earlier recipes


def test_a_subset_of_a_half_keeps_the_halfs_order_and_refuses_a_subject_of_the_other_half():
    import pytest

    sys.path.insert(0, str(PACKAGE.parent / "benchmarks"))
    from subject_split import TEST, subjects_of

    assert subjects_of("test") == TEST
    assert subjects_of("test", "teapot3,boot3") == ("boot3", "teapot3")
    with pytest.raises(ValueError, match="dog3: not in the test half"):
        subjects_of("test", "boot3,dog3")


def test_only_the_method_objects_ask_which_method_runs():
    """What differs between LoRA, DreamBooth, textual inversion and scratch is answered by
    dreamtune/methods.py's objects: no other file compares ``method.kind`` (or a parts' kind)."""
    import re

    switch = re.compile(r"(method|parts)\.kind\s*(==|!=|in\b|not in\b)|method_kind")
    offenders = [
        f"{p.name}:{n + 1}"
        for p in PACKAGE.rglob("*.py")
        if p.name != "methods.py"
        for n, line in enumerate(p.read_text().splitlines())
        if switch.search(line)
    ]
    assert offenders == []
