"""Few-step distillation (issue 36): a personalized LoRA as the teacher, a LoRA that samples in a few
trailing-DDIM steps as the student; refusals in one sentence, the sampler's grid, bit-identical resume."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from dreamtune import config
from dreamtune.errors import UserError
from dreamtune.training.run import train
from tests.conftest import tiny_overrides, train_killed_at

PROMPT = "a photo of sks dog"
DISTILL = {
    "distill.steps": 2,
    "distill.teacher_steps": 4,
    "distill.pool": 4,
    "distill.prompts": '["{instance}", "{instance} on the beach"]',
    "data.instance_prompt": PROMPT,
    "train.batch_size": 2,
}


@pytest.mark.parametrize(
    "overrides, words",
    [
        ({"distill.steps": 4, "distill.teacher_steps": 4}, "is not fewer than distill.teacher_steps"),
        (
            {"distill.steps": 4, "rl.algorithm": "draft", "rl.rewards.clip_score": 1, "rl.prompts": "[a dog]"},
            "both replace the training loss",
        ),
        ({"distill.steps": 4, "method.kind": "textual_inversion"}, "textual inversion trains only a word"),
        ({"distill.steps": 4, "prior.enabled": True, "prior.class_prompt": "a dog"}, "has no role in a distillation"),
        ({"distill.steps": 4, "distill.prompts": "[]"}, "distill.prompts is empty"),
        ({"distill.steps": 4, "distill.teacher_steps": 10, "distill.trajectory_weight": 1}, "to be a multiple of"),
        ({"distill.steps": 4, "distill.trajectory_weight": -1}, "distill.trajectory_weight is -1"),
    ],
)
def test_settings_distillation_cannot_use_are_refused_in_one_sentence(overrides, words):
    with pytest.raises(UserError, match=words) as refused:
        config.load(None, [f"{k}={v}" for k, v in overrides.items()])
    assert str(refused.value).count(". ") <= 1


def test_few_step_sampling_starts_at_the_top_of_the_schedule(tiny_models):
    """Trailing DDIM: 4 steps at 999, 749, 499, 249 (holding the 2- and 1-step grids); SD's leading spacing
    would start 4 steps at 751 and 1 step at t=1. The same grid reaches generate as --scheduler ddim_trailing."""
    from dreamtune.models.loading import load_components
    from dreamtune.sampling.pipeline import scheduler_for

    components = load_components(config.load(None, [f"model.pretrained={tiny_models['sd1']}"]).model)
    grid = lambda steps: components.sampler(steps, 32, start_at_noise=True).timesteps.tolist()
    assert (grid(4), grid(2), grid(1)) == ([999, 749, 499, 249], [999, 499], [999])
    assert components.sampler(4, 32).timesteps.tolist()[0] < 999  # the default keeps the model's own spacing
    scheduler = scheduler_for("ddim_trailing", components.noise_scheduler.config)
    scheduler.set_timesteps(4)
    assert scheduler.timesteps.tolist() == [999, 749, 499, 249]


def _objective(model: str, steps: int, teacher_steps: int, guidance: float):
    from dreamtune.models.loading import load_components
    from dreamtune.objectives.distill import DistillSettings, FewStepDistillation

    components = load_components(config.load(None, [f"model.pretrained={model}"]).model)
    settings = DistillSettings(steps, teacher_steps, guidance, 1.0, 2, (PROMPT,), 1.0, 1.0, 32, 0)
    return components, FewStepDistillation(components, {}, settings, log=lambda *_: None)


@pytest.mark.parametrize("family", ["sd1", "flux"])
def test_the_guided_trajectory_target_is_the_clean_latent_whose_student_step_lands_on_the_teacher(tiny_models, family):
    """Two checks of distill.trajectory_weight's target, written without the objective's algebra: (1) with
    one teacher step per student step and no guidance, the teacher (= the untrained student) predicts the
    student's own x̂0; (2) with two guided teacher steps per student step, the student's step from the target
    (the DDIM / Euler update written out here) lands where the teacher's two steps land."""
    from dreamtune.objectives.guided import condition, guided_prediction, initial_latents

    components, same = _objective(tiny_models[family], 2, 2, 1.0)
    conditioning = condition(components, [PROMPT, PROMPT], 32, "cpu")
    latents = initial_latents(components, [1, 2], 32, "cpu")
    k = torch.tensor([0, 1])
    grid = same.student_sampler.timesteps
    with torch.no_grad():
        own = guided_prediction(components, latents, grid[k], conditioning, 1.0)
        expected = components.noise.predicted_clean(latents, own, grid[k])
    torch.testing.assert_close(same._trajectory_target(latents, k, conditioning), expected, rtol=1e-4, atol=1e-4)

    components, guided = _objective(tiny_models[family], 2, 4, 3.0)
    target = guided._trajectory_target(latents, k, conditioning)
    teacher, landed = guided.teacher_sampler, latents
    with torch.no_grad():
        for j in range(2):
            steps = teacher.timesteps[k * 2 + j]
            prediction = guided_prediction(components, landed, steps, conditioning, 3.0, guided.teacher)
            landed = teacher.step(prediction, steps, landed, 0.0)[0]
    view = lambda v: v.float().view(-1, 1, *([1] * (latents.ndim - 2)))
    if family == "sd1":  # DDIM: x' = √ᾱ' x̃0 + √(1-ᾱ') (x - √ᾱ x̃0) / √(1-ᾱ)
        scheduler = guided.student_sampler.scheduler
        alphas = scheduler.alphas_cumprod
        t = grid[k]
        a = view(alphas[t])
        before = t - 1000 // 2
        a_next = view(torch.where(before >= 0, alphas[before.clamp(min=0)], scheduler.final_alpha_cumprod))
        step = a_next.sqrt() * target + (1 - a_next).sqrt() * (latents - a.sqrt() * target) / (1 - a).sqrt()
    else:  # Euler on σ: x' = x + (σ' - σ) (x - x̃0) / σ
        sigmas = guided.student_sampler.sigmas
        sigma, following = view(sigmas[k]), view(sigmas[k + 1])
        step = latents + (following - sigma) * (latents - target) / sigma
    torch.testing.assert_close(step, landed, rtol=1e-3, atol=1e-3)
    assert not torch.allclose(target, same._trajectory_target(latents, k, conditioning), atol=1e-3)


