"""Many ``dreamtune demo`` runs — (method, subject, training seed) — judged and tabulated (issue 14's
protocol: tune on ``subject_split.TUNING``, report on ``subject_split.TEST``).

Each run lives in ``ROOT/LABEL/SUBJECT-sSEED``; a run with ``metrics.json`` is finished and kept, an
unfinished folder (made by an interrupted sweep) is started again, so sweeps resume. Runs can go in
parallel processes (``jobs``): on a GPU a miniature run is bound by Python's per-step overhead, so
several at once fill the device; an optional deadline stops starting new runs.
"""

from __future__ import annotations

import json
import math
import random
import shutil
import statistics
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path

from dreamtune.recipes import RECIPES_DIR


@dataclass(frozen=True)
class Method:
    """A recipe and its overrides, run the way ``dreamtune demo`` runs the default one."""

    label: str
    recipe: str = "miniature-lora.yaml"
    overrides: tuple[str, ...] = ()
    photo_contexts: tuple[str | None, ...] = ()  # the scenes the subject is photographed in ((): the demo's)


# The method table (TI / LoRA / DreamBooth, each with and without prior preservation): the shipped
# recipes, with prior preservation switched on or off and nothing else changed.
METHODS: tuple[Method, ...] = (
    Method("lora+prior", "miniature-lora.yaml"),
    Method("lora", "miniature-lora.yaml", ("prior.enabled=false",)),
    Method("dreambooth+prior", "miniature-dreambooth.yaml"),
    Method("dreambooth", "miniature-dreambooth.yaml", ("prior.enabled=false",)),
    Method("textual-inversion", "miniature-textual-inversion.yaml"),
    Method("textual-inversion+prior", "miniature-textual-inversion.yaml", ("prior.enabled=true",)),
)

