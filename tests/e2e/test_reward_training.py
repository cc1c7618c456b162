"""Reward fine-tuning through the one loop on tiny models: DDPO (rollout source, PPO ratio) and
DRaFT-K (gradients through the last sampler steps), on LoRA and full weights, a personalized
start (LoRA init_from) with the denoising regularizer, and the DDIM log-probability step."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from dreamtune import config
from dreamtune.diffusion.ddim import ddim_step
from dreamtune.errors import UserError
from dreamtune.training.rollouts import advantages_per_prompt
from dreamtune.training.run import train
from tests.conftest import print_quality_rollouts, settings_of, tiny_overrides, train_killed_at

needs_profile = pytest.mark.skipif(
    not __import__("pathlib").Path("/usr/share/color/icc/ghostscript/default_cmyk.icc").is_file(),
    reason="Ghostscript's default_cmyk.icc is not installed (apt-get install libgs-common; make setup does it)",
)
RL = [
    "rl.rewards.print_quality=1",
    "rl.prompts=[a dog on the beach, a cat in the snow]",
    "rl.sample_steps=4",
    "rl.samples_per_round=4",
    "rl.images_per_prompt=2",
    "rl.clip_range=0.2",
    "data.resolution=32",
    "train.mixed_precision=no",
]


def _run(tmp_path, tiny_models, *extra, name="run"):
    out = tmp_path / name
    cfg = config.load(
        None,
        [
            f"model.pretrained={tiny_models['sd1']}",
            f"train.output_dir={out}",
            "train.steps=4",
            "train.lr=1e-3",
            "train.batch_size=4",
            *RL,
            *extra,
        ],
    )
    return train(cfg, show_progress=False, log=lambda *_: None), out


def _assert_resumed_run_matches(full, tmp_path, tiny_models, monkeypatch, kill_at: int, *extra):
    """The same run as ``full`` (``_run`` with ``extra``), killed before step ``kill_at`` and resumed from its
    latest checkpoint, ends with bit-identical LoRA weights."""
    cut = config.load(
        None,
        [
            f"model.pretrained={tiny_models['sd1']}",
            f"train.output_dir={tmp_path / 'cut'}",
            "train.steps=4",
            "train.batch_size=4",
            *RL,
            *extra,
        ],
    )
    train_killed_at(cut, kill_at, monkeypatch)
    resumed = train(cut, resume="latest", show_progress=False, log=lambda *_: None)
    a = load_file(str(full.model_dir / "pytorch_lora_weights.safetensors"))
    b = load_file(str(resumed.model_dir / "pytorch_lora_weights.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_ddim_step_matches_diffusers_and_scores_its_own_sample():
    from diffusers import DDIMScheduler

    scheduler = DDIMScheduler(
        beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, set_alpha_to_one=False, clip_sample=False
    )  # as Stable Diffusion; ddim_step does not clip x0
    scheduler.set_timesteps(10)
    x, eps, t = torch.randn(2, 4, 8, 8), torch.randn(2, 4, 8, 8), scheduler.timesteps[3]
    reference = scheduler.step(eps, t, x, eta=1.0, generator=torch.Generator().manual_seed(0)).prev_sample
    sample, log_prob, _ = ddim_step(
        scheduler, eps, torch.full((2,), int(t)), x, 1.0, generator=torch.Generator().manual_seed(0)
    )
    assert torch.allclose(sample, reference, atol=1e-6)
    _, again, _ = ddim_step(scheduler, eps, torch.full((2,), int(t)), x, 1.0, prev_sample=sample)
    assert torch.allclose(log_prob, again)
    _, elsewhere, _ = ddim_step(scheduler, eps, torch.full((2,), int(t)), x, 1.0, prev_sample=sample + 0.5)
    assert (elsewhere < log_prob).all()  # a sample far from the mean is less likely


def test_advantages_are_normalised_within_each_prompt():
    rewards = torch.tensor([1.0, 3.0, 10.0, 30.0])
    advantages = advantages_per_prompt(rewards, ["a", "a", "b", "b"])
    assert torch.allclose(advantages, torch.tensor([-0.7071, 0.7071, -0.7071, 0.7071]), atol=1e-4)


@pytest.mark.parametrize("algorithm, kind", [("ddpo", "lora"), ("ddpo", "dreambooth"), ("draft", "lora")])
def test_reward_training_changes_only_the_trained_weights(tmp_path, tiny_models, algorithm, kind):
    result, out = _run(tmp_path, tiny_models, f"rl.algorithm={algorithm}", f"method.kind={kind}")
    records = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(records) == 4 and all(r["reward"] if "reward" in r else r["round/reward"] for r in records)
    if algorithm == "ddpo":
        assert records[0]["approx_kl"] == 0.0  # first step of a round: same weights, ratio exactly 1
    if kind == "lora":
        weights = load_file(str(result.model_dir / "pytorch_lora_weights.safetensors"))
        assert any(float(v.abs().max()) > 0 for k, v in weights.items() if "lora_B" in k)
    else:
        assert (result.model_dir / "model_index.json").is_file()


def test_personalized_start_with_regularizer(tmp_path, tiny_models, photos):
    first = train(
        config.load(
            None,
            tiny_overrides(tiny_models["sd1"], photos, tmp_path / "lora", **{"train.lr": 1e-2})
            + ["method.kind=lora", "data.instance_prompt=a sks dog"],
        ),
        show_progress=False,
        log=lambda *_: None,
    )
    start = load_file(str(first.model_dir / "pytorch_lora_weights.safetensors"))
    result, out = _run(
        tmp_path,
        tiny_models,
        "method.kind=lora",
        "rl.algorithm=draft",
        f"method.lora.init_from={first.model_dir}",
        f"data.instance_dir={photos}",
        "data.instance_prompt=a sks dog",
        "rl.regularize_weight=0.5",
        "prior.enabled=true",
        "prior.class_prompt=a dog",
        "prior.num_class_images=2",
        "prior.sample_steps=2",
        "train.steps=1",
        "train.lr=1e-12",
        name="rl",
    )
    record = json.loads((out / "metrics.jsonl").read_text().splitlines()[0])
    assert "denoise/loss" in record and "reward" in record
    end = load_file(str(result.model_dir / "pytorch_lora_weights.safetensors"))
    assert all(torch.allclose(start[k], end[k], atol=1e-6) for k in start)  # started from the trained LoRA (lr ~ 0)


@pytest.mark.parametrize("algorithm, identity", [("draft", "dino"), ("ddpo", "")])
def test_subject_in_context_scores_the_subject_against_class_images_the_run_makes(
    tmp_path, tiny_models, photos, algorithm, identity
):
    """Without the denoising regularizer nothing else needs class images: the reward alone has them made.
    The identity half can see through another network (a DINO ViT here) while the CLIP judges the scene."""
    from dreamtune.models.tiny import build_tiny_feature_models

    features = build_tiny_feature_models(tmp_path / "features")
    clip = features["clip"]
    result, out = _run(
        tmp_path,
        tiny_models,
        "method.kind=lora",
        f"rl.algorithm={algorithm}",
        "rl.rewards.print_quality=0",
        "rl.rewards.subject_in_context=1",
        f"rl.clip={clip}",
        f"rl.identity_model={features[identity] if identity else ''}",
        "rl.prompts=['a {subject} dog on the beach', 'a {subject} dog in the snow']",
        "rl.class_noun=dog",
        f"data.instance_dir={photos}",
        "prior.enabled=true",
        "prior.class_prompt=a dog",
        "prior.num_class_images=2",
        "prior.sample_steps=2",
        "train.steps=1",
    )
    record = json.loads((out / "metrics.jsonl").read_text().splitlines()[0])
    logged = "round/" if algorithm == "ddpo" else ""  # DDPO logs its rollout round's rewards
    parts = ("reward/subject_in_context", "reward/subject_in_context/identity", "reward/subject_in_context/context")
    assert all(0 <= record[logged + k] <= 1 for k in parts) and "denoise/loss" not in record
    assert len(list((out / "class_images").glob("**/*.png"))) == 2 and result.model_dir.is_dir()


def test_subject_in_context_mistakes_are_one_sentence():
    reward = ["rl.algorithm=draft", "rl.rewards.subject_in_context=1"]
    scenes = "rl.prompts=[a sks dog on the beach, a sks dog in the snow]"
    with pytest.raises(UserError, match="prior.enabled=true"):
        config.load(None, [*reward, scenes])
    with pytest.raises(UserError, match="at least two rl.prompts"):
        config.load(None, [*reward, "rl.prompts=[a sks dog]", "prior.enabled=true", "prior.class_prompt=a dog"])
    with pytest.raises(UserError, match="rl.identity_weight is 0.0; it must be above 0.0 and at most 1.0"):
        config.load(None, [*reward, scenes, "prior.enabled=true", "prior.class_prompt=a dog", "rl.identity_weight=0"])


def test_reward_config_mistakes_are_one_sentence():
    with pytest.raises(UserError, match="needs a reward"):
        config.load(None, ["rl.algorithm=ddpo", "rl.prompts=[a dog]"])
    with pytest.raises(UserError, match="not differentiable"):
        config.load(None, ["rl.algorithm=draft", "rl.prompts=[a dog]", "rl.rewards.jpeg_compressibility=1"])
    with pytest.raises(UserError, match="rl.prompts is empty"):
        config.load(None, ["rl.algorithm=ddpo", "rl.rewards.print_quality=1"])


def test_a_ddpo_step_makes_good_steps_likelier_and_bad_ones_less_likely(tiny_models):
    """The direction of the PPO update: after one step, log p(x_{t-1}|x_t) rises where the
    advantage is positive and falls where it is negative."""
    from dreamtune.models.adapters import make_trainable
    from dreamtune.models.loading import load_components
    from dreamtune.objectives.ddpo import DDPOObjective, DDPOSettings
    from dreamtune.objectives.guided import guided_prediction

    cfg = config.load(None, [f"model.pretrained={tiny_models['sd1']}", "method.kind=dreambooth"])
    components = load_components(cfg.model)
    parts = make_trainable(components, cfg)
    settings = settings_of(DDPOSettings, "rl", "data", sample_steps=4, guidance_scale=3.0, eta=1.0, clip_range=10.0)
    objective = DDPOObjective(components, parts.modules, settings)
    source = print_quality_rollouts(
        components,
        prompts=("a dog", "a cat"),
        samples_per_round=8,
        images_per_prompt=4,
        batch_size=32,
        sample_steps=4,
        guidance_scale=3.0,
        resolution=32,
    )
    batch = source.batch(0)

    def log_probs():
        with torch.no_grad():
            prediction = guided_prediction(components, batch["latents"], batch["timesteps"], batch["conditioning"], 3.0)
            return objective.sampler.step(
                prediction, batch["timesteps"], batch["latents"], 1.0, prev_sample=batch["next_latents"]
            )[1]

    before = log_probs()
    assert torch.allclose(before, batch["log_probs"], atol=1e-4)  # the stored log-probabilities are the model's
    optimizer = torch.optim.SGD([p for p in components.denoiser.parameters() if p.requires_grad], lr=1e-3)
    objective(batch, 0).losses["model"].backward()
    optimizer.step()
    change = log_probs() - before
    advantages = batch["advantages"]
    assert float((change * advantages).sum()) > 0
    assert float(change[advantages > 0].mean()) > float(change[advantages < 0].mean())


def test_last_steps_restricts_the_trained_transitions_to_the_end_of_each_trajectory(tiny_models):
    from dreamtune.models.loading import load_components

    components = load_components(config.load(None, [f"model.pretrained={tiny_models['sd1']}"]).model)
    source = print_quality_rollouts(
        components,
        prompts=("a dog", "a cat"),
        samples_per_round=4,
        images_per_prompt=2,
        batch_size=4,
        sample_steps=6,
        last_steps=2,
        guidance_scale=3.0,
        resolution=32,
    )
    assert source.transitions == 4 * 2 and source.steps_per_round == 2
    served = torch.cat([source.batch(k)["timesteps"] for k in range(2)])
    assert set(served.tolist()) == set(source.sampler.timesteps[-2:].tolist())  # the two least noisy steps only


def test_kl_leash_is_zero_at_the_start_and_pulls_back_towards_it(tiny_models):
    from dreamtune.models.adapters import make_trainable
    from dreamtune.models.loading import load_components
    from dreamtune.objectives.ddpo import DDPOObjective, DDPOSettings

    cfg = config.load(None, [f"model.pretrained={tiny_models['sd1']}", "method.kind=lora"])
    components = load_components(cfg.model)
    parts = make_trainable(components, cfg)
    objective = DDPOObjective(
        components,
        parts.modules,
        settings_of(DDPOSettings, "rl", "data", sample_steps=4, guidance_scale=3.0, kl_weight=1.0),
    )
    source = print_quality_rollouts(
        components,
        prompts=("a dog", "a cat"),
        samples_per_round=4,
        images_per_prompt=2,
        batch_size=16,
        sample_steps=4,
        guidance_scale=3.0,
        resolution=32,
    )
    batch = source.batch(0)
    assert objective(batch, 0).metrics["kl_to_start"] == 0.0
    trained = [p for p in components.denoiser.parameters() if p.requires_grad]
    with torch.no_grad():
        for p in trained:
            p.add_(0.05 * torch.randn_like(p))
    moved = objective(batch, 0).metrics["kl_to_start"]
    assert moved > 0
    batch = {**batch, "advantages": torch.zeros_like(batch["advantages"])}  # the KL term alone
    optimizer = torch.optim.SGD(trained, lr=0.05)
    for _ in range(3):
        optimizer.zero_grad()
        objective(batch, 0).losses["model"].backward()
        optimizer.step()
    assert objective(batch, 0).metrics["kl_to_start"] < moved


def test_branched_groups_share_the_steps_before_the_last_k_and_differ_after(tiny_models):
    from dreamtune.models.loading import load_components
    from dreamtune.objectives.guided import guided_prediction

    components = load_components(config.load(None, [f"model.pretrained={tiny_models['sd1']}"]).model)
    source = print_quality_rollouts(
        components,
        prompts=("a dog", "a cat"),
        samples_per_round=6,
        images_per_prompt=3,
        batch_size=6,
        sample_steps=5,
        last_steps=2,
        branch=True,
        guidance_scale=3.0,
        resolution=32,
    )
    batch = source.batch(0)
    chain = source.data["trajectories"]["latents"]  # (6, 6, C, h, w): 2 groups x 3 branches
    assert chain.shape[:2] == (6, 6)
    for group in (chain[:3], chain[3:]):
        assert torch.equal(group[0, :4], group[1, :4]) and torch.equal(
            group[0, :4], group[2, :4]
        )  # start + 3 shared steps
        assert not torch.allclose(group[0, 4], group[1, 4])  # the branches' first own step differs
    assert not torch.allclose(chain[0, 0], chain[3, 0])  # groups start from their own noise
    advantages = source.data["advantages"]
    assert torch.allclose(advantages.view(2, 3).mean(1), torch.zeros(2), atol=1e-3)
    with torch.no_grad():  # stored log-probabilities are the model's
        prediction = guided_prediction(components, batch["latents"], batch["timesteps"], batch["conditioning"], 3.0)
        again = source.sampler.step(
            prediction, batch["timesteps"], batch["latents"], 1.0, prev_sample=batch["next_latents"]
        )[1]
    assert torch.allclose(again, batch["log_probs"], atol=1e-4)
    assert set(batch["timesteps"].tolist()) <= set(source.sampler.timesteps[-2:].tolist())


def test_branch_without_last_steps_is_refused():
    with pytest.raises(UserError, match="rl.last_steps"):
        config.load(None, ["rl.branch=true"])


@needs_profile
@pytest.mark.parametrize(
    "algorithm, extra", [("ddpo", ()), ("ddpo", ("rl.branch=true", "rl.last_steps=2")), ("draft", ())]
)
def test_the_print_reward_scores_against_the_starting_models_same_seed_image(tmp_path, tiny_models, algorithm, extra):
    """At the first step the policy is the start, so each image is its own reference: colour and
    sharpness parts are exactly 1 — also when DDPO's images branch (the reference once took another
    noise path there and scored a different picture); later, the start's images stay the reference."""
    result, out = _run(
        tmp_path,
        tiny_models,
        f"rl.algorithm={algorithm}",
        "rl.rewards.print_quality=0",
        "rl.rewards.print_proof=1",
        "train.lr=3e-2",
        *extra,
    )
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    key = "round/reward/print_proof/{}" if algorithm == "ddpo" else "reward/print_proof/{}"
    assert records[0][key.format("colour")] == pytest.approx(1.0, abs=1e-5)
    assert records[0][key.format("sharpness")] == pytest.approx(1.0, abs=1e-5)
    assert all(0 <= records[-1][key.format(part)] <= 1 for part in ("fidelity", "colour", "ink", "detail", "sharpness"))
    if algorithm == "draft":  # the weights moved, the reference did not: the images now differ from it
        assert records[-1][key.format("sharpness")] < 1.0


