"""The miniature's quality floor, measured with its own CLIP (figures for the model card).

context / class accuracy: zero-shot mini-CLIP classification of images made for random
    world prompts — the true class with each of the 20 contexts (context accuracy), the
    true context with each of the 15 classes (class accuracy) — on generated images and,
    beside them, on ground-truth renders of the same prompts;
instance retrieval: a render of an instance vs renders of the other instances of its class
    in other contexts; top-1 is right when the same instance is nearest.
"""

from __future__ import annotations

import random

import torch
from PIL import Image
from tqdm.auto import tqdm

from dreamtune.evaluation.features import ClipFeatures
from dreamtune.evaluation.metrics import top1_accuracy
from dreamtune.miniature import scenery, world


def world_prompts(count: int, seed: int = 1234) -> list[world.Scene]:
    rng = random.Random(seed)
    return [world.Scene(rng.choice(world.INSTANCES).name, rng.choice(world.CONTEXTS)) for _ in range(count)]


def zero_shot(clip: ClipFeatures, images: list[Image.Image], scenes: list[world.Scene]) -> dict[str, float]:
    features = clip.images(images)
    contexts, classes = list(world.CONTEXTS), list(world.GLYPHS)
    table = clip.texts([f"a {noun} {scenery.PHRASES[c]}" for noun in classes for c in contexts])
    table = table.view(len(classes), len(contexts), -1)  # (class, context, D)
    context_hits = class_hits = 0
    for feature, scene in zip(features, scenes):
        noun_index, context_index = classes.index(scene.class_noun), contexts.index(scene.context)
        context_hits += int(int((table[noun_index] @ feature).argmax()) == context_index)
        class_hits += int(int((table[:, context_index] @ feature).argmax()) == noun_index)
    return {"context_accuracy": context_hits / len(scenes), "class_accuracy": class_hits / len(scenes)}


def instance_retrieval(clip: ClipFeatures, instances: list[str], trials: int = 4, seed: int = 7) -> float:
    """Top-1 accuracy of finding an instance among its class's instances, across contexts."""
    rng = random.Random(seed)
    hits = []
    for name in instances:
        noun = world.instance(name).class_noun
        family = [i.name for i in world.INSTANCES if i.class_noun == noun]
        for _trial in range(trials):
            query_context, other_context = rng.sample(list(world.CONTEXTS), 2)
            query = clip.images([world.render(world.Scene(name, query_context), rng.randrange(10**6))])
            candidates = clip.images(
                [world.render(world.Scene(n, other_context), rng.randrange(10**6)) for n in family]
            )
            hits.append(top1_accuracy(query, candidates, torch.tensor([family.index(name)])))
    return sum(hits) / len(hits)


def measure(clip: ClipFeatures, generate=None, count: int = 400, show_progress: bool = True) -> dict:
    """All quality figures; ``generate(prompts, seeds) -> images`` adds the generated-image rows."""
    scenes = world_prompts(count)
    truth = [world.render(s, 70_000 + i) for i, s in enumerate(scenes)]
    result = {
        "prompts": count,
        "ground_truth": zero_shot(clip, truth, scenes),
        "instance_retrieval_top1": {
            "held_out": instance_retrieval(clip, list(world.HELD_OUT)),
            "all": instance_retrieval(clip, [i.name for i in world.INSTANCES], trials=2),
        },
    }
    if generate is not None:
        images = []
        for start in tqdm(range(0, count, 16), desc="generating", disable=not show_progress):
            chunk = scenes[start : start + 16]
            images += generate([s.caption() for s in chunk], list(range(start, start + len(chunk))))
        result["generated"] = zero_shot(clip, images, scenes)
    return result