# Issue 15's adversarial designs on top of LoRA + prior, fixed before any test-half figure was seen:
# LADD's discriminator on the frozen denoiser's features; the frozen-CLIP discriminator made faster
# (4 D steps per G step, translation-only augmentation). Both judge x̂0 only from t >= 500 (below,
# x̂0 is nearly the real image it came from) with a discriminator learning rate of 2e-3 (2x the
# LoRA's, TTUR): with the generator frozen their heads then reach ~0.72 accuracy in 100 steps
# (0.60-0.66 without the threshold) — measured on boot3's data, the only learnability probe run.
ADVERSARIAL = (
    "adversarial.weight=0.05",
    "adversarial.warmup_steps=50",
    "adversarial.lr=2e-3",
    "adversarial.min_timestep=500",
)
LADD = (*ADVERSARIAL, "adversarial.discriminator=denoiser", "adversarial.r1_gamma=0", "adversarial.renoise_max=0.5")
ONE_RUN = (
    *LADD,
    "rl.algorithm=draft",
    "rl.rewards.print_proof=1",
    "rl.regularize_weight=1.0",
    "rl.start_step=300",
    "rl.lr=3e-5",
    "train.steps=360",
    "rl.sample_steps=20",
    "rl.guidance_scale=4.0",
    "rl.truncation_steps=1",
    "rl.prompts="
    + str(
        [
            "a {subject} {class} " + p
            for p in (
                "on top of pink fabric",
                "on top of a purple rug in a forest",
                "with a wheat field in the background",
                "with the Eiffel Tower in the background",
                "floating on top of water",
                "on top of green grass with sunflowers around it",
                "on top of a dirt road",
                "on top of a white rug",
            )
        ]
    ),
)
VARIANTS: tuple[Method, ...] = (
    Method("lora+prior+ladd", "miniature-lora.yaml", LADD),
    Method(
        "lora+prior+clip-d4",
        "miniature-lora.yaml",
        (
            *ADVERSARIAL,
            "adversarial.discriminator=clip",
            "adversarial.generator_every=4",
            "adversarial.augment=[translation]",
        ),
    ),
    # issue 15 part 3, one run: LoRA DreamBooth + prior + LADD for 300 steps, then DRaFT-1 on the print
    # reward joins for 60 more (anchored to the step-300 weights), the subject loss still on, at the lr the
    # tuning half chose for DRaFT with the subject loss on (3e-5: reward -3.3 % vs -6.3 % at 1e-4, dog3 + cat3)
    Method("one-run", "miniature-lora.yaml", ONE_RUN),
    # the same, handing over at step 300 as the sequential path with the tuning half's DRaFT choice does
    # (a new run: the reward alone, subject loss off, fresh AdamW, no discriminator; lr 3e-5)
    Method("one-run-handover", "miniature-lora.yaml", (*ONE_RUN, "rl.handover=true", "rl.regularize_weight=0")),
    # issue 32: the same LoRA + prior on a quantized frozen base (weights only, torchao)
    Method("lora+prior+int8", "miniature-lora.yaml", ("model.quantize=int8",)),
    Method("lora+prior+nf4", "miniature-lora.yaml", ("model.quantize=nf4",)),
    # issue 34: does a new shape need more steps? (tuned on the new-tuning half only)
    Method("lora+prior-600", "miniature-lora.yaml", ("train.steps=600",)),
    # does the identifier bind the shape harder when the text encoder learns too (a LoRA on its attention)?
    Method("lora+prior+te", "miniature-lora.yaml", ("method.lora.text_encoder=true",)),
    # prior preservation helps new shapes (35 -> 56 % without / with): does more of it help more?
    Method("lora+prior-w1", "miniature-lora.yaml", ("prior.loss_weight=1.0",)),
    # the shape is lost in busy scenes, where the layout is made at high noise: Min-SNR (gamma 5) weights the
    # low-noise steps down, so the high-noise ones count relatively more
    Method("lora+prior+minsnr5", "miniature-lora.yaml", ("train.min_snr_gamma=5",)),
    # the personalized subjects come out soft and pale (experiments/head-dim-32): is the LoRA too small to hold a
    # flat, saturated new shape, is lr 1e-3 averaging it, does a mirrored photo teach a shape the judge refuses?
    Method("lora+prior-r64", "miniature-lora.yaml", ("method.lora.rank=64", "method.lora.alpha=64")),
    Method("lora+prior-lr3e-4", "miniature-lora.yaml", ("train.lr=3e-4", "train.steps=600")),
    Method("lora+prior-noflip", "miniature-lora.yaml", ("data.flip_p=0",)),
    # the soft, pale subjects carry the photos' plain pastel backgrounds into every context
    # (experiments/wider-outlines): a loss on the subject's mask, the background at 0.1 (as OneTrainer's
    # unmasked weight allows) or not at all (as kohya's masked loss)
    Method("lora+prior+mask", "miniature-lora.yaml", ("data.subject_masks=true", "data.background_weight=0.1")),
    Method("lora+prior+mask0", "miniature-lora.yaml", ("data.subject_masks=true", "data.background_weight=0")),
    # in busy scenes the class's usual shape replaces the subject's: is the class noun in the caption what pulls
    # it there? Trained and asked as "a sks" (class images still "a dog")
    Method("lora+prior-nonoun", "miniature-lora.yaml", ("data.instance_prompt=a sks",)),
    # or is it that every photo shows the subject on plain ground? The same subject photographed in five busy
    # scenes the evaluation does not use (a diagnostic: what varied photos would buy)
    Method(
        "lora+prior-scenes",
        "miniature-lora.yaml",
        photo_contexts=("wheat_field", "crowded_street", "sunflowers", "purple_rug_forest", "eiffel_tower"),
    ),
)


@dataclass(frozen=True)
class Job:
    method: Method
    subject: str
    seed: int
    extra: tuple[str, ...] = field(default=())
    model: str = ""  # a miniature pipeline folder to personalize ("" = the shipped one)

    def folder(self, root: Path) -> Path:
        return Path(root) / self.method.label / f"{self.subject}-s{self.seed}"


FIGURES = ("identity", "identity_all", "context_vs_truth", "class", "judge_gap_closed", "clip_i_gap_closed")
POOLED = {"judge_gap_pooled": "judge_similarity", "clip_i_gap_pooled": "clip_i"}  # gap of the means over runs


def row(metrics: dict) -> dict:
    """One run's figures: judge identity (chance 25 %), context relative to ground truth's, class, gaps closed."""
    p, c = metrics["personalized"], metrics["ceiling"]
    return {
        "identity": p["judge_identity"],
        "identity_all": p.get("judge_identity_all"),
        "context_vs_truth": p["judge_context"] / c["judge_context"] if c["judge_context"] else None,
        "class": p["judge_class"],
        "judge_gap_closed": metrics.get("judge_gap_closed"),
        "clip_i_gap_closed": metrics.get("clip_i_gap_closed"),
        "floor_identity": metrics["floor"]["judge_identity"],
        **{f"{r}_{key}": metrics[r][key] for key in POOLED.values() for r in ("floor", "personalized", "ceiling")},
    }