ONE_RUN = [
    "method.kind=lora",
    "rl.algorithm=draft",
    "rl.rewards.print_quality=0",
    "rl.rewards.print_proof=1",
    "rl.regularize_weight=1",
    "rl.start_step=2",
    "data.instance_prompt=a sks dog",
    "prior.enabled=true",
    "prior.class_prompt=a dog",
    "prior.num_class_images=2",
    "prior.sample_steps=2",
    "adversarial.weight=0.1",
    "adversarial.discriminator=denoiser",
    "adversarial.r1_gamma=0",
    "train.lr=3e-2",
    "rl.lr=3e-3",
    "train.checkpoint_every=3",
]


@needs_profile
def test_one_run_personalizes_then_adds_the_reward_anchored_where_it_joins_and_resumes_exactly(
    tmp_path, tiny_models, photos, monkeypatch
):
    """LoRA DreamBooth + prior + the adversarial game from step 1, the print reward from step 3
    (rl.start_step=2): no reward before; at its first step the images are their own reference (the
    anchor is the weights reached there, not the base model), so colour and sharpness are exactly
    1; a run stopped after the start and resumed anchors to the same weights (bit-identical)."""
    full, out = _run(tmp_path, tiny_models, f"data.instance_dir={photos}", *ONE_RUN, name="full")
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert ["reward" in r for r in records] == [False, False, True, True]
    assert all("denoise/adv/d_loss" in r for r in records)
    assert records[2]["reward/print_proof/colour"] == pytest.approx(1.0, abs=1e-5)
    assert records[2]["reward/print_proof/sharpness"] == pytest.approx(1.0, abs=1e-5)
    assert records[3]["reward/print_proof/sharpness"] < 1.0
    assert (out / "checkpoint-000003" / "extra-reward.safetensors").is_file()
    # rl.lr from the start on (the log shows the rate after each step's schedule update: the next step's)
    assert [r["lr/model"] for r in records] == pytest.approx([3e-2, 3e-3, 3e-3, 3e-3])

    _assert_resumed_run_matches(full, tmp_path, tiny_models, monkeypatch, 3, f"data.instance_dir={photos}", *ONE_RUN)