LADD_PATH = {
    "distill.trajectory_weight": 1,
    "adversarial.weight": 0.5,
    "adversarial.discriminator": "denoiser",
    "adversarial.r1_gamma": 0,
}


@pytest.mark.parametrize("extra", [{}, LADD_PATH], ids=["distill", "distill+ladd+path"])
def test_distillation_learns_from_the_teacher_and_resumes_bit_identical(
    tiny_models, photos, tmp_path, monkeypatch, capsys, extra
):
    """Also: the checkpoint keeps the teacher's pool, so the resumed run does not sample the teacher again."""
    quiet = {"show_progress": False, "log": lambda *_: None}
    teacher = train(
        config.load(
            None,
            tiny_overrides(
                tiny_models["sd1"], photos, tmp_path / "teacher", **{"train.steps": 2, "data.instance_prompt": PROMPT}
            ),
        ),
        **quiet,
    )
    settings = {
        **DISTILL,
        "method.lora.init_from": str(teacher.model_dir),
        "train.steps": 6,
        "train.lr": 5e-3,
        "train.checkpoint_every": 2,
        "train.keep_checkpoints": 2,
        **extra,
    }
    full = train(config.load(None, tiny_overrides(tiny_models["sd1"], photos, tmp_path / "full", **settings)), **quiet)
    cut = config.load(None, tiny_overrides(tiny_models["sd1"], photos, tmp_path / "cut", **settings))
    train_killed_at(cut, 5, monkeypatch)
    assert (tmp_path / "cut" / "checkpoint-000004" / "extra-pool.safetensors").is_file()
    assert "teacher samples" in capsys.readouterr().out  # the first runs sampled the teacher
    resumed = train(cut, resume="latest", **quiet)
    assert "teacher samples" not in capsys.readouterr().out  # the pool came from the checkpoint
    weights = lambda result: load_file(str(result.model_dir / "pytorch_lora_weights.safetensors"))
    a, b, start = weights(full), weights(resumed), weights(teacher)
    assert a.keys() == b.keys() == start.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], start[k]) for k in a)  # the student moved from the teacher's LoRA
    assert [r["loss"] for r in full.history[4:]] == [r["loss"] for r in resumed.history]
    assert all(r["distill/step"] in (0.0, 0.5, 1.0) for r in full.history)  # the mean of k over a batch of 2


def test_a_few_step_model_says_how_to_sample_it_and_generate_follows(tiny_models, photos, tmp_path):
    """dreamtune.json records the student's sampling; the model card and the kohya file's header say it; generate
    uses it when --steps / --guidance-scale / --scheduler are left out, and an explicit value still wins."""
    import json

    from safetensors import safe_open

    from dreamtune.sampling.generate import GenerateRequest, generate

    quiet = {"show_progress": False, "log": lambda *_: None}
    run = train(
        config.load(
            None, tiny_overrides(tiny_models["sd1"], photos, tmp_path / "run", **{**DISTILL, "train.steps": 2})
        ),
        **quiet,
    )
    sampling = json.loads((run.model_dir / "dreamtune.json").read_text())["sampling"]
    assert {k: sampling[k] for k in ("steps", "scheduler", "guidance_scale")} == {
        "steps": 2,
        "scheduler": "ddim_trailing",
        "guidance_scale": 1.0,
    }
    card = (run.model_dir / "README.md").read_text()
    assert "## Few-step sampling" in card and 'timestep_spacing="trailing"' in card
    kohya = next(p for p in run.model_dir.glob("*.safetensors") if p.name != "pytorch_lora_weights.safetensors")
    with safe_open(str(kohya), "pt") as f:
        assert (
            f.metadata()["modelspec.usage_hint"]
            == "few-step LoRA: 2 steps (or fewer), CFG 1, DDIM with trailing timesteps"
        )
    own = generate(GenerateRequest(trained=str(run.model_dir), prompts=("{subject} dog",)), tmp_path / "own", False)
    asked = generate(
        GenerateRequest(trained=str(run.model_dir), prompts=("x",), steps=1, guidance_scale=3.0, scheduler="ddim"),
        tmp_path / "asked",
        False,
    )
    from dreamtune.sampling.generate import load_pipeline

    pipeline, _ = load_pipeline(GenerateRequest(trained=str(run.model_dir)))  # what actually samples, not the record
    assert pipeline.scheduler.config.timestep_spacing == "trailing"
    pick = lambda record: tuple(record["request"][k] for k in ("steps", "guidance_scale", "scheduler"))
    assert pick(own) == (2, 1.0, "ddim_trailing") and pick(asked) == (1, 3.0, "ddim")
    plain = train(
        config.load(
            None, tiny_overrides(tiny_models["sd1"], photos, tmp_path / "plain", **{"data.instance_prompt": PROMPT})
        ),
        **quiet,
    )
    assert json.loads((plain.model_dir / "dreamtune.json").read_text())["sampling"] is None
    record = generate(GenerateRequest(trained=str(plain.model_dir), prompts=("x",)), tmp_path / "usual", False)
    assert pick(record) == (30, 7.5, "ddim")  # an ordinary model keeps the usual defaults
