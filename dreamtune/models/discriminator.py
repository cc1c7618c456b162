"""The adversarial objective's discriminator, after ADD (Sauer et al. 2023, "Adversarial Diffusion
Distillation", sec. 3.2): a *frozen* pretrained feature network with small trainable heads.

Feature network: a CLIP image tower (the mini CLIP on the miniature, OpenAI CLIP ViT-B/32 for SD).
Why not the alternatives: the VAE encoder sees texture, not identity (the discriminator would win
on low-level statistics); the UNet's down blocks move while the UNet trains. A frozen semantic
tower, as ADD's DINO, judges "is this the subject in a plausible scene" and keeps the game stable.

Heads: one per tapped layer: token features -> LayerNorm -> Linear -> FiLM(timestep) -> LeakyReLU
-> Linear -> one logit per token, averaged (a patch-wise verdict, like ADD's heads).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def timestep_embedding(timesteps: Tensor, dim: int = 64, max_period: float = 10_000.0) -> Tensor:
    half = dim // 2
    frequencies = torch.exp(-math.log(max_period) * torch.arange(half, device=timesteps.device) / half)
    angles = timesteps.float()[:, None] * frequencies[None]
    return torch.cat([angles.cos(), angles.sin()], dim=-1)


class Head(nn.Module):
    def __init__(self, width: int, hidden: int = 128, time_dim: int = 64):
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.inp = nn.Linear(width, hidden)
        self.film = nn.Linear(time_dim, 2 * hidden)
        self.out = nn.Linear(hidden, 1)
        nn.init.zeros_(self.film.weight)
        nn.init.zeros_(self.film.bias)

    def forward(self, tokens: Tensor, time: Tensor) -> Tensor:
        scale, shift = self.film(time)[:, None].chunk(2, dim=-1)
        hidden = F.leaky_relu(self.inp(self.norm(tokens)) * (1 + scale) + shift, 0.2)
        return self.out(hidden).squeeze(-1).mean(-1)  # (B,)


class FeatureDiscriminator(nn.Module):
    """Logits (B,) for images (B,3,H,W) in [0,1] at diffusion timesteps (B,)."""

    def __init__(self, clip_features, layers: tuple[int, ...] | None = None, hidden: int = 128):
        super().__init__()
        self.features = clip_features  # an evaluation.features.ClipFeatures
        self.features.requires_grad_(False)
        vision = clip_features.model.config.vision_config
        count = vision.num_hidden_layers
        self.layers = (
            tuple(layers)
            if layers
            else tuple(sorted({max(1, count // 4), max(1, count // 2), max(1, 3 * count // 4), count}))
        )
        self.heads = nn.ModuleList(Head(vision.hidden_size, hidden) for _ in self.layers)

    def trainable(self) -> nn.Module:
        return self.heads

    def forward(self, images: Tensor, timesteps: Tensor) -> Tensor:
        pixels = self.features.tensor_pixels(images)
        states = self.features.model.vision_model(pixel_values=pixels, output_hidden_states=True).hidden_states
        time = timestep_embedding(timesteps.to(images.device))
        logits = [head(states[layer].float(), time) for layer, head in zip(self.layers, self.heads)]
        return torch.stack(logits).mean(0)


class _FeaturesTaken(Exception):
    """Raised by the last feature tap: the rest of the denoiser is not needed."""


class MapHead(Head):
    """:class:`Head` on a (B,C,h,w) feature map: each position is a token. (Position-wise linear
    layers rather than GroupNorm + 1x1 convs: PyTorch's CPU GroupNorm backward crashes on 1x1 maps.)"""

    def forward(self, features: Tensor, time: Tensor) -> Tensor:
        return super().forward(features.float().flatten(2).transpose(1, 2), time)


class DenoiserFeatureDiscriminator(nn.Module):
    """After LADD (Sauer et al. 2024, "Fast High-Resolution Image Synthesis with Latent Adversarial
    Diffusion Distillation", sec. 3): the discriminator's features are a *frozen copy of the
    denoiser* itself, run on re-noised latents with the batch's text conditioning; a head per down
    block and on the mid block, conditioned on the re-noising level. It works in latent space (no
    VAE decode), sees what the denoiser sees, and its features cannot drift as the trained model
    moves. The up blocks are never run. UNet denoisers only (SD 1.x / 2.x / SDXL)."""

    space = "latents"

    def __init__(self, frozen_denoiser: nn.Module, predict, hidden: int = 128):
        super().__init__()
        self.denoiser = [frozen_denoiser]  # a list: not a submodule, so never in the heads' state or optimizer
        self.predict = predict  # (noisy, timesteps, conditioning, denoiser) -> output (family.predict)
        channels = list(frozen_denoiser.config.block_out_channels)
        taps = [*frozen_denoiser.down_blocks, frozen_denoiser.mid_block]
        # conditioned on the re-noising level and on the training timestep x̂0 came from (how blurry x̂0 may be)
        self.heads = nn.ModuleList(MapHead(c, hidden, time_dim=128) for c in [*channels, channels[-1]])
        self._taken: list[Tensor] = []
        for index, block in enumerate(taps):
            block.register_forward_hook(self._tap(last=index == len(taps) - 1))

    def _tap(self, last: bool):
        def hook(module, inputs, output):
            self._taken.append(output[0] if isinstance(output, tuple) else output)
            if last:
                raise _FeaturesTaken

        return hook

    def trainable(self) -> nn.Module:
        return self.heads

    def features(self, noisy: Tensor, timesteps: Tensor, conditioning: dict) -> list[Tensor]:
        """The tapped feature maps of the frozen denoiser (the graph to ``noisy`` is kept)."""
        self._taken = []
        try:
            self.predict(noisy, timesteps, conditioning, self.denoiser[0])
        except _FeaturesTaken:
            pass
        taken, self._taken = self._taken, []
        return taken

    def judge(self, features: list[Tensor], levels: Tensor, timesteps: Tensor) -> Tensor:
        """Logits (B,) from ``features`` of latents re-noised to ``levels``, whose clean estimate
        came from the denoiser at ``timesteps`` (real latents are judged with the same)."""
        device = features[0].device
        time = torch.cat([timestep_embedding(levels.to(device)), timestep_embedding(timesteps.to(device))], dim=-1)
        return torch.stack([head(f, time) for f, head in zip(features, self.heads)]).mean(0)
