import torch
from diffusers import DDPMScheduler

from dreamtune.data import augment
from dreamtune.data.cache import TensorCache, key_of
from dreamtune.diffusion import noise


def _scheduler(prediction="epsilon"):
    return DDPMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, prediction_type=prediction)


def test_add_noise_and_v_target_match_diffusers():
    scheduler = _scheduler("v_prediction")
    g = torch.Generator().manual_seed(0)
    latents, eps = torch.randn(3, 4, 8, 8, generator=g), torch.randn(3, 4, 8, 8, generator=g)
    t = torch.tensor([0, 500, 999])
    assert torch.allclose(noise.add_noise(scheduler, latents, eps, t), scheduler.add_noise(latents, eps, t), atol=1e-5)
    assert torch.allclose(
        noise.target("v_prediction", scheduler, latents, eps, t), scheduler.get_velocity(latents, eps, t), atol=1e-5
    )
    assert torch.equal(noise.target("epsilon", scheduler, latents, eps, t), eps)


def test_predicted_clean_inverts_the_forward_process():
    for prediction in ("epsilon", "v_prediction"):
        scheduler = _scheduler(prediction)
        latents, eps = torch.randn(2, 4, 4, 4), torch.randn(2, 4, 4, 4)
        t = torch.tensor([10, 700])
        noisy = noise.add_noise(scheduler, latents, eps, t)
        out = noise.target(prediction, scheduler, latents, eps, t)
        assert torch.allclose(noise.predicted_clean(prediction, scheduler, noisy, out, t), latents, atol=1e-4)


def test_min_snr_weights_formula():
    scheduler = _scheduler()
    t = torch.tensor([1, 999])
    snr = scheduler.alphas_cumprod[t] / (1 - scheduler.alphas_cumprod[t])
    w = noise.min_snr_weights(scheduler, t, 5.0, "epsilon")
    assert torch.allclose(w, torch.minimum(snr, torch.tensor(5.0)) / snr)
    assert w[0] < 1 and torch.isclose(w[1], torch.tensor(1.0))
    wv = noise.min_snr_weights(scheduler, t, 5.0, "v_prediction")
    assert torch.allclose(wv, torch.minimum(snr, torch.tensor(5.0)) / (snr + 1))


def test_noise_offset_shifts_channel_means():
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    plain = noise.sample_noise(torch.zeros(64, 4, 8, 8), g1)
    offset = noise.sample_noise(torch.zeros(64, 4, 8, 8), g2, offset=1.0)
    assert offset.mean(dim=(2, 3)).std() > 3 * plain.mean(dim=(2, 3)).std()


def test_augmentation_is_a_function_of_seed_step_slot():
    plan = augment.AugmentPlan(flip_p=0.5, rotate_degrees=15, rotate_p=1.0, color_jitter=0.3, color_jitter_p=1.0)
    image = torch.rand(3, 16, 16) * 2 - 1

    def run(seed, step, slot):
        g = augment.sample_generator(seed, step, slot)
        return augment.apply_pixels(image, plan, augment.decide_flip(plan, g), g)

    assert torch.equal(run(0, 5, 1), run(0, 5, 1))
    assert not torch.equal(run(0, 5, 1), run(0, 6, 1))
    assert run(0, 5, 1).abs().max() <= 1


def test_rotation_by_zero_and_flip():
    image = torch.rand(3, 8, 8)
    assert torch.allclose(augment.rotate(image, 0.0), image, atol=1e-5)
    flipped = augment.apply_pixels(image, augment.AugmentPlan(), True, torch.Generator())
    assert torch.equal(flipped, image.flip(-1))


def test_cache_reuses_and_keys_invalidate(tmp_path):
    cache = TensorCache(tmp_path)
    calls = []
    compute = lambda: calls.append(1) or {"x": torch.ones(2)}
    cache.get_or_compute(key_of("img", "vae-a", 512), compute)
    cache.get_or_compute(key_of("img", "vae-a", 512), compute)
    assert len(calls) == 1 and cache.hits == 1
    cache.get_or_compute(key_of("img", "vae-b", 512), compute)
    cache.get_or_compute(key_of("img", "vae-a", 768), compute)
    assert len(calls) == 3
    (next(tmp_path.glob("*.safetensors"))).write_bytes(b"corrupt")
    cache = TensorCache(tmp_path)  # a later run reads the disk (one run keeps what it read in memory)
    for key in [key_of("img", "vae-a", 512), key_of("img", "vae-b", 512), key_of("img", "vae-a", 768)]:
        assert torch.equal(cache.get_or_compute(key, compute)["x"], torch.ones(2))
    assert len(calls) == 4  # the corrupt entry alone was recomputed
