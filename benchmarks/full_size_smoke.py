"""Full-size Stable Diffusion 1.5 and SDXL architectures with random weights, saved the way
downloads are (fp16 safetensors folders), trained through the CLI as a user would: LoRA, full
DreamBooth and textual inversion, 2 steps each at the recipes' resolutions with bf16 and
gradient checkpointing. Prints s/step (the second step: the first includes warm-up), start-up
seconds (loading, latent and text caching), peak RSS of each run (loading included: the fp16 shards'
pages that safetensors maps count while a part loads) and the largest RSS once steps run. Also SD3.5
Medium, FLUX.2 klein 4B, FLUX.1-dev and Qwen-Image, with and without quantized frozen weights
(model.quantize; the two largest are written shard by shard by random_shards.py).

    python benchmarks/full_size_smoke.py [--root runs/full_size] [--only sd15-lora,...] [--resolution-sdxl 1024]

Results are kept in ROOT/results.json; a rerun skips finished cases (long runs resume across
sessions). Nothing is downloaded: configs are written here from the published architectures,
tokenizers are built locally (random weights need no real vocabulary).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.random_shards import build_qwen_image, write_random_shards  # noqa: E402

CLIP_L = dict(
    hidden_size=768,
    intermediate_size=3072,
    num_attention_heads=12,
    num_hidden_layers=12,
    projection_dim=768,
    hidden_act="quick_gelu",
    max_position_embeddings=77,
    vocab_size=49408,
)
CLIP_BIG_G = dict(
    hidden_size=1280,
    intermediate_size=5120,
    num_attention_heads=20,
    num_hidden_layers=32,
    projection_dim=1280,
    hidden_act="gelu",
    max_position_embeddings=77,
    vocab_size=49408,
)
VAE = dict(
    block_out_channels=(128, 256, 512, 512),
    in_channels=3,
    out_channels=3,
    latent_channels=4,
    layers_per_block=2,
    down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4,
    norm_num_groups=32,
)
SD15_UNET = dict(
    sample_size=64,
    block_out_channels=(320, 640, 1280, 1280),
    layers_per_block=2,
    cross_attention_dim=768,
    attention_head_dim=8,
    down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
    up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
)
SDXL_UNET = dict(
    sample_size=128,
    block_out_channels=(320, 640, 1280),
    layers_per_block=2,
    cross_attention_dim=2048,
    attention_head_dim=(5, 10, 20),
    transformer_layers_per_block=(1, 2, 10),
    use_linear_projection=True,
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    addition_embed_type="text_time",
    addition_time_embed_dim=256,
    projection_class_embeddings_input_dim=2816,
)

CASES = {  # name -> (family, recipe, extra overrides)
    "sd15-lora": ("sd15", "lora-sd15", []),
    "sd15-dreambooth": ("sd15", "dreambooth-sd15", []),
    "sd15-textual-inversion": ("sd15", "textual-inversion-sd15", []),
    "sd15-lora-single-file": (
        "sd15",
        "lora-sd15",
        ["single-file"],
    ),  # the fp16 folder written as one original-layout file, no model.config
    "sdxl-lora": ("sdxl", "lora-sdxl", []),
    "sdxl-lora-single-file": ("sdxl", "lora-sdxl", ["single-file"]),
    "sdxl-textual-inversion": (
        "sdxl",
        "lora-sdxl",
        [
            "method.kind=textual_inversion",
            "data.instance_prompt=a photo of <sks> dog",
            "method.textual_inversion.initializer_token=dog",
        ],
    ),
    "sd35m-lora": ("sd35m", "lora-sd35", []),  # SD3.5 Medium with its T5-XXL
    "flux2-klein-4b-lora": ("flux2-klein-4b", "lora-flux2-klein", []),
    # frozen weights quantized while loading (model.quantize, torchao): transformer and Qwen3 / T5 text encoders
    "flux2-klein-4b-lora-int8": (
        "flux2-klein-4b",
        "lora-flux2-klein",
        ["model.quantize=int8", "model.quantize_text_encoders=int8"],
    ),
    "flux2-klein-4b-lora-int8-keep-encoders": (
        "flux2-klein-4b",
        "lora-flux2-klein",
        ["model.quantize=int8", "model.quantize_text_encoders=int8", "train.free_text_encoders=false"],
    ),
    "flux2-klein-4b-lora-nf4": (
        "flux2-klein-4b",
        "lora-flux2-klein",
        ["model.quantize=nf4", "model.quantize_text_encoders=nf4"],
    ),
    "sd35m-lora-int8": ("sd35m", "lora-sd35", ["model.quantize=int8", "model.quantize_text_encoders=int8"]),
    # FLUX.1-dev: a 12 B transformer (24 GB in bf16, as much as this machine's memory), only quantized
    "flux1-dev-lora-int8": (
        "flux1-dev",
        "lora-flux1-dev",
        ["model.quantize=int8", "model.quantize_text_encoders=int8"],
    ),
    # Qwen-Image: a 20 B transformer (41 GB in fp16) and Qwen2.5-VL-7B; train.memory auto chooses the savings
    "qwen-image-lora": ("qwen-image", "lora-qwen-image", []),
    # the savings memory auto takes on 24 GiB, fixed (train.memory: manual): for a box below auto's static share
    "qwen-image-lora-nf4": (
        "qwen-image",
        "lora-qwen-image",
        [
            "train.memory=manual",
            "model.quantize=nf4",
            "model.quantize_text_encoders=int8",
            "train.release_freed_memory=true",
        ],
    ),
    # the same with freed buffers returned at once (train.release_freed_memory: what memory auto picks on 24 GiB)
    "flux1-dev-lora-int8-release": (
        "flux1-dev",
        "lora-flux1-dev",
        ["model.quantize=int8", "model.quantize_text_encoders=int8", "train.release_freed_memory=true"],
    ),
    # a full fine-tune in bf16 with stochastic rounding, the update fused into the backward, 8-bit AdamW state (torchao)
    "sdxl-dreambooth-lean": (
        "sdxl",
        "lora-sdxl",
        [
            "method.kind=dreambooth",
            "train.lr=5e-6",
            "train.trainable_dtype=bf16",
            "train.fused_update=true",
            "train.optimizer=adamw8bit",
        ],
    ),
    # the same full fine-tune split across 2 processes (torch FSDP2; on this CPU over gloo): peak RSS is per process
    "sd15-dreambooth-fsdp-2proc": ("sd15", "dreambooth-sd15", ["launch:2", "train.shard=fsdp"]),
    "sdxl-dreambooth-adafactor": (
        "sdxl",
        "lora-sdxl",
        ["method.kind=dreambooth", "train.lr=5e-6", "train.fused_update=true", "train.optimizer=adafactor"],
    ),
}

# published architectures (config.json of each download)
SD35M_TRANSFORMER = dict(
    sample_size=128,
    patch_size=2,
    in_channels=16,
    out_channels=16,
    num_layers=24,
    attention_head_dim=64,
    num_attention_heads=24,
    joint_attention_dim=4096,
    caption_projection_dim=1536,
    pooled_projection_dim=2048,
    pos_embed_max_size=384,
    dual_attention_layers=tuple(range(13)),
    qk_norm="rms_norm",
)
T5_XXL = dict(
    vocab_size=32128,
    d_model=4096,
    d_ff=10240,
    d_kv=64,
    num_layers=24,
    num_heads=64,
    feed_forward_proj="gated-gelu",
    relative_attention_num_buckets=32,
    decoder_start_token_id=0,
)
KLEIN4B_TRANSFORMER = dict(
    patch_size=1,
    in_channels=128,
    num_layers=5,
    num_single_layers=20,
    attention_head_dim=128,
    num_attention_heads=24,
    joint_attention_dim=7680,
    timestep_guidance_channels=256,
    mlp_ratio=3.0,
    axes_dims_rope=(32, 32, 32, 32),
    rope_theta=2000,
    guidance_embeds=False,
)
QWEN3_4B = dict(
    vocab_size=151936,
    hidden_size=2560,
    intermediate_size=9728,
    num_hidden_layers=36,
    num_attention_heads=32,
    num_key_value_heads=8,
    head_dim=128,
    max_position_embeddings=40960,
    tie_word_embeddings=True,
    rope_theta=1000000,
)


def build(family: str, folder: Path) -> Path:
    """Write a random-weight pipeline of the full architecture as an fp16 safetensors folder."""
    import torch
    from diffusers import (
        AutoencoderKL,
        DDPMScheduler,
        StableDiffusionPipeline,
        StableDiffusionXLPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from dreamtune.models.tokenizer import build_clip_tokenizer

    if (folder / "model_index.json").is_file():
        return folder
    torch.manual_seed(0)
    if family in (
        "sd35m",
        "flux2-klein-4b",
        "flux1-dev",
        "qwen-image",
    ):  # written beside, renamed when whole: a failed build leaves no model
        import shutil

        partial = folder.with_name(folder.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        builders = {"flux1-dev": build_flux1_dev, "qwen-image": build_qwen_image}
        builders.get(family, lambda f: build_flow(family, f))(partial)
        partial.rename(folder)
        return folder
    tokenizer = build_clip_tokenizer(folder.parent / f".{family}-tokenizer")
    scheduler = DDPMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        steps_offset=1,
        num_train_timesteps=1000,
    )
    ids = dict(
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id
    )
    half = lambda module: module.to(torch.float16)
    vae = half(
        AutoencoderKL(
            **VAE,
            sample_size=1024 if family == "sdxl" else 512,
            scaling_factor=0.13025 if family == "sdxl" else 0.18215,
        )
    )
    text = half(CLIPTextModel(CLIPTextConfig(**CLIP_L, **ids)))
    if family == "sdxl":
        unet = half(UNet2DConditionModel(**SDXL_UNET))
        text_2 = half(CLIPTextModelWithProjection(CLIPTextConfig(**CLIP_BIG_G, **ids)))
        pipeline = StableDiffusionXLPipeline(
            vae=vae,
            text_encoder=text,
            text_encoder_2=text_2,
            tokenizer=tokenizer,
            tokenizer_2=tokenizer,
            unet=unet,
            scheduler=scheduler,
        )
    else:
        unet = half(UNet2DConditionModel(**SD15_UNET))
        pipeline = StableDiffusionPipeline(
            vae=vae,
            text_encoder=text,
            tokenizer=tokenizer,
            unet=unet,
            scheduler=scheduler,
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
        )
    pipeline.save_pretrained(folder, safe_serialization=True)
    return folder


def build_flow(family: str, folder: Path) -> Path:
    """SD3.5 Medium or FLUX.2 klein base 4B, random fp16 weights (made in fp16: 16 GB, not 32)."""
    import torch
    from diffusers import (
        AutoencoderKL,
        AutoencoderKLFlux2,
        FlowMatchEulerDiscreteScheduler,
        Flux2KleinPipeline,
        Flux2Transformer2DModel,
        SD3Transformer2DModel,
        StableDiffusion3Pipeline,
    )
    from transformers import (
        CLIPTextConfig,
        CLIPTextModelWithProjection,
        Qwen3Config,
        Qwen3ForCausalLM,
        T5Config,
        T5EncoderModel,
    )

    from dreamtune.models.tiny_text import build_qwen_tokenizer, build_t5_tokenizer
    from dreamtune.models.tokenizer import build_clip_tokenizer

    torch.set_default_dtype(torch.float16)
    try:
        if family == "flux2-klein-4b":
            tokenizer = build_qwen_tokenizer(folder.parent / ".qwen-tokenizer", model_max_length=512)
            pipeline = Flux2KleinPipeline(
                scheduler=FlowMatchEulerDiscreteScheduler(
                    shift=3.0, use_dynamic_shifting=True, time_shift_type="exponential"
                ),
                vae=AutoencoderKLFlux2(),
                text_encoder=Qwen3ForCausalLM(Qwen3Config(**QWEN3_4B)),
                tokenizer=tokenizer,
                transformer=Flux2Transformer2DModel(**KLEIN4B_TRANSFORMER),
                is_distilled=False,
            )
        else:
            clip = build_clip_tokenizer(folder.parent / ".clip-tokenizer")
            ids = dict(bos_token_id=clip.bos_token_id, eos_token_id=clip.eos_token_id, pad_token_id=clip.pad_token_id)
            pipeline = StableDiffusion3Pipeline(
                transformer=SD3Transformer2DModel(**SD35M_TRANSFORMER),
                scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
                vae=AutoencoderKL(
                    **{**VAE, "latent_channels": 16},
                    sample_size=1024,
                    scaling_factor=1.5305,
                    shift_factor=0.0609,
                    use_quant_conv=False,
                    use_post_quant_conv=False,
                ),
                text_encoder=CLIPTextModelWithProjection(CLIPTextConfig(**CLIP_L, **ids)),
                tokenizer=clip,
                text_encoder_2=CLIPTextModelWithProjection(CLIPTextConfig(**CLIP_BIG_G, **ids)),
                tokenizer_2=clip,
                text_encoder_3=T5EncoderModel(T5Config(**T5_XXL)),
                tokenizer_3=build_t5_tokenizer(folder.parent / ".t5-tokenizer", model_max_length=512),
            )
    finally:
        torch.set_default_dtype(torch.float32)
    pipeline.save_pretrained(folder, safe_serialization=True)
    return folder


FLUX1_DEV_TRANSFORMER = dict(
    patch_size=1,
    in_channels=64,
    num_layers=19,
    num_single_layers=38,
    attention_head_dim=128,
    num_attention_heads=24,
    joint_attention_dim=4096,
    pooled_projection_dim=768,
    guidance_embeds=True,
    axes_dims_rope=(16, 56, 56),
)


def build_flux1_dev(folder: Path, device: str = "cpu", blocks: tuple[int, int] = (19, 38), t5_layers: int = 24) -> Path:
    """FLUX.1-dev, random fp16 weights: CLIP-L, T5-XXL and the VAE whole; the 12 B transformer (24 GB in
    fp16, as much as this machine's memory) layer by layer from the meta device into 5 GB shards with
    their index, as sharded downloads are laid out (`random_shards.write_random_shards`). ``device`` "cuda"
    (under ``torch.device("cuda")``):
    the transformer is built whole on the GPU and saved in 5 GB shards by diffusers. ``blocks`` (double, single)
    and ``t5_layers`` make a model of FLUX.1-dev's width with fewer layers (benchmarks/flux_width_probe.py)."""
    transformer_shape = {**FLUX1_DEV_TRANSFORMER, "num_layers": blocks[0], "num_single_layers": blocks[1]}
    import torch
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    from dreamtune.models.tiny_text import build_t5_tokenizer
    from dreamtune.models.tokenizer import build_clip_tokenizer

    clip = build_clip_tokenizer(folder.parent / ".clip-tokenizer")
    ids = dict(bos_token_id=clip.bos_token_id, eos_token_id=clip.eos_token_id, pad_token_id=clip.pad_token_id)
    stand_in = FluxTransformer2DModel(
        **{**FLUX1_DEV_TRANSFORMER, "num_layers": 1, "num_single_layers": 1}
    )  # replaced below
    torch.set_default_dtype(torch.float16)
    try:
        pipeline = FluxPipeline(
            transformer=stand_in,
            text_encoder=CLIPTextModel(CLIPTextConfig(**CLIP_L, **ids)),
            tokenizer=clip,
            text_encoder_2=T5EncoderModel(T5Config(**{**T5_XXL, "num_layers": t5_layers})),
            tokenizer_2=build_t5_tokenizer(folder.parent / ".t5-tokenizer", model_max_length=512),
            vae=AutoencoderKL(
                **{**VAE, "latent_channels": 16},
                sample_size=1024,
                scaling_factor=0.3611,
                shift_factor=0.1159,
                use_quant_conv=False,
                use_post_quant_conv=False,
            ),
            scheduler=FlowMatchEulerDiscreteScheduler(
                shift=3.0,
                use_dynamic_shifting=True,
                base_shift=0.5,
                max_shift=1.15,
                base_image_seq_len=256,
                max_image_seq_len=4096,
            ),
        )
    finally:
        torch.set_default_dtype(torch.float32)
    pipeline.save_pretrained(folder, safe_serialization=True)
    del pipeline, stand_in
    import gc

    gc.collect()
    target = folder / "transformer"
    for old in target.glob("*.safetensors*"):
        old.unlink()
    if device != "cpu":
        torch.set_default_dtype(torch.float16)
        try:
            transformer = FluxTransformer2DModel(**transformer_shape)
        finally:
            torch.set_default_dtype(torch.float32)
        transformer.save_pretrained(target, safe_serialization=True, max_shard_size="5GB")
        return folder
    with init_empty_weights():
        transformer = FluxTransformer2DModel(**transformer_shape)
    transformer.save_config(target)
    write_random_shards(transformer, target, "diffusion_pytorch_model")
    return folder


def photos(folder: Path, size: int) -> Path:
    from PIL import Image, ImageDraw

    folder.mkdir(parents=True, exist_ok=True)
    for index in range(4):
        image = Image.new("RGB", (size, size), (40 * index, 120, 200 - 30 * index))
        ImageDraw.Draw(image).ellipse(
            (size // 4 + 10 * index, size // 4, 3 * size // 4, 3 * size // 4), fill=(200, 160, 60)
        )
        image.save(folder / f"photo{index}.jpg", quality=92)
    return folder


def _rss_gb(pid: int, field: str = "VmRSS") -> float:
    """The process's resident memory (VmRSS), or its anonymous part (RssAnon: without the model files' mapped pages)."""
    try:
        line = next(x for x in Path(f"/proc/{pid}/status").read_text().splitlines() if x.startswith(f"{field}:"))
    except (OSError, StopIteration):
        return 0.0
    return int(line.split()[1]) / 2**20


def _workers(pid: int) -> list[int]:
    """``pid`` and its descendants (accelerate launch's training processes)."""
    import psutil

    try:
        return [pid] + [child.pid for child in psutil.Process(pid).children(recursive=True)]
    except psutil.Error:
        return [pid]


def memory_cap(gb: float):
    """A preexec function that puts the training process in a cgroup (v1) limited to ``gb`` GiB, the
    model files' page cache included: the run then shows it completes on a machine of that size."""
    group = Path("/sys/fs/cgroup/memory/dreamtune-bench")
    group.mkdir(exist_ok=True)
    swap = group / "memory.memsw.limit_in_bytes"
    if swap.exists():  # the kernel refuses a memory limit above the swap limit a previous run left: lift it first
        swap.write_text("-1")
    (group / "memory.limit_in_bytes").write_text(str(int(gb * 2**30)))
    if swap.exists():
        swap.write_text(str(int(gb * 2**30)))  # no swapping past the cap either
    return lambda: (group / "cgroup.procs").write_text(str(os.getpid()))


def drop_page_cache() -> None:
    """Empty the kernel's page cache (root only), so the model files' pages a capped run reads are charged to its
    cgroup, not to the process that built or read them before: the cap then bounds what the run really needs."""
    os.sync()
    try:
        Path("/proc/sys/vm/drop_caches").write_text("1")
    except OSError as error:
        print(f"page cache not dropped ({error}): the cap may not count model pages read before", file=sys.stderr)


def run_case(name: str, root: Path, sdxl_resolution: int, cap_gb: float = 0.0) -> dict:
    family, recipe, extra = CASES[name]
    model = root / f"{family}-fp16"
    if not (
        model / "model_index.json"
    ).is_file():  # built in its own process: its memory is gone before training starts
        subprocess.run(
            [sys.executable, __file__, "--root", str(root), "--resolution-sdxl", "0", "--build", family], check=True
        )
    if "single-file" in extra:
        single = root / f"{family}.safetensors"
        if not single.is_file():
            subprocess.run(
                [sys.executable, __file__, "--root", str(root), "--resolution-sdxl", "0", "--single-file", family],
                check=True,
            )
        model, extra = single, [e for e in extra if e != "single-file"]
    resolution = sdxl_resolution if family == "sdxl" else 512
    if cap_gb:
        drop_page_cache()
    out = root / "runs" / name
    if out.exists():
        import shutil

        shutil.rmtree(out)
    processes = next((int(e.split(":")[1]) for e in extra if e.startswith("launch:")), 1)
    extra = [e for e in extra if not e.startswith("launch:")]
    launcher = (
        [
            str(Path(sys.executable).with_name("accelerate")),
            "launch",
            "--multi_gpu",
            "--num_processes",
            str(processes),
            "--num_machines",
            "1",
            "--mixed_precision",
            "no",
            "--dynamo_backend",
            "no",
            "--main_process_port",
            "29561",
        ]
        if processes > 1
        else [sys.executable]
    )
    command = [
        *launcher,
        "-m",
        "dreamtune.cli",
        "train",
        recipe,
        f"model.pretrained={model}",
        f"data.instance_dir={photos(root / f'photos-{resolution}', resolution)}",
        f"data.resolution={resolution}",
        f"train.output_dir={out}",
        "train.steps=2",
        "train.mixed_precision=bf16",
        "train.gradient_checkpointing=true",
        "train.checkpoint_every=0",
        "train.validate_every=0",
        "prior.enabled=false",
        *extra,
    ]
    started = time.perf_counter()
    log = root / "runs" / f"{name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as output:
        process = subprocess.Popen(
            command,
            stdout=output,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            preexec_fn=memory_cap(cap_gb) if cap_gb else None,
        )
        # the largest RSS (the kernel's peak, VmHWM, read twice a second: the run resets it after step 1 to
        # report the step's own, so the exit's figure misses loading), the largest once steps run, the
        # largest anonymous RSS
        rss = steps_rss = anon = 0.0
        while True:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)  # this run's own peak (not the model build's)
            if pid:
                break
            workers = _workers(process.pid)  # the training process, or each launched one
            anon = max([anon] + [_rss_gb(w, "RssAnon") for w in workers])
            rss = max([rss] + [_rss_gb(w, "VmHWM") for w in workers])
            if (out / "metrics.jsonl").is_file():
                steps_rss = max([steps_rss] + [_rss_gb(w) for w in workers])
            time.sleep(0.5)
    wall = time.perf_counter() - started
    peak_gb = max(rss, usage.ru_maxrss / 2**20)
    if os.waitstatus_to_exitcode(status):
        code = os.waitstatus_to_exitcode(status)
        why = f"killed by signal {-code} (out of memory under the {cap_gb} GiB cap?)" if code < 0 else ""
        return {
            "case": name,
            "error": why or (log.read_text().strip().splitlines() or ["?"])[-1][:300],
            "wall_s": round(wall, 1),
            "memory_cap_gb": cap_gb,
        }
    steps = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    step_s = steps[1]["seconds"] - steps[0]["seconds"]
    return {
        "case": name,
        "resolution": resolution,
        "memory_cap_gb": cap_gb,
        "s_per_step": round(step_s, 1),
        "first_step_s": round(steps[0]["seconds"], 1),
        "startup_s": round(wall - steps[-1]["seconds"], 1),
        "wall_s": round(wall, 1),
        "peak_rss_gb": round(peak_gb, 2),
        "steps_rss_gb": round(steps_rss, 2),
        "peak_anon_gb": round(anon, 2),
        "memory_split": next(
            (
                line[line.index("memory after step") :]
                for line in log.read_text().splitlines()
                if "memory after step" in line
            ),
            "",
        ),
        "exported": sorted(p.name for p in (out / "model").iterdir()),
        "lora_placed_by_diffusers": lora_placed(model, out / "model"),
    }


def lora_placed(model: Path, trained: Path) -> str:
    """How many of the exported LoRA's tensors diffusers' own loader places on the full-size denoiser, built
    on the meta device (no weights): the file's keys checked against the real architecture, not a tiny one."""
    if not (trained / "pytorch_lora_weights.safetensors").is_file() or not model.is_dir():
        return ""
    import diffusers
    from accelerate import init_empty_weights

    pipeline_class = getattr(diffusers, json.loads((model / "model_index.json").read_text())["_class_name"])
    part = "transformer" if (model / "transformer").is_dir() else "unet"
    denoiser_class = getattr(diffusers, json.loads((model / part / "config.json").read_text())["_class_name"])
    with init_empty_weights():
        denoiser = denoiser_class.from_config(denoiser_class.load_config(model / part))
    state = pipeline_class.lora_state_dict(str(trained))
    state = state[0] if isinstance(state, tuple) else state
    denoiser.load_lora_adapter(state, prefix=part, adapter_name="trained", low_cpu_mem_usage=True)
    wrapped = [m for m in denoiser.modules() if "trained" in getattr(m, "lora_A", {})]
    ours = sum(1 for key in state if key.startswith(f"{part}."))
    return f"{2 * len(wrapped)} of {ours} {part} tensors placed on {len(wrapped)} layers"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=str(ROOT / "runs" / "full_size"))
    parser.add_argument("--only", default="", help="comma-separated cases: " + ",".join(CASES))
    parser.add_argument("--resolution-sdxl", type=int, default=1024)
    parser.add_argument(
        "--memory-cap", type=float, default=0.0, help="run each case in a cgroup of this many GiB (root, cgroup v1)"
    )
    args = parser.parse_args()
    root = Path(args.root)
    root.mkdir(parents=True, exist_ok=True)
    results_file = root / "results.json"
    results = json.loads(results_file.read_text()) if results_file.is_file() else {}
    for name in [c for c in (args.only.split(",") if args.only else CASES) if c]:
        key = f"{name}@{args.resolution_sdxl if CASES[name][0] == 'sdxl' else 512}" + (
            f" cap {args.memory_cap:g} GiB" if args.memory_cap else ""
        )
        if key in results and "error" not in results[key]:
            print(f"{key}: done earlier, skipped")
            continue
        print(f"{key}: running ...", flush=True)
        # each case in its own process so that peak RSS is that case's
        probe = subprocess.run(
            [
                sys.executable,
                __file__,
                "--root",
                str(root),
                "--resolution-sdxl",
                str(args.resolution_sdxl),
                "--single",
                name,
                "--memory-cap",
                str(args.memory_cap),
            ],
            capture_output=True,
            text=True,
        )
        results[key] = (
            json.loads(probe.stdout.strip().splitlines()[-1])
            if probe.returncode == 0
            else {"case": name, "error": probe.stderr[-300:]}
        )
        results_file.write_text(json.dumps(results, indent=2))
        print(json.dumps(results[key]), flush=True)
    print(
        "\n| case | px | s/step | first step s | start-up s | peak RSS GB | peak "
        "anonymous GB | RSS during steps GB |\n|---|---|---|---|---|---|---|---|"
    )
    for r in results.values():
        if "error" in r:
            print(f"| {r['case']} | | failed: {r['error'][:80]} | | | | | |")
        else:
            capped = f" (cap {r['memory_cap_gb']:g} GiB)" if r.get("memory_cap_gb") else ""
            print(
                f"| {r['case']}{capped} | {r['resolution']} | {r['s_per_step']} | "
                f"{r['first_step_s']} | {r['startup_s']} | {r['peak_rss_gb']} | "
                f"{r.get('peak_anon_gb', '')} | {r.get('steps_rss_gb', '')} |"
            )