def pooled_gap(rows: list[dict], key: str) -> float:
    """(mean personalized - mean floor) / (mean ceiling - mean floor) over ``rows``: the share of the
    floor→ceiling gap closed, stable where single runs have tiny gaps (floor ≈ ceiling)."""
    mean = {r: sum(x[f"{r}_{key}"] for x in rows) / len(rows) for r in ("floor", "personalized", "ceiling")}
    gap = mean["ceiling"] - mean["floor"]
    return (mean["personalized"] - mean["floor"]) / gap if gap else math.nan


def pooled_gap_se(rows: list[dict], key: str, draws: int = 2000, seed: int = 0) -> float:
    """Standard error of :func:`pooled_gap` by a cluster bootstrap over subjects: a subject's runs
    (its seeds) share its floor and ceiling and are not independent, so whole subjects are drawn
    with replacement (``row["subject"]``) and the pooled gap recomputed. NaN with fewer than 2 subjects."""
    by_subject: dict[str, list[dict]] = {}
    for item in rows:
        by_subject.setdefault(item["subject"], []).append(item)
    groups = list(by_subject.values())
    if len(groups) < 2:
        return math.nan
    generator = random.Random(seed)
    values = [pooled_gap([item for _ in groups for item in generator.choice(groups)], key) for _ in range(draws)]
    values = [v for v in values if not math.isnan(v)]
    return statistics.stdev(values) if len(values) > 1 else math.nan


def reference_rows(metrics: dict) -> dict[str, dict]:
    """The floor (base model, class prompt) and the ceiling (ground truth) in the same terms as :func:`row`."""
    c = metrics["ceiling"]
    return {
        name: {
            "identity": r["judge_identity"],
            "identity_all": r.get("judge_identity_all"),
            "context_vs_truth": r["judge_context"] / c["judge_context"] if c["judge_context"] else None,
            "class": r["judge_class"],
            "judge_gap_closed": 0.0 if name == "floor" else 1.0,
            "clip_i_gap_closed": 0.0 if name == "floor" else 1.0,
        }
        for name, r in (("floor", metrics["floor"]), ("ceiling", c))
    }


PAIRED = (
    ("identity", "identity in class"),
    ("identity_all", "identity among all"),
    ("context_vs_truth", "context / truth's"),
)


def paired_differences(results: list[tuple[Job, dict]], base: str) -> str:
    """Each method minus ``base`` on the same (subject, seed), in points: mean ± paired standard error and the
    extremes, over the pairs both finished (a markdown table)."""
    runs = {(job.method.label, job.subject, job.seed): row(metrics) for job, metrics in results}
    labels = [label for label in dict.fromkeys(job.method.label for job, _ in results) if label != base]
    lines = ["| method − " + base + " | pairs | " + " | ".join(name for _, name in PAIRED) + " |"]
    lines.append("|---" * (len(PAIRED) + 2) + "|")
    for label in labels:
        pairs = [(runs[key], runs[(base, *key[1:])]) for key in runs if key[0] == label and (base, *key[1:]) in runs]
        cells = []
        for key, _ in PAIRED:
            diffs = [100 * (a[key] - b[key]) for a, b in pairs if a[key] is not None and b[key] is not None]
            mean, se, _ = mean_se(diffs)
            cells.append(f"{mean:+.2f} ± {se:.2f} ({min(diffs):+.1f} … {max(diffs):+.1f})" if diffs else "–")
        lines.append(f"| {label} | {len(pairs)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def mean_se(values: list[float | None]) -> tuple[float, float, int]:
    """Mean, standard error and count of the defined values (gap figures are undefined when floor = ceiling)."""
    values = [v for v in values if v is not None]
    if not values:
        return math.nan, math.nan, 0
    mean = sum(values) / len(values)
    spread = (
        math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) / math.sqrt(len(values))
        if len(values) > 1
        else 0.0
    )
    return mean, spread, len(values)


def run_job(job: Job, root: str, deadline: float | None = None) -> tuple[Job, dict | None, float]:
    """Run (or reuse) one demo run; returns the job, its metrics (None: not started, past ``deadline``)
    and the seconds it took."""
    out = job.folder(Path(root))
    started = time.perf_counter()
    if not (out / "metrics.json").is_file():
        if deadline and time.time() > deadline:
            return job, None, 0.0
        from dreamtune.miniature.demo import run_demo

        shutil.rmtree(out, ignore_errors=True)  # an unfinished run of an interrupted sweep (this module made it)
        out.parent.mkdir(parents=True, exist_ok=True)
        run_demo(
            out,
            subject=job.subject,
            recipe=RECIPES_DIR / job.method.recipe,
            overrides=[f"train.seed={job.seed}", *job.method.overrides, *job.extra],
            **({"photo_contexts": job.method.photo_contexts} if job.method.photo_contexts else {}),
            **({"model_dir": Path(job.model)} if job.model else {}),
        )
    return job, json.loads((out / "metrics.json").read_text()), time.perf_counter() - started


