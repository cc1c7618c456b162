"""rl.rewards weights -> one WeightedRewards."""

from __future__ import annotations

import dataclasses

from dreamtune.errors import UserError
from dreamtune.rewards.base import WeightedRewards


def build_rewards(rl, clip=None, photos=()) -> WeightedRewards:
    """The weighted rewards ``rl`` (config.rl) asks for: ``rl.rewards`` the weights, ``rl.subject`` the
    identifier clip_score removes, ``rl.print_*`` / ``rl.ink_limit`` print_proof's settings; ``clip``:
    ClipFeatures (clip_score, subject_fidelity); ``photos``: the subject's PIL images (subject_fidelity)."""
    from dreamtune.rewards.alignment import ClipScore, SubjectFidelity
    from dreamtune.rewards.compression import JpegCompressibility, JpegIncompressibility
    from dreamtune.rewards.print_proof import PrintProof
    from dreamtune.rewards.print_quality import PrintQuality

    terms = []
    for name, weight in dataclasses.asdict(rl.rewards).items():
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
            terms.append((weight, PrintProof(rl.print_profile or None, rl.print_intent, rl.ink_limit)))
        elif name == "clip_score":
            terms.append((weight, ClipScore(clip, rl.subject)))
        else:
            terms.append((weight, SubjectFidelity(clip, list(photos))))
    return WeightedRewards(terms)