def write_single_file(family: str, root: Path) -> None:
    """The fp16 folder as one original-layout fp16 file (what model sites share)."""
    import torch
    from diffusers import DiffusionPipeline

    from dreamtune.models.single_file import save_single_file

    pipeline = DiffusionPipeline.from_pretrained(str(root / f"{family}-fp16"), torch_dtype=torch.float16)
    save_single_file(pipeline, root / f"{family}.safetensors")


if __name__ == "__main__":
    if "--single-file" in sys.argv:
        write_single_file(sys.argv[sys.argv.index("--single-file") + 1], Path(sys.argv[sys.argv.index("--root") + 1]))
    elif "--build" in sys.argv:
        family = sys.argv[sys.argv.index("--build") + 1]
        build(family, Path(sys.argv[sys.argv.index("--root") + 1]) / f"{family}-fp16")
    elif "--single" in sys.argv:
        index = sys.argv.index("--single")
        name = sys.argv[index + 1]
        root = Path(sys.argv[sys.argv.index("--root") + 1])
        resolution = int(sys.argv[sys.argv.index("--resolution-sdxl") + 1])
        cap = float(sys.argv[sys.argv.index("--memory-cap") + 1]) if "--memory-cap" in sys.argv else 0.0
        print(json.dumps(run_case(name, root, resolution, cap)))
    else:
        main()
