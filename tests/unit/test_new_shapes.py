"""The new-shape subjects (issue 34; dreamtune/miniature/new_shapes.py): their outlines are measured
to differ from every pretraining glyph by more than any same-shape pair of the calibration, none of them
is drawn in pretraining or as a judge distractor, and the written split covers them once."""

import sys
from pathlib import Path

import pytest

from dreamtune.miniature import distractors, world
from dreamtune.miniature.new_shapes import (
    NEW_SHAPE_DISTANCE,
    NEW_SHAPES,
    SAME_SHAPE_PAIRS,
    nearest_pretraining_glyph,
    shape_distance,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import subject_split  # noqa: E402


def test_the_measure_calls_same_shapes_near_and_distinct_pretraining_glyphs_far():
    for a, b in SAME_SHAPE_PAIRS:  # details changed, one outline
        assert shape_distance(a, b) < NEW_SHAPE_DISTANCE / 1.5, (a, b)
    assert shape_distance("1F415", "1F415") < 1e-4
    boot, alarm_clock, robot = "1F462", "23F0", "1F916"
    assert shape_distance(boot, alarm_clock) > NEW_SHAPE_DISTANCE  # a boot is not a clock
    assert shape_distance(robot, "1FA81") > NEW_SHAPE_DISTANCE  # two toys of other shapes
    # today's held-out subjects are recolours of pretraining glyphs: none would count as a new shape
    recolours = [world.instance(name) for name in subject_split.TEST]
    assert all(nearest_pretraining_glyph(i.glyph)[0] < NEW_SHAPE_DISTANCE for i in recolours)


@pytest.mark.parametrize("subject", NEW_SHAPES, ids=lambda s: s.name)
def test_every_new_subject_has_an_outline_no_pretraining_glyph_has(subject):
    distance, nearest = nearest_pretraining_glyph(subject.glyph)
    assert distance >= NEW_SHAPE_DISTANCE, f"{subject.name} is {distance:.3f} from pretraining glyph {nearest}"
    assert subject.glyph not in {g for glyphs in world.GLYPHS.values() for g in glyphs}
    assert subject.glyph not in distractors.GLYPHS  # the judge's image tower never saw it either
    assert subject.class_noun in world.GLYPHS
    assert world.instance(subject.name) is subject and world.object_sprite(subject.name).getbbox()


def test_pretraining_is_unchanged_and_the_split_covers_each_subject_once():
    names = {s.name for s in NEW_SHAPES}
    assert not names & {i.name for i in world.INSTANCES}
    assert len(world.PRETRAIN_INSTANCES) == 45
    tuning, test = set(subject_split.NEW_TUNING), set(subject_split.NEW_TEST)
    assert tuning.isdisjoint(test) and tuning | test == names and len(names) >= 15
    for half in (tuning, test):
        assert len({world.instance(n).class_noun for n in half}) >= 8  # several classes in each half
    assert subject_split.subjects_of("new-test") == subject_split.NEW_TEST
