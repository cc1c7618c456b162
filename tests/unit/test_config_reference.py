"""docs/configuration.md is written from config.py's comments, so the settings are documented once:
every setting has its sentence, and the page in the repository is the one the code writes now."""

from pathlib import Path

from dreamtune.config import Config
from dreamtune.config_help import reference_markdown, reference_rows

ROOT = Path(__file__).resolve().parents[2]


def test_every_setting_has_help_text():
    missing = [key for key, _, text in reference_rows(Config) if not text]
    assert not missing, f"settings without a comment in config.py: {missing}"


def test_the_configuration_page_is_current():
    page = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert page == reference_markdown(Config), (
        "docs/configuration.md is stale: python -m dreamtune.config_help > docs/configuration.md"
    )


def test_the_page_lists_nested_sections_by_their_dotted_keys():
    keys = [key for key, _, _ in reference_rows(Config)]
    assert "method.lora.rank" in keys and "rl.rewards.print_proof" in keys and "train.lr" in keys
    assert len(keys) == len(set(keys))
