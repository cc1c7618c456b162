"""The miniature's judge: what the world knows, learned so that it survives the generator's blur.

The world can render any instance in any context, so personalization on the miniature can be
judged on exactly what it should achieve: *identity* (is it this instance, among its class's
instances?), *context* (is it in the prompted context?) and *class*. One small CNN does all three:

  trunk   4 stride-2 residual stages on 64x64 pixels
  heads   an instance embedding (unit norm; identity = nearest mean embedding of reference
          photos), class logits (15), context logits (20 contexts + plain)

Training (``benchmarks/judge_training.py``, run by ``benchmarks/miniature_judge.py``) never sees a
held-out instance: identities are the 45 pretraining instances plus fresh
*distractor* pseudo-instances (OpenMoji glyphs of no world class at random hues, as the mini
CLIP's image stage uses), pairs of renders in different contexts, trained with a supervised
contrastive loss (Khosla et al. 2020) and cross-entropy heads. Every image is degraded as the
generator degrades: a round trip through the miniature's own VAE (75 %), Gaussian blur
σ ~ U(0, 1.5) px, pixel noise, so a soft generated image is judged on what it shows.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dreamtune.evaluation.features import ImageFeatures
from dreamtune.miniature import world

CLASSES = tuple(world.GLYPHS)
CONTEXT_LABELS = tuple(world.CONTEXTS) + ("plain",)


class _Block(nn.Module):
    def __init__(self, width_in: int, width: int):
        super().__init__()
        self.conv1 = nn.Conv2d(width_in, width, 3, stride=2, padding=1)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)
        self.norm1, self.norm2 = nn.GroupNorm(8, width), nn.GroupNorm(8, width)
        self.skip = nn.Conv2d(width_in, width, 1, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        h = F.silu(self.norm1(self.conv1(x)))
        return F.silu(self.norm2(self.conv2(h)) + self.skip(x))


class JudgeNet(nn.Module):
    def __init__(self, widths=(32, 64, 128, 192), embedding: int = 128):
        super().__init__()
        self.stem = nn.Conv2d(3, widths[0], 3, padding=1)
        self.stages = nn.Sequential(*[_Block(a, b) for a, b in zip((widths[0],) + tuple(widths[:-1]), widths)])
        self.neck = nn.Linear(widths[-1], 256)
        self.embedding = nn.Linear(256, embedding)
        self.classes = nn.Linear(256, len(CLASSES))
        self.contexts = nn.Linear(256, len(CONTEXT_LABELS))

    def forward(self, pixels: Tensor) -> dict[str, Tensor]:
        """``pixels`` (B,3,64,64) in [-1, 1]."""
        h = self.stages(F.silu(self.stem(pixels))).mean(dim=(2, 3))
        h = F.silu(self.neck(h))
        return {
            "embedding": F.normalize(self.embedding(h), dim=-1),
            "class": self.classes(h),
            "context": self.contexts(h),
        }


# ---- degradation: what the generator does to an image --------------------------------------
def gaussian_blur(pixels: Tensor, sigmas: Tensor) -> Tensor:
    """Per-image Gaussian blur, σ in pixels (σ = 0: unchanged)."""
    radius = 3
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernels = torch.exp(-(offsets[None] ** 2) / (2 * sigmas.clamp(min=1e-3)[:, None] ** 2))
    kernels = kernels / kernels.sum(dim=1, keepdim=True)  # (B, 7)
    batch, channels, height, width = pixels.shape
    flat = F.pad(pixels.reshape(1, batch * channels, height, width), (radius,) * 4, mode="reflect")
    weight = kernels.repeat_interleave(channels, dim=0)
    flat = F.conv2d(flat, weight.view(-1, 1, 1, 2 * radius + 1), groups=batch * channels)
    flat = F.conv2d(flat, weight.view(-1, 1, 2 * radius + 1, 1), groups=batch * channels)
    return flat.view(batch, channels, height, width)


@torch.no_grad()
def vae_round_trip(vae, pixels: Tensor) -> Tensor:
    latents = vae.encode(pixels.to(vae.dtype)).latent_dist.mean
    return vae.decode(latents).sample.float().clamp(-1, 1)


def to_pixels(images) -> Tensor:
    array = np.stack([np.asarray(image.convert("RGB"), dtype=np.float32) for image in images])
    return torch.from_numpy(array).permute(0, 3, 1, 2) / 127.5 - 1.0


# ---- saving and loading ------------------------------------------------------------------
def save_judge(net: JudgeNet, folder: Path) -> Path:
    from safetensors.torch import save_file

    from dreamtune.atomic import atomic_dir

    with atomic_dir(Path(folder), owned=True) as temp:
        save_file(
            {k: v.detach().half().contiguous() for k, v in net.state_dict().items()}, str(temp / "judge.safetensors")
        )  # fp16 on disk, fp32 when loaded
        (temp / "config.json").write_text(json.dumps({"classes": CLASSES, "contexts": CONTEXT_LABELS}, indent=1))
    return Path(folder)


def load_judge(folder: Path) -> JudgeNet:
    from safetensors.torch import load_file

    from dreamtune.errors import UserError

    path = Path(folder) / "judge.safetensors"
    if not path.is_file():
        raise UserError(f"{folder} holds no judge.safetensors; train it with python benchmarks/miniature_judge.py.")
    net = JudgeNet()
    net.load_state_dict(load_file(str(path)))
    return net.eval()


class JudgeFeatures(ImageFeatures):
    """The judge's instance embedding as image features (a reward's identity network: ``rl.identity_model``)."""

    def __init__(self, net: JudgeNet, name: str = "judge"):
        super().__init__(64, name=name)  # (x - 0.5) / 0.5: the judge's [-1, 1]
        self.net = net.eval()

    def embed(self, pixels: Tensor) -> Tensor:
        return self.net(pixels)["embedding"]


# ---- verdicts ---------------------------------------------------------------------------------
@torch.no_grad()
def judge_images(net: JudgeNet, images) -> dict[str, Tensor]:
    pixels = images if isinstance(images, Tensor) else to_pixels(images)
    outputs = [net(pixels[i : i + 128]) for i in range(0, len(pixels), 128)]
    return {k: torch.cat([o[k] for o in outputs]) for k in outputs[0]}


def reference_photos(name: str, count: int = 5, seed: int = 50_000):
    """An instance's "photos": renders in the demo's training contexts (the held-out subjects' are
    exactly the photos personalization trains on)."""
    from dreamtune.miniature.demo import TRAIN_CONTEXTS

    return [world.render(world.Scene(name, TRAIN_CONTEXTS[i % len(TRAIN_CONTEXTS)]), seed + i) for i in range(count)]


def load_vae(model_dir: Path):
    """The miniature's VAE (its round trip is what every generated image went through)."""
    from diffusers import AutoencoderKL

    from dreamtune.models.loading import load_folder

    return load_folder(AutoencoderKL, Path(model_dir) / "vae", torch_dtype=torch.float32).eval()


