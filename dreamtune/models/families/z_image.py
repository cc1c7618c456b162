"""Z-Image (Tongyi-MAI; a 6 B single-stream diffusion transformer): one Qwen3 text encoder whose
second-to-last hidden state, masked tokens only, is the caption; FLUX.1's 16-channel VAE; each
latent enters as a one-frame clip cut into 2x2 patches. The model is given t = 1 - σ and predicts
minus the flow velocity, and its pipeline writes classifier-free guidance as pos + s·(pos - neg),
i.e. the usual neg + (s + 1)·(pos - neg). Trains with the rectified-flow noise process like the others.

Captions have different lengths and the transformer takes them as a list; here each is kept padded
to the family's sequence length with its length beside it (``text_lengths``), so embeddings batch and
cache like every other family's, and the padding is cut off again before the transformer sees them.
"""

from __future__ import annotations

import torch
from torch import Tensor

from dreamtune.models.components import Components
from dreamtune.models.families.flow import FlowFamily, packed_token_schedule


class ZImage(FlowFamily):
    name = "z-image"
    pipeline_classes = ("ZImagePipeline",)
    hub_tags = ("z-image",)
    transformer_class = "ZImageTransformer2DModel"
    text_encoder_names = ("text_encoder",)
    encoder_classes = ("Qwen3Model",)
    tokenizer_classes = ("Qwen2Tokenizer",)
    max_sequence_length = 512
    offload_blocks = r"(noise_refiner|context_refiner|siglip_refiner|layers)\.\d+"
    default_guidance = 5.0  # ZImagePipeline's default s (the usual CFG scale 6)

    def classifier_free_scale(self, guidance: float) -> float:
        return guidance + 1.0

    def encode_prompts(self, components: Components, prompts: list[str], device) -> dict[str, Tensor]:
        pipeline = self.pipeline(components)
        length = self._text_length(components)
        embeds, _ = pipeline.encode_prompt(
            list(prompts), device=device, do_classifier_free_guidance=False, max_sequence_length=length
        )
        padded = embeds[0].new_zeros(len(embeds), length, embeds[0].shape[-1])
        for row, embed in enumerate(embeds):
            padded[row, : len(embed)] = embed
        return {
            "encoder_hidden_states": padded,
            "text_lengths": torch.tensor([len(e) for e in embeds], device=padded.device),
        }

    def predict(
        self,
        components: Components,
        noisy: Tensor,
        timesteps: Tensor,
        conditioning: dict,
        denoiser=None,
        guidance: float | None = None,
    ) -> Tensor:
        denoiser = denoiser or components.denoiser
        text, lengths = conditioning["encoder_hidden_states"], conditioning["text_lengths"]
        captions = [text[row, : int(lengths[row])] for row in range(len(text))]
        clips = list(noisy.unsqueeze(2).unbind(0))  # (C, 1 frame, h, w) each
        out = denoiser(clips, (1000 - timesteps.float().to(noisy.device)) / 1000, captions, return_dict=False)[0]
        return -torch.stack(out).squeeze(2)

    def sampling_schedule(self, components: Components, steps: int, resolution: int) -> dict:
        return packed_token_schedule(components, steps, resolution)
