"""The personalization methods (``method.kind``) as objects.

What differs between LoRA, full DreamBooth, textual inversion and training from scratch — what each
trains and in which dtype, what it refuses, how its subject is named in prompts, how much it adds to
memory, and how it makes a loaded model trainable — is answered by the method's object, so no other
file asks ``method.kind == ...``. ``method_of(config.method)`` gives the object.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dreamtune.errors import UserError

if TYPE_CHECKING:
    from dreamtune.config import Config, MethodConfig


class Method:
    """A full fine-tune of the denoiser (DreamBooth); the other methods override what differs."""

    kind = "dreambooth"
    trains_denoiser_weights = True  # the denoiser's own weights (not an adapter): no quantized base; FSDP can shard it
    starts_from_scratch = False
    adds_lora = False
    learns_token = False  # a new text-encoder token: captions must contain it, and it names the subject

    def trains_text_encoder_weights(self, method: MethodConfig) -> bool:
        """Whether text-encoder parameters train (their weights, or a token's embedding rows)."""
        return method.train_text_encoder

    def trains_inside_text_encoders(self, method: MethodConfig) -> bool:
        """Whether anything trains inside the text encoders (weights, a LoRA, or a token)."""
        return self.trains_text_encoder_weights(method)

    def identifier(self, method: MethodConfig, default: str) -> str:
        """The word that names the subject in prompts."""
        return default

    def trained_denoiser_parameters(self, denoiser_parameters: int, lora_parameters: int) -> int:
        """How many denoiser parameters train, given the denoiser's size and its LoRA's (memory planning)."""
        return denoiser_parameters

    def check(self, config: Config) -> None:
        """Refusals of settings this method cannot combine (before any work)."""

    def check_captions(self, config: Config, captions: list[str], where: str) -> None:
        """Refusals of captions that cannot teach the subject to this method: with prior preservation,
        captions that are the class prompt itself (nothing tells the subject from its class)."""
        if config.prior.enabled and all(c.strip() == config.prior.class_prompt.strip() for c in captions):
            raise UserError(
                f"every caption in {where} equals prior.class_prompt '{config.prior.class_prompt}', so nothing tells "
                "the subject from its class; add an identifier to the instance prompt, e.g. 'a photo of sks dog'."
            )

    def add_trainable(self, components, config: Config):
        """Unfreeze / add what this method trains on a frozen model; its ``TrainableParts``."""
        from dreamtune.models.adapters import full_parts

        return full_parts(components, config)


class Scratch(Method):
    """Every weight of the denoiser from a random start (the miniature's pretraining)."""

    kind = "scratch"
    starts_from_scratch = True


class LoRA(Method):
    kind = "lora"
    trains_denoiser_weights = False
    adds_lora = True

    def trains_text_encoder_weights(self, method: MethodConfig) -> bool:
        return False

    def trains_inside_text_encoders(self, method: MethodConfig) -> bool:
        return method.train_text_encoder or method.lora.text_encoder

    def trained_denoiser_parameters(self, denoiser_parameters: int, lora_parameters: int) -> int:
        return lora_parameters

    def add_trainable(self, components, config: Config):
        from dreamtune.models.adapters import lora_parts

        return lora_parts(components, config)


class TextualInversion(Method):
    kind = "textual_inversion"
    trains_denoiser_weights = False
    learns_token = True

    def trains_text_encoder_weights(self, method: MethodConfig) -> bool:
        return True  # the new token's embedding rows

    def identifier(self, method: MethodConfig, default: str) -> str:
        return method.textual_inversion.placeholder_token

    def trained_denoiser_parameters(self, denoiser_parameters: int, lora_parameters: int) -> int:
        return 0

    def check(self, config: Config) -> None:
        if config.method.train_text_encoder:
            raise UserError("method.train_text_encoder cannot be combined with textual_inversion; set it to false.")
        if config.distill.steps:
            raise UserError(
                "distillation trains the denoiser and textual inversion trains only a word; use method.kind=lora "
                "(with method.lora.init_from=<your personalized model/>)."
            )
        token, prompt = config.method.textual_inversion.placeholder_token, config.data.instance_prompt
        if prompt and token not in prompt:
            raise UserError(
                f"textual inversion learns the token {token}, but data.instance_prompt "
                f"'{prompt}' does not contain it; write e.g. 'a photo of {token} dog'."
            )

    def check_captions(self, config: Config, captions: list[str], where: str) -> None:
        token = config.method.textual_inversion.placeholder_token
        if not any(token in c for c in captions):
            raise UserError(
                f"textual inversion learns {token}, but none of {where} contains it (e.g. '{captions[0]}'); "
                f"prepare the photos again with --instance-prompt 'a photo of {token} dog', or edit the captions."
            )

    def add_trainable(self, components, config: Config):
        from dreamtune.models.adapters import textual_inversion_parts

        return textual_inversion_parts(components, config)


METHODS: dict[str, Method] = {m.kind: m for m in (LoRA(), Method(), TextualInversion(), Scratch())}


def method_of(method: MethodConfig) -> Method:
    """The object of ``method.kind`` (the config's Literal admits only these)."""
    return METHODS[method.kind]
