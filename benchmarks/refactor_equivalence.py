"""Does a refactor change results? Trains six tiny runs (SD1 LoRA + prior, SD2-v DreamBooth with
Min-SNR, SDXL textual inversion, DDPO, DRaFT, adversarial) with the code of one source tree and
prints a hash of every exported tensor and the per-step losses. Run it once per tree, compare:

    git worktree add /tmp/before <rev>
    python benchmarks/refactor_equivalence.py /tmp/before > before.txt
    python benchmarks/refactor_equivalence.py . > after.txt && diff before.txt after.txt
"""

from __future__ import annotations

import hashlib
import shutil
import sys
import tempfile
from pathlib import Path

TREE = Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TREE))
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))  # tests.conftest of this checkout

from safetensors.torch import load_file  # noqa: E402

from dreamtune import config  # noqa: E402
from dreamtune.models.tiny import build_tiny_feature_models, build_tiny_pipeline  # noqa: E402
from dreamtune.training.run import train  # noqa: E402
from tests.conftest import make_photos, tiny_overrides  # noqa: E402

RL = {"rl.prompts": "[a dog]", "rl.rewards.print_quality": 1.0, "rl.sample_steps": 3}
CASES = [
    ("sd1", "lora", {"prior.enabled": True, "prior.class_prompt": "a dog"}),
    ("sd2-v", "dreambooth", {"train.min_snr_gamma": 5.0}),
    ("sdxl", "textual_inversion", {"data.instance_prompt": "a photo of <sks> dog"}),
    (
        "sd1",
        "lora",
        {**RL, "rl.algorithm": "ddpo", "rl.samples_per_round": 2, "rl.images_per_prompt": 2, "train.batch_size": 2},
    ),
    ("sd1", "lora", {**RL, "rl.algorithm": "draft"}),
    ("sd1", "lora", {"adversarial.weight": 0.1}),
]


def main() -> None:
    root = Path(tempfile.mkdtemp(prefix="equivalence-"))
    try:
        photos = make_photos(root / "photos")
        clip = build_tiny_feature_models(root / "features")["clip"]
        for index, (family, kind, extra) in enumerate(CASES):
            model = build_tiny_pipeline(root / f"model-{family}", family)
            values = {"method.kind": kind, "train.steps": 3, "data.instance_prompt": "a photo of sks dog", **extra}
            if "adversarial.weight" in extra:
                values["adversarial.features"] = str(clip)
            out = root / f"run-{index}"
            result = train(
                config.load(None, tiny_overrides(model, photos, out, **values)),
                show_progress=False,
                log=lambda *_: None,
            )
            digest = hashlib.sha256()
            for file in sorted((out / "model").rglob("*.safetensors")):
                for key, tensor in sorted(load_file(str(file)).items()):
                    digest.update(key.encode())
                    digest.update(tensor.float().numpy().tobytes())
            print(
                f"{family} {kind} {sorted(extra)}: {digest.hexdigest()[:16]} losses {[round(r['loss'], 6) for r in result.history]}"
            )
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
