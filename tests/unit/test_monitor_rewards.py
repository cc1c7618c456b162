"""The monitor logs rewards as training scores them (issue 35 item 1): one that needs the starting model's
same-seed image (print_proof) has none in the monitor and is not logged there — scored against itself it
rose for greyscale images — and every record carries the images' colourfulness, so a reward that paling
images can game shows the fall beside its rise."""

from pathlib import Path

import torch

from dreamtune import config
from dreamtune.evaluation.evaluate import load_features
from dreamtune.miniature import world
from dreamtune.miniature.assemble import MODEL_DIR
from dreamtune.rewards.registry import build_rewards
from dreamtune.training.monitor import Monitor

EVERY_REWARD = [
    f"rl.rewards.{name}=1.0"
    for name in (
        "print_quality",
        "print_proof",
        "jpeg_compressibility",
        "jpeg_incompressibility",
        "clip_score",
        "subject_fidelity",
    )
]
# rewards whose own definition a greyscale image satisfies better: the in-gamut share of print_quality (grey
# is always printable) and JPEG compressibility (the DDPO task that is known to flatten images)
GAMED_BY_PALING = {"reward/print_quality", "reward/print_quality/gamut", "reward/jpeg_compressibility"}


def scenes(grey: bool):
    def render(prompts, seeds):
        contexts = ["beach", "jungle", "snow", "city"]
        images = [world.render(world.Scene("dog3", contexts[k % 4]), 300 + s) for k, s in enumerate(seeds)]
        return [i.convert("L").convert("RGB") if grey else i for i in images]

    return render


def monitor_records(tmp_path: Path) -> dict[str, dict]:
    cfg = config.load(
        None,
        [
            "model.pretrained=x",
            "monitor.every=10",
            "monitor.class_images=1",
            "rl.subject=sks",
            "data.instance_prompt=a sks dog",
            *EVERY_REWARD,
        ],
    )
    features = load_features(None, "none", MODEL_DIR)
    photos = [world.render(world.Scene("dog3", None), 50 + k) for k in range(3)]
    rewards = build_rewards(cfg.rl, features.clip, photos)
    assert rewards.needs_reference  # print_proof is among them
    records = {}
    for grey in (False, True):
        folder = tmp_path / ("grey" if grey else "colour")
        folder.mkdir()
        monitor = Monitor(cfg, scenes(grey), features, photos, {}, folder, "sks", rewards=rewards)
        records["grey" if grey else "colour"] = monitor.measure(0)
    return records


def test_greyscale_raises_no_logged_reward_except_those_it_games_and_the_record_shows_it(tmp_path):
    records = monitor_records(tmp_path)
    colour, grey = records["colour"], records["grey"]
    assert not any("print_proof" in key for key in colour)  # needs a reference the monitor does not have
    logged = [key for key in colour if key.startswith("reward/")]
    assert {"reward/clip_score", "reward/subject_fidelity", "reward/jpeg_incompressibility"} <= set(logged)
    raised = {key for key in logged if grey[key] > colour[key] + 1e-6}
    assert raised <= GAMED_BY_PALING, f"greyscale raised {raised - GAMED_BY_PALING}"
    assert grey["colourfulness"] < 1.0 < 20.0 < colour["colourfulness"]


def test_rewards_without_a_reference_keep_every_other_term():
    cfg = config.load(None, ["model.pretrained=x", "rl.rewards.print_proof=1.0", "rl.rewards.print_quality=0.5"])
    rewards = build_rewards(cfg.rl)
    kept = rewards.without_reference()
    assert [r.name for _, r in kept.terms] == ["print_quality"] and [w for w, _ in kept.terms] == [0.5]
    alone = build_rewards(config.load(None, ["model.pretrained=x", "rl.rewards.print_proof=1.0"]).rl)
    assert alone.without_reference() is None
    image = torch.rand(1, 3, 32, 32)
    quality = next(r for _, r in rewards.terms if r.name == "print_quality")
    assert kept.evaluate(image, ["a dog"], {})[1]["reward/print_quality"] == quality(image, ["a dog"], {}).item()
