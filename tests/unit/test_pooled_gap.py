"""The method table's pooled gap (share of the floor→ceiling similarity gap closed, a ratio of
means) and its standard error by a cluster bootstrap over subjects."""

import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from subject_runs import pooled_gap, pooled_gap_se  # noqa: E402


def run(subject: str, floor: float, personalized: float, ceiling: float) -> dict:
    return {"subject": subject, "floor_clip_i": floor, "personalized_clip_i": personalized, "ceiling_clip_i": ceiling}


def test_the_pooled_gap_is_the_gap_of_the_means_and_survives_a_subject_with_floor_equal_to_ceiling():
    rows = [run("a", 0.2, 0.6, 1.0), run("b", 0.5, 0.5, 0.5)]  # b alone: 0/0
    assert math.isclose(pooled_gap(rows, "clip_i"), (0.55 - 0.35) / (0.75 - 0.35))
    assert math.isnan(pooled_gap([run("b", 0.5, 0.5, 0.5)], "clip_i"))


def test_its_standard_error_comes_from_drawing_whole_subjects():
    same = [run(s, 0.2, 0.6, 1.0) for s in "abcd" for _ in range(3)]
    assert pooled_gap_se(same, "clip_i") == 0.0  # every draw gives 0.5
    assert math.isnan(pooled_gap_se([run("a", 0.2, 0.6, 1.0), run("a", 0.1, 0.9, 1.0)], "clip_i"))  # one subject
    spread = [run("a", 0.2, 0.3, 1.0), run("b", 0.2, 0.9, 1.0), run("c", 0.2, 0.5, 1.0), run("d", 0.2, 0.7, 1.0)]
    se = pooled_gap_se(spread, "clip_i")
    per_subject = [0.125, 0.875, 0.375, 0.625]  # equal floors and ceilings: the gap is the mean of these
    expected = (sum((v - 0.5) ** 2 for v in per_subject) / 4 / 4) ** 0.5  # the bootstrap s.e. of a mean of 4
    assert abs(se - expected) < 0.1 * expected
    assert pooled_gap_se(spread, "clip_i") == se  # seeded: the table does not change between collects
    # a subject's seeds count once: repeating each subject's run 3 times leaves the s.e. where it was
    assert abs(pooled_gap_se([r for r in spread for _ in range(3)], "clip_i") - se) < 0.1 * se