def _single_thread_worker() -> None:
    """Each parallel run on one CPU thread (the runs themselves are the parallelism)."""
    import torch

    torch.set_num_threads(1)


def run_jobs(
    jobs: list[Job], root: Path, parallel: int = 1, deadline: float | None = None, log=print
) -> list[tuple[Job, dict]]:
    """Run ``jobs`` in order (``parallel`` processes); no new job starts after ``deadline`` (time.time())."""
    from tqdm.auto import tqdm

    done = []
    bar = tqdm(total=len(jobs), desc="runs", unit="run")
    if parallel <= 1:
        for job in jobs:
            job, metrics, seconds = run_job(job, str(root), deadline)
            if metrics is None:  # past the deadline: not started (finished runs later in the list still count)
                continue
            done.append((job, metrics))
            log(
                json.dumps(
                    {
                        "run": f"{job.method.label}/{job.subject}-s{job.seed}",
                        "seconds": round(seconds, 1),
                        **row(metrics),
                    }
                )
            )
            bar.update()
        return done
    with ProcessPoolExecutor(parallel, mp_context=get_context("spawn"), initializer=_single_thread_worker) as pool:
        pending = {pool.submit(run_job, job, str(root), deadline): job for job in jobs}
        for future in as_completed(pending):
            if future.cancelled():
                continue
            try:
                job, metrics, seconds = future.result()
            except Exception as error:  # noqa: BLE001 — one failed run must not end a sweep; it is reported
                failed = pending[future]
                log(
                    json.dumps(
                        {"failed": f"{failed.method.label}/{failed.subject}-s{failed.seed}", "error": repr(error)[:500]}
                    )
                )
                bar.update()
                continue
            bar.update()
            if metrics is None:
                continue
            done.append((job, metrics))
            log(
                json.dumps(
                    {
                        "run": f"{job.method.label}/{job.subject}-s{job.seed}",
                        "seconds": round(seconds, 1),
                        **row(metrics),
                    }
                )
            )
            if deadline and time.time() > deadline:
                for waiting in pending:  # runs already started finish; the rest wait for the next sweep
                    waiting.cancel()
    return done


def table(results: list[tuple[Job, dict]], labels: list[str]) -> dict[str, dict]:
    """Mean ± s.e. over (subject, seed) runs per method, with the floor and ceiling rows first."""
    per_label: dict[str, list[dict]] = {}
    references: dict[str, list[dict]] = {"floor": [], "ceiling": []}
    seen = set()
    for job, metrics in results:
        per_label.setdefault(job.method.label, []).append({**row(metrics), "subject": job.subject})
        if (job.subject, job.seed) not in seen:  # the floor and truth do not depend on the method
            seen.add((job.subject, job.seed))
            for name, values in reference_rows(metrics).items():
                references[name].append(values)
    ordered = {
        "floor": references["floor"],
        **{label: per_label[label] for label in labels if label in per_label},
        "ceiling": references["ceiling"],
    }
    summary = {
        name: {key: mean_se([r.get(key) for r in rows]) for key in FIGURES} | {"runs": len(rows)}
        for name, rows in ordered.items()
        if rows
    }
    for name, figures in summary.items():
        for pooled, key in POOLED.items():
            value = {"floor": 0.0, "ceiling": 1.0}.get(name)
            figures[pooled] = (
                (value, math.nan, 1)
                if value is not None
                else (pooled_gap(per_label[name], key), pooled_gap_se(per_label[name], key), len(per_label[name]))
            )
    return summary


