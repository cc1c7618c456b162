"""SD3, FLUX.1, FLUX.2 klein, Z-Image and Qwen-Image (flow-matching transformers) on tiny random pipelines built in the test
process: the flow noise process against diffusers' own scheduler, LoRA / full fine-tune /
prior preservation / DRaFT / DDPO runs, the LoRA file in the diffusers pipelines' own loaders,
bit-identical resume, generation with the result, and the refusals."""

from __future__ import annotations

import pytest
import torch

from dreamtune import config
from dreamtune.errors import UserError
from dreamtune.training.run import train
from tests.conftest import tiny_overrides

FLOW = ("sd3", "flux", "flux2-klein", "z-image", "qwen-image")


def _train(tiny_models, family, photos, out, **extra):
    values = {"data.instance_prompt": "a photo of sks dog", **extra}
    return train(
        config.load(None, tiny_overrides(tiny_models[family], photos, out, **values)),
        show_progress=False,
        log=lambda *_: None,
    )


def _snapshot(module):
    return {n: p.detach().clone().float() for n, p in module.named_parameters()}


# ---- the noise process --------------------------------------------------------------------
def _scheduler(**kwargs):
    from diffusers import FlowMatchEulerDiscreteScheduler

    return FlowMatchEulerDiscreteScheduler(**kwargs)


def test_flow_noising_target_and_clean_estimate_match_diffusers():
    from dreamtune.diffusion.process import FlowMatchingProcess

    scheduler = _scheduler(shift=3.0)
    process = FlowMatchingProcess.from_scheduler_config(scheduler.config)
    x0, noise = torch.randn(3, 4, 8, 8), torch.randn(3, 4, 8, 8)
    scheduler.set_timesteps(10)
    on_grid = scheduler.timesteps[[1, 4, 7]]
    assert torch.allclose(
        process.add_noise(x0, noise, on_grid), scheduler.scale_noise(x0, on_grid, noise), atol=1e-5
    )  # diffusers' forward process
    t = process.sample_timesteps(3, torch.Generator().manual_seed(0))
    assert ((t > 0) & (t <= 1000)).all()
    sigma = (t / 1000).view(-1, 1, 1, 1)
    noisy = process.add_noise(x0, noise, t)
    assert torch.allclose(noisy, (1 - sigma) * x0 + sigma * noise, atol=1e-6)
    velocity = process.target(x0, noise, t)
    assert torch.allclose(process.predicted_clean(noisy, velocity, t), x0, atol=1e-5)
    assert process.loss_weights(t, "none", None) is None
    assert torch.allclose(process.loss_weights(t, "sigma_sqrt", None), (t / 1000) ** -2)


@pytest.mark.parametrize("dynamic", [False, True])
def test_flow_euler_step_is_diffusers_step_and_the_sde_step_scores_itself(dynamic):
    from dreamtune.diffusion.process import FlowMatchingProcess

    scheduler = _scheduler(shift=3.0, use_dynamic_shifting=dynamic)
    process = FlowMatchingProcess.from_scheduler_config(scheduler.config)
    mu = float(torch.log(torch.tensor(process.shift_for(1024))))
    sampler = process.sampler(6, mu=mu)
    scheduler.set_timesteps(6, **({"mu": mu} if dynamic else {}))
    assert torch.allclose(sampler.timesteps, scheduler.timesteps.float())
    x = torch.randn(2, 4, 8, 8)
    for t in scheduler.timesteps[[0, 3, 5]]:
        v = torch.randn(2, 4, 8, 8)
        reference = scheduler.step(v, t, x).prev_sample
        scheduler._step_index = None  # each step checked from the same x
        ours, _, _ = sampler.step(v, t.repeat(2), x, eta=0.0)
        assert torch.allclose(ours, reference, atol=1e-5)
        sample, log_prob, _ = sampler.step(v, t.repeat(2), x, eta=0.7, generator=torch.Generator().manual_seed(1))
        _, again, _ = sampler.step(v, t.repeat(2), x, eta=0.7, prev_sample=sample)
        _, elsewhere, _ = sampler.step(v, t.repeat(2), x, eta=0.7, prev_sample=sample + 0.5)
        assert torch.allclose(log_prob, again) and (elsewhere < again).all()
        mean, _, _ = sampler.mean(v, t.repeat(2), x, eta=1e-4)  # the SDE's mean tends to the ODE step
        assert torch.allclose(mean, reference, atol=1e-3)


