"""rl.rewards weights -> one WeightedRewards."""

from __future__ import annotations

import dataclasses

from dreamtune.errors import UserError
from dreamtune.rewards.base import WeightedRewards


def build_rewards(
    weights,
    clip=None,
    photos=(),
    identifier: str = "sks",
    print_profile: str = "",
    print_intent: str = "perceptual",
    ink_limit: float = 300.0,
) -> WeightedRewards:
    """``weights``: config.RewardWeights; ``clip``: ClipFeatures (clip_score, subject_fidelity);
    ``photos``: the subject's PIL images (subject_fidelity); ``print_*``, ``ink_limit``: print_proof's."""
    from dreamtune.rewards.alignment import ClipScore, SubjectFidelity
    from dreamtune.rewards.compression import JpegCompressibility, JpegIncompressibility
    from dreamtune.rewards.print_proof import PrintProof
    from dreamtune.rewards.print_quality import PrintQuality

    terms = []
    for name, weight in dataclasses.asdict(weights).items():
        if not weight:
            continue
        if name in ("clip_score", "subject_fidelity") and clip is None:
            raise UserError(f"rl.rewards.{name} needs a CLIP model; set rl.clip to a CLIP folder.")
        if name == "subject_fidelity" and not photos:
            raise UserError("rl.rewards.subject_fidelity needs the subject's photos; set data.instance_dir.")
        reward = {
            "print_quality": PrintQuality,
            "jpeg_compressibility": JpegCompressibility,
            "jpeg_incompressibility": JpegIncompressibility,
        }.get(name)
        if reward is not None:
            terms.append((weight, reward()))
        elif name == "print_proof":
            terms.append((weight, PrintProof(print_profile or None, print_intent, ink_limit)))
        elif name == "clip_score":
            terms.append((weight, ClipScore(clip, identifier)))
        else:
            terms.append((weight, SubjectFidelity(clip, list(photos))))
    return WeightedRewards(terms)
