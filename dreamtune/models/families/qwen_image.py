"""Qwen-Image (Alibaba Qwen; a 20 B MMDiT): Qwen2.5-VL-7B's last hidden state is the caption (the chat
template's first 34 tokens dropped, padding masked), a causal 3-D VAE whose 16-channel latents carry a
frame axis and are normalised by per-channel means and deviations from its config, 2x2 latent patches as
tokens. Its pipeline guides with ``true_cfg_scale`` — neg + s·(pos − neg), then each token's prediction
rescaled to the norm of the conditional one — and a negative prompt (a blank one by default here).

Captions are kept padded to ``max_sequence_length`` with their mask beside them, so embeddings cache and
batch like every other family's; before the transformer sees them the batch is cut to its longest caption,
which is what the pipeline hands it (the mask covers the rest).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from dreamtune.models.components import Components
from dreamtune.models.families.flow import FlowFamily, packed_token_schedule


class QwenImage(FlowFamily):
    name = "qwen-image"
    pipeline_classes = ("QwenImagePipeline",)
    hub_tags = ("qwen-image",)
    transformer_class = "QwenImageTransformer2DModel"
    vae_class = "AutoencoderKLQwenImage"
    text_encoder_names = ("text_encoder",)
    encoder_classes = ("Qwen2_5_VLForConditionalGeneration",)
    tokenizer_classes = ("Qwen2Tokenizer",)
    max_sequence_length = 512  # the pipeline's default cut of the caption's embeddings
    offload_blocks = r"transformer_blocks\.\d+"
    default_guidance = 4.0  # QwenImagePipeline's default true_cfg_scale
    guided_by_true_cfg = True

    # ---- latents: one frame of the 3-D VAE, normalised per channel ----------------------------
    def vae_scale_factor(self, vae: nn.Module) -> int:
        return 2 ** len(vae.config.temperal_downsample)

    def latent_shape(self, components: Components, resolution: int) -> tuple[int, int, int]:
        size = resolution // components.vae_scale_factor
        return components.vae.config.z_dim, size, size

    def _statistics(self, components: Components, like: Tensor) -> tuple[Tensor, Tensor]:
        config = components.vae.config
        mean = torch.tensor(config.latents_mean, device=like.device, dtype=torch.float32).view(1, -1, 1, 1)
        std = torch.tensor(config.latents_std, device=like.device, dtype=torch.float32).view(1, -1, 1, 1)
        return mean, std

    def encode_latents(self, components: Components, pixels: Tensor) -> Tensor:
        vae = components.vae
        latents = vae.encode(pixels.to(vae.device, vae.dtype)[:, :, None]).latent_dist.mean[:, :, 0].float()
        mean, std = self._statistics(components, latents)
        return (latents - mean) / std

    def decode(self, components: Components, latents: Tensor) -> Tensor:
        mean, std = self._statistics(components, latents)
        frames = (latents.float() * std + mean)[:, :, None].to(components.vae.dtype)
        return components.vae.decode(frames).sample[:, :, 0]

    def default_resolution(self, components: Components) -> int:
        return 128 * components.vae_scale_factor  # 1024 px, the pipeline's default_sample_size

    # ---- conditioning and prediction ----------------------------------------------------------
    def encode_prompts(self, components: Components, prompts: list[str], device) -> dict[str, Tensor]:
        pipeline = self.pipeline(components)
        embeds, mask = pipeline.encode_prompt(
            list(prompts), device=device, max_sequence_length=self.max_sequence_length
        )
        if mask is None:  # the pipeline drops an all-ones mask
            mask = torch.ones(embeds.shape[:2], dtype=torch.long, device=embeds.device)
        padded = embeds.new_zeros(len(embeds), self.max_sequence_length, embeds.shape[-1])
        padded[:, : embeds.shape[1]] = embeds
        kept = mask.new_zeros(len(embeds), self.max_sequence_length)
        kept[:, : mask.shape[1]] = mask
        return {"encoder_hidden_states": padded, "encoder_hidden_states_mask": kept}

    def predict(
        self,
        components: Components,
        noisy: Tensor,
        timesteps: Tensor,
        conditioning: dict,
        denoiser=None,
        guidance: float | None = None,
    ) -> Tensor:
        cls = self.pipeline_class()
        denoiser = denoiser or components.denoiser
        batch, channels, height, width = noisy.shape
        mask = conditioning["encoder_hidden_states_mask"]
        length = int(mask.sum(dim=1).max())  # the batch's longest caption, as the pipeline pads it
        out = denoiser(
            hidden_states=cls._pack_latents(noisy, batch, channels, height, width),
            timestep=timesteps.float() / 1000,
            encoder_hidden_states=conditioning["encoder_hidden_states"][:, :length],
            encoder_hidden_states_mask=mask[:, :length],
            img_shapes=[[(1, height // 2, width // 2)]] * batch,
            return_dict=False,
        )[0]
        scale = components.vae_scale_factor
        return cls._unpack_latents(out, height * scale, width * scale, scale)[:, :, 0]

    def combine_guidance(self, cond: Tensor, uncond: Tensor, guidance: float) -> Tensor:
        """The pipeline's true CFG: the guided prediction of each 2x2 patch token rescaled to the conditional one's norm."""
        combined = uncond + guidance * (cond - uncond)
        batch, channels, height, width = cond.shape
        patches = lambda x: x.reshape(batch, channels, height // 2, 2, width // 2, 2)
        norm = lambda x: torch.linalg.vector_norm(patches(x), dim=(1, 3, 5), keepdim=True)
        return (patches(combined) * (norm(cond) / norm(combined))).reshape(cond.shape)

    def sampling_schedule(self, components: Components, steps: int, resolution: int) -> dict:
        return packed_token_schedule(components, steps, resolution)