def test_settings_of_the_other_noise_process_are_refused_in_one_sentence(tiny_models, photos, tmp_path):
    with pytest.raises(UserError, match="timestep_sampling=logit_normal is for flow-matching"):
        _train(tiny_models, "sd1", photos, tmp_path / "a", **{"train.timestep_sampling": "logit_normal"})
    with pytest.raises(UserError, match="loss_weighting=cosmap is for flow-matching"):
        _train(tiny_models, "sd1", photos, tmp_path / "b", **{"train.loss_weighting": "cosmap"})
    with pytest.raises(UserError, match="min_snr_gamma is for DDPM models"):
        _train(tiny_models, "flux", photos, tmp_path / "c", **{"train.min_snr_gamma": 5.0})


# ---- training -----------------------------------------------------------------------------
@pytest.mark.parametrize("family", FLOW)
@pytest.mark.parametrize("kind", ["lora", "dreambooth"])
def test_trainable_parameters_change_and_frozen_ones_do_not(tiny_models, family, kind, photos, tmp_path):
    from dreamtune.models.loading import load_components

    base = load_components(config.ModelConfig(pretrained=str(tiny_models[family])))
    result = _train(
        tiny_models, family, photos, tmp_path / "run", **{"method.kind": kind, "train.steps": 3, "train.lr": 1e-2}
    )
    trained = result.components
    assert type(trained.denoiser).__name__.endswith("Transformer2DModel") and trained.prediction_type == "flow"
    before, after = (
        _snapshot(base.denoiser),
        {n.replace(".base_layer", ""): p for n, p in _snapshot(trained.denoiser).items()},
    )
    changed = [n for n in before if n in after and not torch.equal(before[n], after[n])]
    assert bool(changed) == (kind == "dreambooth")
    if kind == "lora":
        assert any(p.abs().sum() > 0 for n, p in after.items() if "lora_B" in n)
    for part in ("vae", *[f"text_encoders.{i}" for i in range(len(trained.text_encoders))]):
        get = (lambda c: c.vae) if part == "vae" else (lambda c, i=int(part[-1]): c.text_encoders[i])
        assert all(torch.equal(p, _snapshot(get(trained))[n]) for n, p in _snapshot(get(base)).items()), part


@pytest.mark.parametrize("family", FLOW + ("flux-schnell",))
def test_lora_loads_in_the_diffusers_pipeline_with_every_tensor_used(tiny_models, family, photos, tmp_path):
    from diffusers import DiffusionPipeline
    from safetensors.torch import load_file

    result = _train(tiny_models, family, photos, tmp_path / "run", **{"method.lora.alpha": 8, "train.lr": 1e-2})
    weights = result.model_dir / "pytorch_lora_weights.safetensors"
    pipeline = DiffusionPipeline.from_pretrained(str(tiny_models[family]))
    assert (
        type(pipeline).__name__
        == {
            "sd3": "StableDiffusion3Pipeline",
            "flux": "FluxPipeline",
            "flux-schnell": "FluxPipeline",
            "flux2-klein": "Flux2KleinPipeline",
            "z-image": "ZImagePipeline",
            "qwen-image": "QwenImagePipeline",
        }[family]
    )
    pipeline.load_lora_weights(str(result.model_dir), weight_name="pytorch_lora_weights.safetensors")
    loaded = {n: p for n, p in pipeline.transformer.named_parameters() if "lora_" in n}
    assert len(loaded) == len(load_file(str(weights)))  # every tensor in the file has a home
    family_object = result.components.family
    latents = torch.randn(
        1, *family_object.latent_shape(result.components, 32), generator=torch.Generator().manual_seed(0)
    )
    conditioning = family_object.encode_prompts(result.components, ["a photo of sks dog"], "cpu")
    t = torch.tensor([500.0])
    with torch.no_grad():
        ours = family_object.predict(result.components, latents, t, conditioning, guidance=3.5)
        theirs = family_object.predict(
            result.components, latents, t, conditioning, denoiser=pipeline.transformer, guidance=3.5
        )
    assert torch.allclose(ours, theirs, atol=1e-5)  # alpha / rank kept: the same model


