"""The UI under load (issue 31): 1,000 mixed requests, good and bad, from 8 clients while a training it
started runs. Every request is answered (no hang, no dropped connection, no server error), the
run goes on, and its weights equal those of the same run trained with no load at all."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

from ui_soak import soak  # noqa: E402


def test_a_thousand_mixed_requests_while_training(tmp_path):
    figures = soak(tmp_path / "soak", requests=1000, clients=8, steps=60)
    print(figures)
    assert figures["requests"] == 1000 and figures["transport_errors"] == []
    assert set(figures["statuses"]) <= {200, 400, 403, 411} and figures["statuses"][200] > 200
    assert figures["still_training_when_soak_ended"], "the soak must overlap the training; raise the steps"
    assert figures["identical"]