@needs_profile
def test_handover_leaves_the_reward_alone_from_fresh_optimizer_state_and_resumes_exactly(
    tmp_path, tiny_models, photos, monkeypatch
):
    """rl.handover: the subject loss and the adversarial game train until the start (step 3), then
    the reward alone (rl.regularize_weight=0), the model's AdamW restarted there as a new run's
    would be (its step count starts again); stopped at the start (its checkpoint holds the
    restarted optimizer) and resumed, the weights are bit-identical."""
    steps = {}
    original = torch.optim.AdamW.step

    def counting(self, *args, **kwargs):
        result = original(self, *args, **kwargs)
        if len(self.param_groups[0]["params"]) and self.state:
            first = self.state[self.param_groups[0]["params"][0]]
            steps.setdefault(id(self), []).append(int(first["step"]))
        return result

    monkeypatch.setattr(torch.optim.AdamW, "step", counting)
    handover = [*ONE_RUN, "rl.handover=true", "rl.regularize_weight=0", "train.checkpoint_every=2"]
    full, out = _run(tmp_path, tiny_models, f"data.instance_dir={photos}", *handover, name="full")
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert ["reward" in r for r in records] == [False, False, True, True]
    assert ["denoise/adv/d_loss" in r for r in records] == [True, True, False, False]
    assert [any(k.startswith("denoise/") for k in r) for r in records] == [True, True, False, False]
    model = id(full.state.optimizers["model"].optimizer)
    assert steps[model] == [1, 2, 1, 2]  # restarted at the start step
    assert [r["lr/model"] for r in records] == pytest.approx([3e-2, 3e-3, 3e-3, 3e-3])
    monkeypatch.setattr(torch.optim.AdamW, "step", original)

    # killed before step 2: the checkpoint of step 2 was taken after the restart
    _assert_resumed_run_matches(full, tmp_path, tiny_models, monkeypatch, 2, f"data.instance_dir={photos}", *handover)