def test_flux_resume_is_bit_identical(tiny_models, photos, tmp_path):
    steps = {"train.steps": 4, "train.checkpoint_every": 2, "train.lr": 1e-2}
    straight = _train(tiny_models, "flux", photos, tmp_path / "straight", **steps)
    _train(tiny_models, "flux", photos, tmp_path / "resumed", **{**steps, "train.steps": 2})
    resumed = train(
        config.load(
            None,
            tiny_overrides(
                tiny_models["flux"],
                photos,
                tmp_path / "resumed",
                **steps,
                **{"data.instance_prompt": "a photo of sks dog"},
            ),
        ),
        resume="latest",
        show_progress=False,
        log=lambda *_: None,
    )
    a, b = _snapshot(straight.components.denoiser), _snapshot(resumed.components.denoiser)
    assert all(torch.equal(a[n], b[n]) for n in a)


@pytest.mark.parametrize("family", FLOW)
def test_prior_preservation_validation_monitor_and_generation(tiny_models, family, photos, tmp_path):
    from dreamtune.models.tiny import build_tiny_feature_models
    from dreamtune.sampling.generate import GenerateRequest, generate

    clip = build_tiny_feature_models(tmp_path / "features")["clip"]
    result = _train(
        tiny_models,
        family,
        photos,
        tmp_path / "run",
        **{
            "prior.enabled": True,
            "prior.class_prompt": "a photo of dog",
            "train.validate_every": 2,
            "train.validation_prompts": "[a photo of sks dog on the beach]",
            "monitor.every": 2,
            "monitor.clip": str(clip),
            "monitor.sample_steps": 2,
            "monitor.seeds": "[0]",
            "monitor.class_images": 1,
        },
    )
    assert len(list((result.output_dir / "class_images" / "images").glob("*.png"))) == 2
    assert list((result.output_dir / "validation").glob("step-*.png"))
    assert list((result.output_dir / "monitor").glob("*"))
    record = generate(
        GenerateRequest(
            trained=str(result.model_dir),
            prompts=["a photo of {subject} dog"],
            images_per_prompt=2,
            steps=2,
            resolution=32,
        ),
        tmp_path / "gen",
        show_progress=False,
    )
    assert len(list((tmp_path / "gen").glob("*.png"))) >= 2 and record


@pytest.mark.parametrize(
    "family, algorithm",
    [("flux", "draft"), ("sd3", "ddpo"), ("flux2-klein", "ddpo"), ("z-image", "draft"), ("qwen-image", "ddpo")],
)
def test_reward_fine_tuning_runs_on_flow_models(tiny_models, family, algorithm, photos, tmp_path):
    result = _train(
        tiny_models,
        family,
        photos,
        tmp_path / "run",
        **{
            "rl.algorithm": algorithm,
            "rl.prompts": "[a photo of a dog]",
            "rl.rewards.print_quality": 1.0,
            "rl.sample_steps": 3,
            "rl.samples_per_round": 4,
            "rl.images_per_prompt": 2,
            "train.batch_size": 2,
            "train.lr": 1e-2,
        },
    )
    assert result.state.step == 2 and all(torch.isfinite(torch.tensor(r["loss"])) for r in result.history)
    lora = [p for n, p in result.components.denoiser.named_parameters() if "lora_B" in n]
    assert any(p.abs().sum() > 0 for p in lora)


