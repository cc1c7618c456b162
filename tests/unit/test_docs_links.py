"""The newcomer's path through the documentation: every relative link in the README, the guide
pages, the architecture page and the experiment records leads to a file that exists, and the README
stays a short front page (the guides hold the detail)."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def _pages() -> list[Path]:
    return [
        ROOT / "README.md",
        ROOT / "ARCHITECTURE.md",
        ROOT / "benchmarks" / "README.md",
        *(ROOT / "docs").glob("*.md"),
        *(ROOT / "experiments").glob("**/README.md"),
    ]


def test_every_relative_link_resolves():
    broken = [
        (str(page.relative_to(ROOT)), target)
        for page in _pages()
        for target in LINK.findall(page.read_text(encoding="utf-8"))
        if not target.startswith(("http://", "https://", "mailto:")) and not (page.parent / target).exists()
    ]
    assert not broken, broken


def test_the_readme_is_a_front_page_that_links_every_guide():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 250
    linked = set(LINK.findall(readme))
    assert not [p.name for p in (ROOT / "docs").glob("*.md") if f"docs/{p.name}" not in linked]


def test_every_experiment_record_says_question_command_result_and_date():
    for record in (ROOT / "experiments").glob("*/README.md"):
        head = record.read_text(encoding="utf-8")[:3000]
        assert all(f"**{part}:**" in head for part in ("Question", "Command", "Result", "Date")), record


def test_every_benchmark_script_is_listed_in_the_benchmarks_readme():
    listed = (ROOT / "benchmarks" / "README.md").read_text(encoding="utf-8")
    scripts = [p.name for p in (ROOT / "benchmarks").iterdir() if p.suffix in (".py", ".sh")]
    assert not [name for name in scripts if name not in listed and name.rsplit(".", 1)[0] not in listed]
