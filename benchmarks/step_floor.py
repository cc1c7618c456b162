"""How close is a dreamtune training step to the bare denoiser step it cannot avoid? (issue 16)

    python benchmarks/step_floor.py [--model PATH] [--batch 4] [--rank 4] [--steps 60] [--repeats 3] [--attention-head-dim 2,4,6]

Times, interleaved, on the same UNet (default: the embedded miniature, SD-1.x architecture, 16x16x4
latents) with LoRA on to_q/k/v/out, AdamW on the LoRA weights, one optimizer step at a time:

  floor-script     the step as diffusers' DreamBooth-LoRA script runs its UNet: bf16 weights, fp32 LoRA,
                   bf16 autocast, PyTorch's attention kernels (no VAE, no text encoder: cached inputs)
  floor-dreamtune  the same with dreamtune's CPU policies: forward in bf16 without autocast
                   (models/precision.py), differentiated short attention in fp32 (models/attention.py)

Both floors leave out what a trainer adds around the UNet (data, noise, loss bookkeeping, logging);
compare them with `vs_diffusers.py --quick`: a trainer's steps/s above floor-script's is impossible,
and dreamtune / script >= 1.5x needs (script's step) / (dreamtune's floor) >= 1.5 — if the floors are
close, the margin must come from what the script does around its UNet (VAE and text encoding every
step, autocast) and cannot exceed it.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]


def build(model: Path, rank: int, dreamtune_policies: bool, device: str = "cpu", **config_overrides):
    from diffusers import UNet2DConditionModel
    from peft import LoraConfig

    unet = UNet2DConditionModel.from_pretrained(str(model / "unet"), torch_dtype=torch.bfloat16, **config_overrides).to(
        device
    )
    unet.requires_grad_(False)
    unet.add_adapter(LoraConfig(r=rank, lora_alpha=rank, init_lora_weights="gaussian", target_modules=TARGETS))
    params = [p for p in unet.parameters() if p.requires_grad]
    for p in params:
        p.data = p.data.float()
    if dreamtune_policies:  # as dreamtune's trainer applies them (training/run.py)
        from dreamtune.models.attention import use_short_attention_in_fp32
        from dreamtune.models.precision import forward_in_weight_dtype

        if device == "cpu":
            use_short_attention_in_fp32(unet)
        forward_in_weight_dtype(unet, torch.bfloat16)
    unet.train()
    return unet, torch.optim.AdamW(params, lr=1e-4, fused=True), params


def prompt_length(model: Path) -> int:
    import json

    return json.loads((model / "tokenizer" / "tokenizer_config.json").read_text()).get("model_max_length", 77)


def latent_side(model: Path, resolution: int) -> int:
    """The latents' side for images of ``resolution`` px: the VAE halves the side once per block after the first."""
    import json

    blocks = json.loads((model / "vae" / "config.json").read_text())["block_out_channels"]
    return resolution // 2 ** (len(blocks) - 1)


def step_inputs(unet, batch: int, tokens: int, side: int | None = None):
    """Latents (``side``², default the UNet's sample size), text context (SDXL: and its pooled text and
    size conditioning) and the generator of the noise: what a trainer would have cached."""
    device = unet.device
    generator = torch.Generator(device).manual_seed(0)
    side = side or unet.config.sample_size
    latents = torch.randn(batch, unet.config.in_channels, side, side, generator=generator, device=device)
    context = torch.randn(batch, tokens, unet.config.cross_attention_dim, generator=generator, device=device)
    conditions = {"encoder_hidden_states": context}
    if unet.config.addition_embed_type == "text_time":
        size_dims = 6 * unet.config.addition_time_embed_dim
        pooled = torch.randn(
            batch, unet.config.projection_class_embeddings_input_dim - size_dims, generator=generator, device=device
        )
        sizes = torch.tensor([[8.0 * side, 8.0 * side, 0, 0, 8.0 * side, 8.0 * side]] * batch, device=device)
        conditions["added_cond_kwargs"] = {"text_embeds": pooled, "time_ids": sizes}
    return latents, conditions, generator


def one_step(unet, optimizer, params, inputs, autocast: bool) -> None:
    latents, conditions, generator = inputs
    noise = torch.randn(latents.shape, generator=generator, device=latents.device)
    t = torch.randint(0, 1000, (latents.shape[0],), generator=generator, device=latents.device)
    with torch.autocast(latents.device.type, dtype=torch.bfloat16, enabled=autocast):
        prediction = unet(latents + noise, t, **conditions).sample
    loss = torch.nn.functional.mse_loss(prediction.float(), noise)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    float(loss.detach())


def time_steps(
    unet, optimizer, params, batch: int, tokens: int, steps: int, autocast: bool, side: int | None = None
) -> float:
    inputs = step_inputs(unet, batch, tokens, side)
    stamps = []
    for _ in range(steps):
        one_step(unet, optimizer, params, inputs, autocast)
        stamps.append(time.perf_counter())
    skip = max(1, steps // 5)
    return (len(stamps) - 1 - skip) / (stamps[-1] - stamps[skip])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(ROOT / "dreamtune" / "miniature" / "model"))
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--rank", type=int, default=4)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--attention-head-dim",
        default=None,
        help="also time the same weights with this UNet attention_head_dim (e.g. 2,4,6 — in SD-1 configs "
        "it is the number of heads per block), interleaved with the model's own",
    )
    args = parser.parse_args()
    geometries = {"": {}}
    if args.attention_head_dim:
        geometries[f" @heads {args.attention_head_dim}"] = {
            "attention_head_dim": [int(n) for n in args.attention_head_dim.split(",")]
        }
    arms = {
        f"floor-{trainer}{label}": (trainer == "dreamtune", trainer == "script", overrides)
        for label, overrides in geometries.items()
        for trainer in ("script", "dreamtune")
    }
    built = {
        name: build(Path(args.model), args.rank, policies, **overrides)
        for name, (policies, _, overrides) in arms.items()
    }
    results = {name: [] for name in arms}
    for repeat in range(args.repeats):
        for name in list(arms) if repeat % 2 == 0 else list(reversed(arms)):
            unet, optimizer, params = built[name]
            results[name].append(
                time_steps(
                    unet,
                    optimizer,
                    params,
                    args.batch,
                    prompt_length(Path(args.model)),
                    args.steps,
                    autocast=arms[name][1],
                )
            )
            print(f"{name} repeat {repeat}: {results[name][-1]:.2f} steps/s", flush=True)
    for name, values in results.items():
        print(
            f"{name}: {min(values):.2f} / {statistics.median(values):.2f} / {max(values):.2f} steps/s (min / median / max), "
            f"{1000 / statistics.median(values):.1f} ms a step"
        )
    for label in geometries:
        ratio = statistics.median(results[f"floor-dreamtune{label}"]) / statistics.median(
            results[f"floor-script{label}"]
        )
        print(f"floor ratio{label} {ratio:.2f}")


if __name__ == "__main__":
    main()