def test_handover_without_a_late_reward_is_one_sentence():
    with pytest.raises(UserError, match="rl.handover"):
        config.load(None, ["rl.handover=true"])


def test_rl_lr_without_a_late_reward_is_one_sentence():
    with pytest.raises(UserError, match="rl.start_step"):
        config.load(None, ["rl.lr=1e-5"])


def test_a_late_reward_without_the_personalizing_loss_is_one_sentence(tmp_path, tiny_models):
    with pytest.raises(UserError, match="rl.regularize_weight"):
        _run(tmp_path, tiny_models, "rl.algorithm=draft", "rl.start_step=2")


PRINTED = [
    "method.kind=lora",
    "rl.algorithm=draft",
    "rl.rewards.print_quality=0",
    "rl.rewards.print_in_context=1",
    "rl.prompts=['a {subject} dog on the beach', 'a {subject} dog in the snow']",
    "rl.floor_samples=2",
    "rl.kl_weight=0.5",
    "rl.print_width_cm=5",
    "train.lr=3e-2",
    "train.checkpoint_every=2",
]


@needs_profile
def test_print_in_context_sets_its_floors_from_the_start_leashes_by_kl_and_resumes_exactly(
    tmp_path, tiny_models, photos, monkeypatch
):
    """The floors come from the starting weights' images before step 1 (no same-seed reference is
    sampled), DRaFT's KL term is exactly 0 while the weights are the start's and grows once they move,
    every part is logged, and a run stopped after step 2 and resumed ends bit-identical."""
    from dreamtune.models.tiny import build_tiny_feature_models

    clip = build_tiny_feature_models(tmp_path / "features")["clip"]
    shared = [f"rl.clip={clip}", f"data.instance_dir={photos}", *PRINTED]
    full, out = _run(tmp_path, tiny_models, *shared, name="full")
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert records[0]["kl"] == 0.0 and records[-1]["kl"] > 0
    parts = ("identity", "context", "colour", "tonal", "clipping", "grain", "ink")
    assert all(0 <= records[-1][f"reward/print_in_context/{p}"] <= 1 for p in parts)
    _assert_resumed_run_matches(full, tmp_path, tiny_models, monkeypatch, 3, *shared)


def test_print_in_context_mistakes_are_one_sentence():
    reward = ["rl.algorithm=draft", "rl.rewards.print_in_context=1"]
    with pytest.raises(UserError, match="rl.rewards.print_in_context scores the prompted scene.*at least two"):
        config.load(None, [*reward, "rl.prompts=[a sks dog]"])
    with pytest.raises(UserError, match="rl.viewing_distance_cm is 0.0; it must be above 0.0"):
        config.load(None, [*reward, "rl.prompts=[a sks dog, a sks dog in the snow]", "rl.viewing_distance_cm=0"])