@torch.no_grad()
def instance_references(net: JudgeNet, subject: str, photos=None, vae=None) -> tuple[list[str], Tensor]:
    """Every pretraining instance and the subject, each with the mean embedding of its photos
    (the subject's own ``photos`` when given, e.g. the personalization set), passed through the
    VAE when given, as generated images are. The other held-out instances are nobody's reference; a
    new-shape subject (miniature/new_shapes.py) joins the pretraining instances as the held-out ones do."""
    names = [i.name for i in world.INSTANCES if i.name not in world.HELD_OUT or i.name == subject]
    if subject not in names:
        names.append(world.instance(subject).name)
    means = []
    for name in names:
        seed = 50_000 if name == subject else 60_000 + 97 * world.INSTANCES.index(world.instance(name))
        pixels = to_pixels(photos if (name == subject and photos is not None) else reference_photos(name, seed=seed))
        if vae is not None:
            pixels = vae_round_trip(vae, pixels)
        means.append(F.normalize(judge_images(net, pixels)["embedding"].mean(0), dim=-1))
    return names, torch.stack(means)


@torch.no_grad()
def per_image_verdicts(
    net: JudgeNet,
    images,
    subject: str,
    contexts: list[str | None],
    photos=None,
    vae=None,
    references: tuple[list[str], Tensor] | None = None,
) -> dict[str, Tensor]:
    """For images meant to show ``subject`` in ``contexts`` (None: plain), one value per image:
      identity    the subject is the nearest of its class's instances (chance 25 %)
      identity_all the subject is the nearest of all instances, every class's (the other classes are
                  distractors: an image that is not even of the class cannot pass)
      class       the nearest of all instances is of the subject's class (retrieval: a class head
                  cannot know a glyph it never saw, the references can)
      context     the context head names the prompted context
      similarity  cosine to the mean of the subject's photos (the judge's CLIP-I).
    ``references``: :func:`instance_references` of the same arguments, when already computed."""
    out = judge_images(net, images)
    names, means = references or instance_references(net, subject, photos, vae)
    noun = world.instance(subject).class_noun
    family = [k for k, n in enumerate(names) if world.instance(n).class_noun == noun]
    similarity = out["embedding"] @ means.T
    nearest_in_family = torch.tensor(family)[similarity[:, family].argmax(dim=1)]
    nearest = similarity.argmax(dim=1)
    wanted_context = torch.tensor([CONTEXT_LABELS.index(c or "plain") for c in contexts])
    mine = names.index(subject)
    return {
        "identity": (nearest_in_family == mine).float(),
        "identity_all": (nearest == mine).float(),
        "class": torch.tensor([float(world.instance(names[k]).class_noun == noun) for k in nearest.tolist()]),
        "context": (out["context"].argmax(1) == wanted_context).float(),
        "similarity": similarity[:, mine],
    }


def verdicts(
    net: JudgeNet,
    images,
    subject: str,
    contexts: list[str | None],
    photos=None,
    vae=None,
    references: tuple[list[str], Tensor] | None = None,
) -> dict[str, float]:
    """The means of :func:`per_image_verdicts` over ``images``."""
    return {
        k: float(v.mean())
        for k, v in per_image_verdicts(net, images, subject, contexts, photos, vae, references).items()
    }
