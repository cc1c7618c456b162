"""Few-step personalized models on the miniature (issue 36): a personalized LoRA (the teacher, the demo's
recipe) distilled into a LoRA that samples in 1, 2 and 4 steps, with and without LADD's discriminator.

For each subject and seed, the teacher is the finished run of ``--teachers`` (benchmarks/miniature_methods.py
``--methods lora+prior``; run there first). Rows, all on the demo's 8 evaluation contexts × ``--images``
seeds, judged by the miniature's judge (identity within the class and among all instances, context) with
sharpness (high-frequency energy over the ground truth's) and seconds per image (one generate call of the
whole row, model loading included, on this machine):

  teacher@25     the teacher as the demo samples it (DDIM, 25 steps, guidance 4)
  teacher@k      the teacher in k trailing-DDIM steps, guidance 4 (what fewer steps give without distillation)
  <variant>@k    the distilled LoRA in k steps as it records (trailing DDIM; no guidance, or its own with
                 distill+cfg) (k = 1, 2, 4)

Variants: distill (the distillation loss alone), distill+ladd (with LADD's discriminator), distill+ladd+path (and
the teacher's guided path from each student state, distill.trajectory_weight=3), distill+cfg / distill+ladd+cfg (the
student keeps guidance 4: two calls a step), distill-all-contexts (a diagnostic: the evaluation's contexts in its
prompts). ``--tag`` names a variant run with other ``--extra`` settings. ``--teacher-first`` adds, per guided
student, the row teacher-first+<variant>@4: its own 4 steps with the first one taken by the teacher's LoRA.

    python benchmarks/few_step.py --half new-test --seeds 0 [--subjects dog_wolf,...] [--variants distill,distill+ladd]
        [--root runs/few-step] [--teachers runs/new-shape-test] [--teacher-first] [--collect] [--sheet SUBJECTS]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

RECIPE = ROOT / "dreamtune" / "recipes" / "miniature-distill.yaml"
VARIANTS = {
    "distill": (),
    # LADD's game beside the distillation loss: heads on a frozen copy of the denoiser, judged on re-noised latents
    "distill+ladd": (
        "adversarial.weight=0.1",
        "adversarial.discriminator=denoiser",
        "adversarial.augment=[]",
        "adversarial.r1_gamma=0",
        "adversarial.warmup_steps=50",
    ),
}
# with the guided-trajectory term: the teacher's guided steps from each of the student's states
VARIANTS["distill+ladd+path"] = (*VARIANTS["distill+ladd"], "distill.trajectory_weight=3")
STEPS = (1, 2, 4)


def _all_context_prompts() -> str:
    """Every one of the world's contexts, the evaluation's too: a diagnostic of whether the student's misses are
    contexts it never saw in distillation (not a fair figure: the evaluation's contexts are then trained on)."""
    from dreamtune.miniature import scenery

    return json.dumps(["{instance}", *[f"{{instance}} {p}" for p in scenery.PHRASES.values()]])


# the student keeps classifier-free guidance of its own (two denoiser calls a step instead of one)
VARIANTS["distill+cfg"] = ("distill.student_guidance=4.0",)
VARIANTS["distill+ladd+cfg"] = (*VARIANTS["distill+ladd"], "distill.student_guidance=4.0")


def teacher_dir(teachers: Path, subject: str, seed: int) -> Path:
    return teachers / "lora+prior" / f"{subject}-s{seed}"


def distill(teacher: Path, out: Path, variant: str, seed: int, extra: list[str]) -> Path:
    """Train (or reuse, or continue) one distilled LoRA; returns its model folder."""
    from dreamtune import config
    from dreamtune.training.run import train

    if (out / "model" / "dreamtune.json").is_file():
        return out / "model"
    settings = json.loads((teacher / "run" / "model" / "dreamtune.json").read_text())
    overrides = [
        f"method.lora.init_from={teacher / 'run' / 'model'}",
        f"data.instance_prompt={settings['instance_prompt']}",
        f"train.output_dir={out}",
        f"train.seed={seed}",
        *VARIANTS[variant],
        *extra,
    ]
    interrupted = any(out.glob("checkpoint-*/state.json"))  # an earlier session stopped mid-run: continue it
    return train(
        config.load(RECIPE, overrides),
        resume="latest" if interrupted else None,
        replace=not interrupted,
        show_progress=False,
    ).model_dir


def render(model: Path, prompts: list[str], images: int, steps: int, guidance: float, scheduler: str, out: Path):
    """(PIL images in prompt order, seconds per image for the whole call)."""
    from PIL import Image

    from dreamtune.sampling.generate import GenerateRequest, generate

    started = time.perf_counter()
    record = generate(
        GenerateRequest(
            trained=str(model),
            prompts=tuple(prompts),
            images_per_prompt=images,
            steps=steps,
            guidance_scale=guidance,
            scheduler=scheduler,
            resolution=64,
        ),
        out,
        show_progress=False,
    )
    seconds = (time.perf_counter() - started) / len(record["images"])
    return [Image.open(out / r["file"]).convert("RGB") for r in record["images"]], seconds


def render_teacher_first(teacher: Path, student: Path, prompts: list[str], images: int, out: Path, first: int = 1):
    """The student's own sampling (steps, trailing DDIM, guidance) with its first ``first`` steps taken by the teacher's
    LoRA instead (the same calls per step: both are guided): the teacher lays the scene out at high noise, where it
    keeps its contexts in 4 steps, the student draws the subject from there. (PIL images, seconds per image.)"""
    from PIL import Image

    from dreamtune.sampling.generate import GenerateRequest, load_pipeline, with_model_sampling
    from dreamtune.sampling.pipeline import sample

    started = time.perf_counter()
    pipeline, description = load_pipeline(GenerateRequest(trained=str(student)))
    request = with_model_sampling(GenerateRequest(trained=str(student)), description)
    student_adapter = pipeline.get_active_adapters()[0]
    pipeline.load_lora_weights(str(teacher), weight_name="pytorch_lora_weights.safetensors", adapter_name="teacher")

    def hand_over(pipe, step: int, timestep, tensors: dict) -> dict:
        if step == first - 1:
            pipe.set_adapters([student_adapter])
        if step == request.steps - 1:  # the next call (batch) starts with the teacher again
            pipe.set_adapters(["teacher"])
        return tensors

    pipeline.set_adapters(["teacher"])
    seeds = list(range(images))
    pairs = [(prompt, seed) for prompt in prompts for seed in seeds]
    pictures = sample(
        pipeline,
        [p for p, _ in pairs],
        [s for _, s in pairs],
        request.steps,
        request.guidance_scale,
        64,
        callback_on_step_end=hand_over,
    )
    out.mkdir(parents=True, exist_ok=True)
    for index, picture in enumerate(pictures):
        picture.save(out / f"{index:04d}.png")
    seconds = (time.perf_counter() - started) / len(pictures)
    return [Image.open(out / f"{i:04d}.png").convert("RGB") for i in range(len(pictures))], seconds


def evaluate(
    subject: str,
    seed: int,
    teacher: Path,
    students: dict[str, Path],
    out: Path,
    images: int,
    teacher_first: bool = False,
) -> dict:
    import shutil

    from miniature_sharpness import high_frequency

    from dreamtune.miniature import judge, scenery, world
    from dreamtune.miniature.assemble import MODEL_DIR
    from dreamtune.miniature.demo import EVAL_CONTEXTS, judge_rows, photographs

    done = json.loads((out / "metrics.json").read_text()) if (out / "metrics.json").is_file() else None
    rows: dict = done["rows"] if done else {}  # a finished evaluation gains only the rows it lacks
    settings = json.loads((teacher / "run" / "model" / "dreamtune.json").read_text())
    prompts = [f"{settings['instance_prompt']} {scenery.PHRASES[c]}" for c in EVAL_CONTEXTS]
    if not done:
        shutil.rmtree(out / "images", ignore_errors=True)
    rows_images, seconds = {}, {}
    plan = [("teacher@25", teacher / "run" / "model", 25, 4.0, "default")]
    plan += [(f"teacher@{k}", teacher / "run" / "model", k, 4.0, "ddim_trailing") for k in STEPS]
    plan += [(f"{v}@{k}", m, k, None, "default") for v, m in students.items() for k in STEPS]  # the model's own
    if teacher_first:  # the guided students at their own 4 steps, the first taken by the teacher
        plan += [(f"teacher-first+{v}@4", m, 4, None, "teacher-first") for v, m in students.items() if "cfg" in v]
    plan = [row for row in plan if row[0] not in rows]
    if done and not plan:
        return done
    for name, model, steps, guidance, scheduler in plan:
        folder = out / "images" / name.replace("@", "-")
        shutil.rmtree(folder, ignore_errors=True)
        if scheduler == "teacher-first":
            rows_images[name], seconds[name] = render_teacher_first(
                teacher / "run" / "model", model, prompts, images, folder
            )
        else:
            rows_images[name], seconds[name] = render(model, prompts, images, steps, guidance, scheduler, folder)
    truth = [world.render(world.Scene(subject, c), 90_000 + s) for c in EVAL_CONTEXTS for s in range(images)]
    if not done:
        rows_images["ground truth"] = truth
    photos = photographs(teacher / "photos")
    judge_rows(rows, MODEL_DIR / "judge", MODEL_DIR, subject, rows_images, photos, images)
    sharpness = lambda images: high_frequency(judge.to_pixels(images))
    sharp_truth = sharpness(truth)
    for name in rows_images:
        rows[name]["sharpness"] = round(sharpness(rows_images[name]) / sharp_truth, 4)
        rows[name]["seconds_per_image"] = round(seconds.get(name, 0.0), 4)
    return _merge_rows(out / "metrics.json", {"subject": subject, "seed": seed, "rows": rows})


def _merge_rows(path: Path, metrics: dict) -> dict:
    """Write ``metrics`` to ``path`` keeping the rows another process (another variant of the same subject
    and seed) wrote there meanwhile: read, merge and replace (atomically) under an exclusive lock."""
    import fcntl

    from dreamtune.atomic import write_json

    with open(path.with_name(path.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if path.is_file():
            metrics["rows"] = {**json.loads(path.read_text())["rows"], **metrics["rows"]}
        metrics["rows"]["ground truth"] = metrics["rows"].pop("ground truth")  # the table's last row
        write_json(path, metrics)
    return metrics


def table(results: list[dict]) -> str:
    """Mean ± s.e. over subjects (each subject's seeds averaged first)."""
    from subject_runs import mean_se

    names = list(results[0]["rows"])
    keys = [
        ("judge_identity", "identity (class)", 100),
        ("judge_identity_all", "identity (all)", 100),
        ("judge_context", "context", 100),
        ("sharpness", "sharpness / truth", 1),
        ("seconds_per_image", "s / image", 1),
    ]
    subjects = sorted({r["subject"] for r in results})
    lines = ["| row | " + " | ".join(label for _, label, _ in keys) + " |", "|---" * (len(keys) + 1) + "|"]
    for name in names:
        cells = []
        for key, _, scale in keys:
            per_subject = []
            for subject in subjects:
                values = [r["rows"][name][key] for r in results if r["subject"] == subject and name in r["rows"]]
                per_subject.append(sum(values) / len(values) * scale if values else None)
            mean, se, _ = mean_se(per_subject)
            cells.append(f"{mean:.1f} ± {se:.1f}" if scale == 100 else f"{mean:.3f} ± {se:.3f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines.append(f"\n{len(subjects)} subjects, {len(results)} (subject, seed) pairs\n")
    students = [n for n in names if n.endswith("@4") and not n.startswith("teacher@")]
    against_teachers = [(s, t) for s in students for t in ("teacher@25", "teacher@4")]
    # the discriminator's share: each LADD student minus the same student without it, at every step count
    ablation = [(n, n.replace("+ladd", "")) for n in names if "+ladd" in n and n.replace("+ladd", "") in names]
    return "\n".join(lines + differences(results, against_teachers + ablation, keys[:3], subjects))


def differences(results: list[dict], pairs: list[tuple[str, str]], keys, subjects: list[str]) -> list[str]:
    """Row minus reference for each (row, reference) pair, within (subject, seed): mean ± s.e. over subjects."""
    from subject_runs import mean_se

    lines = [
        "| difference (points) | " + " | ".join(label for _, label, _ in keys) + " |",
        "|---" * (len(keys) + 1) + "|",
    ]
    for row, reference in pairs:
        cells = []
        for key, _, scale in keys:
            per_subject = []
            for subject in subjects:
                both = [r["rows"] for r in results if r["subject"] == subject and row in r["rows"]]
                deltas = [scale * (rows[row][key] - rows[reference][key]) for rows in both]
                per_subject.append(sum(deltas) / len(deltas) if deltas else None)
            mean, se, _ = mean_se(per_subject)
            cells.append(f"{mean:+.1f} ± {se:.1f}")
        lines.append(f"| {row} − {reference} | " + " | ".join(cells) + " |")
    return lines


def sheet(root: Path, subjects: list[str], seed: int, out: Path, contexts: int = 4) -> None:
    """Per subject and context (the first ``contexts`` of the evaluation's) one line: ground truth, the teacher at
    25, 4 and 1 steps, then each student at 4, 2 and 1 steps (each row's first image of the context)."""
    from PIL import Image

    from dreamtune.miniature import world
    from dreamtune.miniature.demo import EVAL_CONTEXTS
    from dreamtune.sampling.contact_sheet import contact_sheet, save_png

    variants = sorted(
        {p.name.rsplit("-", 1)[0] for s in subjects for p in (root / "eval" / f"{s}-s{seed}" / "images").iterdir()}
        - {"teacher"}
    )
    rows = ["teacher-25", "teacher-4", "teacher-1"] + [f"{v}-{k}" for v in variants for k in (4, 2, 1)]
    rows = [r for r in rows if all((root / "eval" / f"{s}-s{seed}" / "images" / r).is_dir() for s in subjects)]
    images, captions = [], []
    for subject in subjects:
        folder = root / "eval" / f"{subject}-s{seed}" / "images"
        for c, context in enumerate(EVAL_CONTEXTS[:contexts]):
            images.append(world.render(world.Scene(subject, context), 90_000))
            captions.append(f"{subject}: truth" if c == 0 else context)
            for row in rows:
                files = sorted((folder / row).glob("*.png"))
                images.append(Image.open(files[c * (len(files) // len(EVAL_CONTEXTS))]).convert("RGB"))
                captions.append(" @".join(row.rsplit("-", 1)) if c == 0 else "")
    title = "few-step: truth | teacher at 25, 4, 1 steps | " + " | ".join(f"{v} at 4, 2, 1" for v in variants)
    picture = contact_sheet(images, captions, columns=1 + len(rows), cell=72, title=title)
    save_png(picture.quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE), out)  # a third the size


def main() -> None:
    import subject_split

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--half", default="new-test", choices=sorted(subject_split.HALVES))
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--subjects", default="")
    parser.add_argument("--variants", default="distill,distill+ladd")
    parser.add_argument("--root", default=str(ROOT / "runs" / "few-step"))
    parser.add_argument("--teachers", default=str(ROOT / "runs" / "new-shape-test"))
    parser.add_argument("--images", type=int, default=2, help="seeds per evaluation context")
    parser.add_argument("--collect", action="store_true", help="run nothing: tabulate the finished evaluations")
    parser.add_argument("--sheet", default="", help="run nothing: a contact sheet of these subjects")
    parser.add_argument("--sheet-seed", type=int, default=0, help="the training seed --sheet shows")
    parser.add_argument("--sheet-out", default="", help="where --sheet writes (default: <root>/few_step_sheet.png)")
    parser.add_argument("--extra", nargs="*", default=[], help="overrides added to every distillation run")
    parser.add_argument("--tag", default="", help="appended to the variants' names (runs with other --extra)")
    parser.add_argument(
        "--teacher-first", action="store_true", help="also a row per guided student with its first step the teacher's"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (1: run one process per core; several 2-thread processes on 2 cores ran 6x slower)",
    )
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    root, teachers = Path(args.root), Path(args.teachers)
    if args.sheet:
        out = Path(args.sheet_out) if args.sheet_out else root / "few_step_sheet.png"
        sheet(root, args.sheet.split(","), args.sheet_seed, out)
        return
    subjects = args.subjects.split(",") if args.subjects else list(subject_split.HALVES[args.half])
    seeds = [int(s) for s in args.seeds.split(",")]
    results = []
    for seed in seeds:
        for subject in subjects:
            teacher = teacher_dir(teachers, subject, seed)
            evaluation = root / "eval" / f"{subject}-s{seed}"
            if args.collect:
                if (evaluation / "metrics.json").is_file():
                    results.append(json.loads((evaluation / "metrics.json").read_text()))
                continue
            if not (teacher / "run" / "model" / "dreamtune.json").is_file():
                print(f"skipping {subject} seed {seed}: no teacher in {teacher} (run miniature_methods.py first)")
                continue
            if "distill-all-contexts" in args.variants:
                VARIANTS["distill-all-contexts"] = (f"distill.prompts={_all_context_prompts()}",)
            students = {
                v + args.tag: distill(teacher, root / (v + args.tag) / f"{subject}-s{seed}", v, seed, args.extra)
                for v in args.variants.split(",")
            }
            results.append(evaluate(subject, seed, teacher, students, evaluation, args.images, args.teacher_first))
            print(json.dumps({k: v for k, v in results[-1].items() if k != "rows"}), flush=True)
    if results:
        text = table(results)
        print(text)
        (root / "few_step_table.md").write_text(text + "\n")


if __name__ == "__main__":
    main()