def markdown(summary: dict[str, dict]) -> str:
    lines = [
        "| method | runs | identity (in class) | identity (all instances) | context / truth's | class | judge gap closed, per run | "
        "CLIP-I gap closed, per run | judge gap closed, pooled (± s.e., subjects bootstrapped) | CLIP-I gap closed, pooled |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, figures in summary.items():
        cells = [f"{100 * m:.1f} ± {100 * s:.1f}" if n else "—" for m, s, n in (figures[k] for k in FIGURES)]
        cells += [
            f"{100 * figures[k][0]:.0f} %" + ("" if math.isnan(figures[k][1]) else f" ± {100 * figures[k][1]:.0f}")
            for k in POOLED
        ]
        lines.append(f"| {name} | {figures['runs']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _judge_run(
    run: Path, source: Path, metrics: dict, judge_dir: Path, model_dir: Path, seeds: int, cache: dict
) -> dict:
    """One finished run's metrics with every judge verdict made again from the images in ``run``'s floor and
    personalized folders (a run without its own floor borrows any other run's of the same subject under
    ``source``: the floor is the base model with the class prompt, the same for every method and seed)."""
    from PIL import Image

    from dreamtune.miniature import world
    from dreamtune.miniature.demo import EVAL_CONTEXTS, judge_rows, summarize
    from dreamtune.miniature.judge import reference_photos

    subject = metrics["subject"]
    floors = [run / "floor"] + sorted(Path(source).glob(f"*/{subject}-s*/floor"))
    floor = next(f for f in floors if (f / "generations.json").is_file())
    images = {}
    for row, folder in (("floor", floor), ("personalized", run / "personalized")):
        record = json.loads((folder / "generations.json").read_text())
        images[row] = [Image.open(folder / r["file"]).convert("RGB") for r in record["images"]]
    images["ceiling"] = [world.render(world.Scene(subject, c), 90_000 + s) for c in EVAL_CONTEXTS for s in range(seeds)]
    rows = {
        k: {m: v for m, v in metrics[k].items() if not m.startswith("judge_")}
        for k in ("floor", "personalized", "ceiling")
    }
    judge_rows(rows, judge_dir, model_dir, subject, images, reference_photos(subject), seeds, cache)
    return summarize(rows, metrics["wall_seconds"], subject, metrics["class"]) | {"judge": str(judge_dir)}


def rejudge(source: Path, target: Path, judge_dir: Path, model_dir: Path | None = None, seeds: int = 2) -> int:
    """Judge the saved images of every finished run under ``source`` again with the judge in
    ``judge_dir``; write each run's updated metrics to the same place under ``target`` (the source
    is left as it is). Returns the number of runs judged."""
    from dreamtune.miniature.assemble import MODEL_DIR

    model_dir = Path(model_dir or MODEL_DIR)
    judged, cache = 0, {}
    for metrics_file in sorted(Path(source).glob("*/*-s*/metrics.json")):
        run = metrics_file.parent
        updated = _judge_run(run, source, json.loads(metrics_file.read_text()), judge_dir, model_dir, seeds, cache)
        out = Path(target) / run.relative_to(source)
        out.mkdir(parents=True, exist_ok=True)
        (out / "metrics.json").write_text(json.dumps(updated, indent=1))
        judged += 1
    return judged


def resample(
    source: Path,
    target: Path,
    labels: list[str],
    scheduler: str,
    steps: int,
    guidance: float,
    model_dir: Path | None = None,
) -> int:
    """Draw the personalized images of every finished run of the methods ``labels`` under ``source`` again from
    its trained model with another sampler (same prompts, same seeds) and judge them with the shipped judge (through
    ``model_dir``'s VAE, the base the runs personalized; default the shipped one, as ``rejudge``); each
    run's images and metrics go to the same place under ``target`` (the source is left as it is; a run already
    there is kept, so an interrupted call resumes). Returns the number of runs drawn."""
    import shutil

    from dreamtune.miniature.assemble import MODEL_DIR
    from dreamtune.sampling.generate import GenerateRequest, generate

    model_dir = Path(model_dir or MODEL_DIR)
    drawn, cache = 0, {}
    for label in labels:
        for metrics_file in sorted((Path(source) / label).glob("*-s*/metrics.json")):
            run = metrics_file.parent
            out = Path(target) / run.relative_to(source)
            if (out / "metrics.json").is_file():
                continue
            record = json.loads((run / "personalized" / "generations.json").read_text())
            prompts = tuple(dict.fromkeys(image["prompt"] for image in record["images"]))
            per_prompt = len(record["images"]) // len(prompts)
            shutil.rmtree(out, ignore_errors=True)
            request = GenerateRequest(
                trained=str(run / "run" / "model"),
                prompts=prompts,
                images_per_prompt=per_prompt,
                steps=steps,
                guidance_scale=guidance,
                scheduler=scheduler,
                resolution=64,
            )
            generate(request, out / "personalized")
            metrics = json.loads(metrics_file.read_text())
            updated = _judge_run(out, source, metrics, MODEL_DIR / "judge", model_dir, per_prompt, cache)
            (out / "metrics.json").write_text(json.dumps(updated | {"sampler": [scheduler, steps, guidance]}, indent=1))
            drawn += 1
    return drawn
