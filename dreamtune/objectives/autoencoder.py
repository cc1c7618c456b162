"""VAE pretraining (Kingma & Welling 2014; the KL-regularized autoencoder of Rombach et al.
2022): L1 + MSE reconstruction plus a small KL term keeping latents near N(0, I); optionally an
L1 between the images' Sobel gradients (``edge_weight``), which pixel losses under-weight: a
reconstruction that is right on average but soft at edges pays for its blur."""

from __future__ import annotations

from typing import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dreamtune.data.augment import sample_generator
from dreamtune.objectives.base import LossOutput, Objective


class AutoencoderObjective(Objective):
    def __init__(self, vae: nn.Module, kl_weight: float = 1e-6, seed: int = 0, edge_weight: float = 0.0):
        self.vae, self.kl_weight, self.seed, self.edge_weight = vae, kl_weight, seed, edge_weight

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
        metrics = {"l1": l1, "mse": mse, "kl": kl}
        if self.edge_weight:
            metrics["edge"] = F.l1_loss(sobel(reconstruction), sobel(pixels.float()))
            loss = loss + self.edge_weight * metrics["edge"]
        values = torch.stack([loss.detach(), *(v.detach() for v in metrics.values())]).tolist()  # one host sync a step
        return LossOutput({"model": loss}, dict(zip(["loss", *metrics], values)))


def sobel(images: Tensor) -> Tensor:
    """(B,2C,H-2,W-2): horizontal and vertical Sobel gradients of each channel."""
    kx = torch.tensor([[-1.0, 0, 1], [-2, 0, 2], [-1, 0, 1]], device=images.device) / 4
    kernels = torch.stack([kx, kx.T])[:, None].repeat(images.shape[1], 1, 1, 1)
    return F.conv2d(images, kernels, groups=images.shape[1])
