"""rl.rewards weights -> one WeightedRewards."""

from __future__ import annotations

import dataclasses

from dreamtune.errors import UserError
from dreamtune.rewards.base import WeightedRewards


def build_rewards(rl, clip=None, photos=(), class_images=(), prompts=(), identity=None) -> WeightedRewards:
    """The weighted rewards ``rl`` (config.rl) asks for: ``rl.rewards`` the weights, ``rl.subject`` the
    identifier clip_score removes, ``rl.print_*`` / ``rl.ink_limit`` print_proof's settings; ``clip``:
    ClipFeatures (clip_score, subject_fidelity, subject_in_context); ``photos``: the subject's PIL images
    (subject_fidelity, subject_in_context); ``class_images``: prior preservation's (subject_in_context);
    ``prompts``: the run's filled-in reward prompts (the in-context rewards' scenes); ``identity``: ImageFeatures
    for their identity half (rl.identity_model; None: the CLIP)."""
    from dreamtune.rewards.alignment import ClipScore, SubjectFidelity, SubjectInContext
    from dreamtune.rewards.compression import JpegCompressibility, JpegIncompressibility
    from dreamtune.rewards.print_proof import PrintProof
    from dreamtune.rewards.print_quality import PrintQuality

    terms = []
    for name, weight in dataclasses.asdict(rl.rewards).items():
        if not weight:
            continue
        if name in ("clip_score", "subject_fidelity", "subject_in_context", "print_in_context") and clip is None:
            raise UserError(f"rl.rewards.{name} needs a CLIP model; set rl.clip to a CLIP folder.")
        if name in ("subject_fidelity", "subject_in_context", "print_in_context") and not photos:
            raise UserError(f"rl.rewards.{name} needs the subject's photos; set data.instance_dir.")
        reward = {
            "print_quality": PrintQuality,
            "jpeg_compressibility": JpegCompressibility,
            "jpeg_incompressibility": JpegIncompressibility,
        }.get(name)
        if reward is not None:
            terms.append((weight, reward()))
        elif name == "print_proof":
            terms.append((weight, PrintProof(rl.print_profile or None, rl.print_intent, rl.ink_limit)))
        elif name == "clip_score":
            terms.append((weight, ClipScore(clip, rl.subject)))
        elif name == "subject_fidelity":
            terms.append((weight, SubjectFidelity(clip, list(photos))))
        elif name == "print_in_context":
            terms.append((weight, print_in_context(rl, clip, photos, prompts, identity)))
        else:
            if not class_images:
                raise UserError(
                    "rl.rewards.subject_in_context found no class images; set prior.enabled=true so the run makes "
                    "them (or prior.class_dir to a prepared folder of images of the class)."
                )
            terms.append(
                (
                    weight,
                    SubjectInContext(
                        clip, list(photos), list(class_images), prompts, rl.subject, rl.identity_weight, identity
                    ),
                )
            )
    return WeightedRewards(terms)


def print_in_context(rl, clip, photos, prompts, identity):
    """print_in_context from ``rl``'s print settings (its identity: the plain similarity to the photos)."""
    from dreamtune.rewards.alignment import SubjectInContext
    from dreamtune.rewards.print_in_context import PrintInContext
    from dreamtune.rewards.simulated_print import SimulatedPrint, Viewing

    printer = SimulatedPrint(
        rl.print_profile or None, rl.print_intent, Viewing(rl.print_width_cm, rl.viewing_distance_cm)
    )
    judged = SubjectInContext(
        clip, list(photos), [], prompts, rl.subject, rl.identity_weight, identity, view=printer, margin=False
    )
    return PrintInContext(judged, printer, rl.ink_limit)
