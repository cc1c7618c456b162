"""The data-flow rules of DESIGN.md, enforced by parsing imports."""
import ast
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
        if layer in ("data", "models", "diffusion", "sampling", "evaluation", "objectives"):
            assert not any(n.startswith("dreamtune.training") for n in imported), path
        if layer in ("data", "diffusion"):
            assert not any(n.startswith(("dreamtune.models", "dreamtune.objectives")) for n in imported), path


def test_only_models_loading_calls_from_pretrained_for_training_components():
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        weight_loads = path.read_text().replace("Tokenizer.from_pretrained(", "")  # tokenizers hold no weights
        if "from_pretrained(" in weight_loads and path.name not in ("loading.py", "generate.py", "adapters.py"):
            offenders.append(path.name)
    assert offenders == []


def test_files_stay_small():
    assert [p.name for p in PACKAGE.rglob("*.py") if len(p.read_text().splitlines()) > 300] == []
