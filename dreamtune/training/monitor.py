"""Overfitting / language-drift monitor: a training-loop callback.

Every ``monitor.every`` steps (and once before the first step) it renders the monitor prompts —
the instance prompt in contexts the photos never showed — plus a few class-prompt images, and
records with CLIP features:
  clip_i  subject fidelity: generations vs the subject's photos (under-fitting: low)
  clip_t  prompt fidelity: generations vs the prompt without identifier (over-fitting: falls)
  pres    class drift: class-prompt generations vs the subject's photos (language drift: rises)
  colourfulness  of the generations (Hasler & Suesstrunk): a run that pales its images shows here
and, in RL runs, every reward that scores an image on its own (one scored against the starting
model's same-seed image, print_proof, is not logged: the monitor has no such image).
``monitor.select_best`` keeps the weights of the best point under a stated rule; at the end the
run exports those weights, and dreamtune.json + the run report say which step and why.
Records go to <output_dir>/monitor/monitor.jsonl; the best weights to monitor/best.safetensors,
so a resumed run keeps its selection.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from dreamtune.atomic import atomic_file
from dreamtune.config import Config
from dreamtune.evaluation.evaluate import strip_identifier
from dreamtune.evaluation.metrics import preservation, prompt_fidelity, subject_fidelity
from dreamtune.rewards.colour import colourfulness
from dreamtune.training.checkpoint import TrainingState


def monitor_prompts(config: Config, identifier: str) -> tuple[list[str], str]:
    """(prompts with identifier, class prompt): phrases are appended to the instance prompt;
    prompts with {subject}/{class} are filled in."""
    from dreamtune.sampling.generate import fill_prompt

    base = config.data.instance_prompt
    noun = strip_identifier(base, identifier).split()[-1] if base else config.rl.class_noun
    prompts = [
        fill_prompt(p, identifier, noun) if "{" in p or not base else f"{base} {p}" for p in config.monitor.prompts
    ]
    class_prompt = config.prior.class_prompt or strip_identifier(base, identifier)
    return prompts, class_prompt


def choose(records: list[dict], rule: str, clip_t_floor: float, clip_i_floor: float = 0.95) -> tuple[dict | None, str]:
    """The selected record under ``rule`` and a sentence saying why. Rules: ``clip_i`` (best
    subject fidelity); ``clip_i_with_clip_t_floor`` / ``reward_with_clip_t_floor`` (best CLIP-I /
    reward among points whose CLIP-T stayed >= clip_t_floor x its start value);
    ``reward_with_clip_i_floor`` (best reward among points whose CLIP-I stayed >= clip_i_floor x
    its start: reward fine-tuning of a personalized model that must keep its subject)."""
    if not records:
        return None, "no monitor point was recorded"
    if rule == "clip_i":
        best = max(records, key=lambda r: r["clip_i"])
        return best, f"highest CLIP-I ({best['clip_i']:.4f}) of {len(records)} points"
    key, name = ("reward", "reward") if rule.startswith("reward") else ("clip_i", "CLIP-I")
    guard, label, floor = (
        ("clip_i", "CLIP-I", clip_i_floor) if rule.endswith("clip_i_floor") else ("clip_t", "CLIP-T", clip_t_floor)
    )
    start = records[0][guard]
    eligible = [r for r in records if r[guard] >= floor * start]
    if not eligible:
        return records[0], f"no point kept {label} >= {floor:g} x start ({start:.4f}); kept the start"
    best = max(eligible, key=lambda r: r[key])
    return best, (
        f"highest {name} ({best[key]:.4f}) among the {len(eligible)} of {len(records)} points whose {label} stayed "
        f">= {floor:g} x its start value {start:.4f} (here {best[guard]:.4f})"
    )


class Monitor:
    def __init__(
        self,
        config: Config,
        render,
        features,
        subject_images: list,
        modules: dict,
        folder: Path,
        identifier: str,
        enabled: bool = True,
        rewards=None,
    ):
        self.settings, self.render, self.features = config.monitor, render, features
        # rewards that score against the starting model's same-seed image have none here: not logged
        self.rewards = rewards.without_reference() if rewards is not None else None
        self.modules, self.folder, self.enabled, self.identifier = modules, Path(folder), enabled, identifier
        self.prompts, self.class_prompt = monitor_prompts(config, identifier)
        self.real = features.clip.images(subject_images) if subject_images else None
        log = self.folder / "monitor.jsonl"
        self.records = [json.loads(l) for l in log.read_text().splitlines() if l.strip()] if log.is_file() else []

    # -- weights of the trainable modules ------------------------------------------------------
    def _weights(self) -> dict[str, torch.Tensor]:
        return {
            f"{name}.{key}": p.detach().float().cpu().contiguous()
            for name, module in self.modules.items()
            for key, p in module.named_parameters()
            if p.requires_grad
        }

    def restore_best(self) -> bool:
        path = self.folder / "best.safetensors"
        if not path.is_file():
            return False
        saved = load_file(str(path))
        with torch.no_grad():
            for name, module in self.modules.items():
                for key, p in module.named_parameters():
                    if f"{name}.{key}" in saved:
                        p.copy_(saved[f"{name}.{key}"].to(p.dtype))
        return True

    # -- measuring -----------------------------------------------------------------------------
    def measure(self, step: int) -> dict:
        seeds = list(self.settings.seeds)
        pairs = [(p, s) for p in self.prompts for s in seeds]
        images = self.render([p for p, _ in pairs], [s for _, s in pairs])
        clip = self.features.clip
        generated = clip.images(images)
        texts = clip.texts([strip_identifier(p, self.identifier) for p, _ in pairs])
        record = {"step": step, "clip_t": prompt_fidelity(generated, texts)}
        class_images = []
        if self.real is not None:
            class_images = self.render(
                [self.class_prompt] * self.settings.class_images, list(range(100, 100 + self.settings.class_images))
            )
            record.update(
                clip_i=subject_fidelity(generated, self.real), pres=preservation(clip.images(class_images), self.real)
            )
        pixels = (
            torch.stack([torch.from_numpy(np.array(i.convert("RGB"))).permute(2, 0, 1) for i in images]).float() / 255
        )
        # beside any reward: a run that pales its images (what print and compression rewards can be gamed by) shows here
        record["colourfulness"] = float(colourfulness(pixels).mean())
        if self.rewards is not None:
            with torch.no_grad():
                record.update(self.rewards.evaluate(pixels, [p for p, _ in pairs], {})[1])
        from dreamtune.sampling.contact_sheet import contact_sheet, save_png

        sheet = contact_sheet(
            images + class_images,
            [f"{p} #{s}" for p, s in pairs] + [self.class_prompt] * len(class_images),
            columns=len(seeds) * 2,
            cell=128,
            title=f"step {step}",
        )
        save_png(sheet, self.folder / f"step-{step:06d}.png")
        return record

    def observe(self, step: int) -> None:
        if not self.enabled or any(r["step"] == step for r in self.records):
            return
        record = self.measure(step)
        self.records.append(record)
        with open(self.folder / "monitor.jsonl", "a", encoding="utf-8") as log:
            log.write(json.dumps(record) + "\n")
        rule = self.settings.select_best
        if rule:
            best, _ = choose(self.records, rule, self.settings.clip_t_floor, self.settings.clip_i_floor)
            if best is record:
                with atomic_file(self.folder / "best.safetensors") as temp:
                    save_file(self._weights(), str(temp))

    def on_step_end(self, state: TrainingState, metrics: dict[str, float]) -> None:
        if self.settings.every and state.step % self.settings.every == 0:
            self.observe(state.step)

    def selection(self) -> dict | None:
        if not self.settings.select_best:
            return None
        best, reason = choose(
            self.records, self.settings.select_best, self.settings.clip_t_floor, self.settings.clip_i_floor
        )
        return {"rule": self.settings.select_best, "step": best["step"] if best else None, "reason": reason}

    def plot(self, path: Path, selected: int | None = None) -> Path:
        from dreamtune.evaluation.plots import line_plot

        keys = [k for k in ("clip_i", "clip_t", "pres", "reward") if k in self.records[0]]
        series = {k: [(r["step"], r[k]) for r in self.records if k in r] for k in keys}
        title = "monitor: " + ", ".join(keys)
        if selected is not None:
            title += f"; selected step {selected}"
        line_plot(series, title).save(path)
        return path