def test_what_flow_families_do_not_offer_is_refused_in_one_sentence(tiny_models, photos, tmp_path):
    with pytest.raises(UserError, match="textual inversion is not offered for flux"):
        _train(
            tiny_models,
            "flux",
            photos,
            tmp_path / "a",
            **{"method.kind": "textual_inversion", "data.instance_prompt": "a photo of <sks> dog"},
        )
    with pytest.raises(UserError, match="method.lora.text_encoder is not offered for sd3"):
        _train(tiny_models, "sd3", photos, tmp_path / "b", **{"method.lora.text_encoder": True})
    single = tmp_path / "flux1-dev.safetensors"
    from safetensors.torch import save_file

    save_file({"double_blocks.0.img_attn.qkv.weight": torch.zeros(3, 3)}, str(single))
    with pytest.raises(UserError, match=r"flux1-dev.safetensors"):
        _train(tiny_models, "flux", photos, tmp_path / "c", **{"model.pretrained": str(single)})


@pytest.mark.parametrize("family", FLOW + ("flux-schnell",))
def test_reward_sampler_reproduces_the_diffusers_pipeline(tiny_models, family):
    """DRaFT / DDPO sample with their own loop (gradients, log-probabilities); with η = 0 it must
    be the pipeline's sampler: same σ grid and shift, same guidance, same packing."""
    from diffusers import FluxPipeline

    from dreamtune.models.loading import load_components
    from dreamtune.objectives.guided import condition, guided_prediction, initial_latents

    components = load_components(config.ModelConfig(pretrained=str(tiny_models[family])))
    prompts, steps, guidance = ["a photo of a dog"], 3, 4.0
    latents = initial_latents(components, [7], 32, "cpu")
    sampler = components.sampler(steps, 32)
    conditioning = condition(components, prompts, 32, "cpu")
    with torch.no_grad():
        x = latents
        for t in sampler.timesteps:
            x = sampler.step(
                guided_prediction(components, x, t.reshape(1), conditioning, guidance), t.reshape(1), x, 0.0
            )[0]
        pipeline = components.family.pipeline(components)
        cls = type(pipeline)
        packed = (family.startswith("flux") and family != "flux2-klein") or family == "qwen-image"
        given = (
            FluxPipeline._pack_latents(latents, *latents.shape) if packed else latents
        )  # klein packs what it is given
        true_cfg = {"true_cfg_scale": guidance, "negative_prompt": [""]} if family == "qwen-image" else {}
        length = getattr(components.family, "max_sequence_length", 0) if family == "qwen-image" else 0
        theirs = pipeline(
            prompt=prompts,
            latents=given,
            num_inference_steps=steps,
            guidance_scale=None if true_cfg else guidance,
            height=32,
            width=32,
            output_type="latent",
            max_sequence_length=length or components.tokenizers[-1].model_max_length,
            **true_cfg,
        ).images
    if packed:
        ours = FluxPipeline._pack_latents(x, *x.shape)
    elif family == "flux2-klein":  # its "latent" output is the VAE's: batch norm undone, patches unfolded
        mean, std = components.family._batch_norm(components, x)
        ours = cls._unpatchify_latents(x * std + mean)
    else:
        ours = x
    assert torch.allclose(ours, theirs.float(), atol=1e-4)


def test_qwen_image_samples_with_true_cfg_and_the_empty_negative_prompt(tiny_models):
    """QwenImagePipeline guides only through true_cfg_scale with a negative prompt; ``sample`` passes the
    scale there (a plain guidance_scale would sample unguided, with a warning)."""
    from dreamtune.models.loading import load_components
    from dreamtune.sampling.pipeline import sample

    components = load_components(config.ModelConfig(pretrained=str(tiny_models["qwen-image"])))
    pipeline = components.family.pipeline(components)
    ours = sample(pipeline, ["a photo of a dog"], [3], 2, 4.0, 32)[0]
    unguided = sample(pipeline, ["a photo of a dog"], [3], 2, 1.0, 32)[0]
    theirs = pipeline(
        prompt=["a photo of a dog"],
        negative_prompt=[""],
        true_cfg_scale=4.0,
        num_inference_steps=2,
        height=32,
        width=32,
        generator=[torch.Generator("cpu").manual_seed(3)],
    ).images[0]
    pixels = lambda image: torch.tensor(list(image.getdata()), dtype=torch.float32)
    assert torch.equal(pixels(ours), pixels(theirs))
    assert not torch.equal(pixels(ours), pixels(unguided))
