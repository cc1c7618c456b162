"""VAE pretraining (Kingma & Welling 2014; the KL-regularized autoencoder of Rombach et al.
2022): L1 + MSE reconstruction plus a small KL term keeping latents near N(0, I)."""
from __future__ import annotations

from typing import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dreamtune.data.augment import sample_generator
from dreamtune.objectives.base import LossOutput


class AutoencoderObjective:
    def __init__(self, vae: nn.Module, kl_weight: float = 1e-6, seed: int = 0):
        self.vae, self.kl_weight, self.seed = vae, kl_weight, seed

    def trainable_modules(self) -> dict[str, nn.Module]:
        return {"model": self.vae}

    def __call__(self, batch: Mapping[str, Tensor], step: int) -> LossOutput:
        pixels = batch["pixels"].to(next(self.vae.parameters()).device)
        posterior = self.vae.encode(pixels).latent_dist
        noise = torch.randn(posterior.mean.shape, generator=sample_generator(self.seed, step, 0, 3))
        latents = posterior.mean + posterior.std * noise.to(posterior.mean.device, posterior.mean.dtype)
        reconstruction = self.vae.decode(latents).sample.float()
        l1 = F.l1_loss(reconstruction, pixels.float())
        mse = F.mse_loss(reconstruction, pixels.float())
        kl = posterior.kl().mean() / pixels[0].numel()
        loss = l1 + mse + self.kl_weight * kl
        return LossOutput({"model": loss}, {"loss": loss.item(), "l1": l1.item(), "mse": mse.item(), "kl": kl.item()})
