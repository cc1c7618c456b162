"""How long from `dreamtune ui` to a first personalized image, as a new user clicks it? (issue 37)

    python benchmarks/ui_first_run.py [--shots docs/ui/journey] [--root /tmp/ui-first-run]

Starts the UI the way `dreamtune ui` does (a fresh runs folder), drives Debian's chromium through
Playwright with the defaults a new user meets: Photos -> 5 photos of a miniature subject -> Prepare ->
Train (the default recipe, miniature-lora, its default settings) -> Runs until finished -> Generate one
prompt -> the first personalized image on screen. Prints the seconds of each phase and in all, and saves a
screenshot of each step into --shots. Nothing else should run on the machine while it times.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TIMEOUT = 1_800_000  # ms: a whole default run on a slow 2-core machine


def journey(root: Path, shots: Path) -> dict[str, float]:
    from playwright.sync_api import sync_playwright

    from dreamtune.ui.server import serve_in_thread

    shots.mkdir(parents=True, exist_ok=True)
    phases: dict[str, float] = {}
    started = time.perf_counter()
    mark = started

    def done(phase: str, page) -> None:
        nonlocal mark
        now = time.perf_counter()
        phases[phase] = now - mark
        mark = now
        page.screenshot(path=str(shots / f"{len(phases)}-{phase.split()[0]}.png"), full_page=True)

    server = serve_in_thread(root)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=shutil.which("chromium"),
                args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
            )
            page = browser.new_page(viewport={"width": 1280, "height": 900}, bypass_csp=True)
            page.set_default_timeout(TIMEOUT)
            page.goto(server.url)
            page.wait_for_selector("body[data-ready='1']")
            done("open the link", page)
            page.select_option("#sample-subject", "cat3")
            page.click("#sample")
            page.wait_for_function("document.querySelectorAll('#uploads figure').length === 5")
            page.fill("#instance-prompt", "a sks cat")
            page.fill("#resolution", "64")
            page.click("#prepare")
            page.wait_for_selector(".verdict >> nth=4")
            done("photos and prepare", page)
            page.click("nav button[data-page=train]")
            page.select_option("#train-photos", "my-subject")
            page.click("#start")
            page.wait_for_function("document.getElementById('run-status').textContent === 'finished'")
            done("train (default recipe)", page)
            page.click("nav button[data-page=generate]")
            page.select_option("#gen-run", "my-run")
            page.fill("#prompts", "a {subject} {class} on the beach")
            page.click("#generate")
            page.wait_for_function(  # the personalized image shown, not only its place
                "[...document.querySelectorAll('#gallery img.generated')].some(i => i.complete && i.naturalWidth > 0)"
            )
            done("generate one prompt", page)
            browser.close()
    finally:
        server.actions.jobs.stop_all()
        server.shutdown()
        server.server_close()
    phases["in all"] = time.perf_counter() - started
    return phases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shots", default=str(ROOT / "docs" / "ui" / "journey"))
    parser.add_argument("--root", default="")
    args = parser.parse_args()
    root = Path(args.root or tempfile.mkdtemp(prefix="ui-first-run-")) / "runs"
    phases = journey(root, Path(args.shots))
    print("| phase | seconds |\n|---|---|")
    for phase, seconds in phases.items():
        print(f"| {phase} | {seconds:.0f} |")


if __name__ == "__main__":
    main()
