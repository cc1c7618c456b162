"""<output_dir>/report.html of a training run: loss curve, the monitor's curves and the step it
selected (and why), its sample sheets, and the validation sheets."""

from __future__ import annotations

from pathlib import Path

SETTINGS = (
    "model.pretrained",
    "method.kind",
    "method.lora.rank",
    "data.instance_prompt",
    "data.resolution",
    "prior.enabled",
    "prior.class_prompt",
    "train.steps",
    "train.batch_size",
    "train.lr",
    "train.lr_scheduler",
    "train.optimizer",
    "train.mixed_precision",
    "model.quantize",
    "train.seed",
)


def _settings(config) -> list[dict]:
    rows = []
    for dotted in SETTINGS:
        value = config
        for part in dotted.split("."):
            value = getattr(value, part)
        rows.append({"setting": dotted, "value": value})
    return rows


def write_run_report(
    output_dir: Path, history: list[dict], monitor=None, selected: dict | None = None, config=None
) -> Path:
    """``history``: every step's record (training.callbacks.read_metric_log: a resumed run's whole log)."""
    from dreamtune.evaluation.plots import line_plot
    from dreamtune.evaluation.report import Report

    output_dir = Path(output_dir)
    report = Report(f"dreamtune run: {output_dir.name}")
    if config is not None:
        report.heading("Settings")
        report.text("The main settings; config.yaml beside this report holds every one.")
        report.table(_settings(config), ["setting", "value"])
    losses = [(r["step"], r["loss"]) for r in history if "loss" in r]
    if losses:
        line_plot({"loss": losses}, "training loss (moving average of 20 steps)", smooth=20).save(
            output_dir / "loss.png"
        )
        report.heading("Training loss")
        report.image(
            "loss.png",
            f"steps {losses[0][0]}-{losses[-1][0]}: loss {losses[0][1]:.4f} at the first, "
            f"{sum(v for _, v in losses[-20:]) / len(losses[-20:]):.4f} over the last {len(losses[-20:])}",
        )
    if history and any("adv/d_loss" in r for r in history):
        line_plot(
            {
                k: [(r["step"], r[f"adv/{k}"]) for r in history if f"adv/{k}" in r]
                for k in ("d_loss", "g_loss", "d_accuracy")
            },
            "adversarial: discriminator loss, generator loss, discriminator accuracy (moving average of 20)",
            smooth=20,
        ).save(output_dir / "adversarial.png")
        report.heading("Adversarial game")
        report.text(
            "d_loss: hinge loss of the discriminator (+R1 is logged apart); g_loss: the generator term before its weight; "
            "d_accuracy: share of real judged real and x̂0 judged fake (0.5 = cannot tell)."
        )
        report.image("adversarial.png")
    if monitor is not None and monitor.records:
        step = selected["step"] if selected else None
        monitor.plot(output_dir / "monitor.png", step)
        report.heading("Overfitting / language-drift monitor")
        report.text(
            "CLIP-I: generations in unseen contexts vs the subject's photos (higher = more like the subject); "
            "CLIP-T: vs the prompt without the identifier (falls when the subject overwrites the context); "
            "PRES: class-prompt generations vs the subject (rises when the class drifts toward the subject). "
            f"Features: {monitor.features.describe()}."
        )
        report.image("monitor.png")
        if selected:
            report.text(
                f"Selected step {step} (rule {selected['rule']}): {selected['reason']}. The exported model holds that step's weights."
            )
        report.table(
            [{**r, "selected": "◀" if r["step"] == step else ""} for r in monitor.records],
            ["step", "clip_i", "clip_t", "pres", "selected"],
        )
        middle = monitor.records[len(monitor.records) // 2]["step"]
        shown = sorted(
            {monitor.records[0]["step"], middle, monitor.records[-1]["step"], *([step] if step is not None else [])}
        )
        for s in shown:
            report.image(f"monitor/step-{s:06d}.png", f"monitor samples at step {s}")
    validations = sorted((output_dir / "validation").glob("step-*.png"))
    if validations:
        report.heading("Validation")
        for path in validations[-3:]:
            report.image(f"validation/{path.name}", path.stem)
    return report.write(output_dir / "report.html")
