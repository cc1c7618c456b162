"""<output_dir>/report.html of a training run: loss curve, the monitor's curves and the step it
selected (and why), its sample sheets, and the validation sheets."""
from __future__ import annotations

from pathlib import Path


def write_run_report(output_dir: Path, history: list[dict], monitor=None, selected: dict | None = None) -> Path:
    from dreamtune.evaluation.plots import line_plot
    from dreamtune.evaluation.report import Report

    output_dir = Path(output_dir)
    report = Report(f"dreamtune run: {output_dir.name}")
    if history:
        line_plot({"loss": [(r["step"], r["loss"]) for r in history if "loss" in r]}, "training loss (moving average of 20 steps)",
                  smooth=20).save(output_dir / "loss.png")
        report.heading("Training loss")
        report.image("loss.png")
    if monitor is not None and monitor.records:
        step = selected["step"] if selected else None
        monitor.plot(output_dir / "monitor.png", step)
        report.heading("Overfitting / language-drift monitor")
        report.text("CLIP-I: generations in unseen contexts vs the subject's photos (higher = more like the subject); "
                    "CLIP-T: vs the prompt without the identifier (falls when the subject overwrites the context); "
                    "PRES: class-prompt generations vs the subject (rises when the class drifts toward the subject). "
                    f"Features: {monitor.features.describe()}.")
        report.image("monitor.png")
        if selected:
            report.text(f"Selected step {step} (rule {selected['rule']}): {selected['reason']}. The exported model holds that step's weights.")
        report.table([{**r, "selected": "◀" if r["step"] == step else ""} for r in monitor.records], ["step", "clip_i", "clip_t", "pres", "selected"])
        shown = sorted({monitor.records[0]["step"], monitor.records[-1]["step"], *([step] if step is not None else [])})
        for s in shown:
            report.image(f"monitor/step-{s:06d}.png", f"monitor samples at step {s}")
    validations = sorted((output_dir / "validation").glob("step-*.png"))
    if validations:
        report.heading("Validation")
        for path in validations[-3:]:
            report.image(f"validation/{path.name}", path.stem)
    return report.write(output_dir / "report.html")
