"""Issue 37: training jobs wait in a queue (one at a time by default), keep running when the UI stops,
are re-attached by a UI started again, and the queue moves on without any UI."""

import time

from dreamtune.ui.actions import Actions
from dreamtune.ui.safety import Access

QUICK = {"train.steps": "20", "prior.enabled": "false", "train.validate_every": "0"}


def _wait(condition, timeout: float = 300, poll: float = 0.3) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if condition():
            return True
        time.sleep(poll)
    return False


def test_jobs_queue_outlive_the_ui_and_are_reattached(tmp_path):
    root = tmp_path / "runs"
    first_ui = Actions(root, Access("127.0.0.1", 0))
    try:
        first_ui.sample_photos("cat", "cat3")
        first_ui.prepare("cat", "a sks cat", 64)
        request = {"photos": "cat", "class_noun": "cat", "settings": QUICK}
        one = first_ui.train({**request, "name": "one"})
        two = first_ui.train({**request, "name": "two"})
        three = first_ui.train({**request, "name": "three"})
        states = {j["id"]: (j["state"], j["place"]) for j in first_ui.job_list()}
        assert states[one["job"]] == ("running", None)
        assert states[two["job"]] == ("queued", 1) and states[three["job"]] == ("queued", 2)  # the second waits
        assert first_ui.run("two")["status"] == "queued" and first_ui.run("two")["queue_place"] == 1
        first_ui.move(three["job"], -1)  # reorder: three goes before two
        first_ui.cancel(two["job"])  # and two leaves the queue
        assert [j.id for j in first_ui.jobs.queue()] == [three["job"]]
        runner = first_ui.jobs.get(one["job"]).runner_pid

        del first_ui  # the UI stops (its process would exit here): nothing stops the jobs
        second_ui = Actions(root, Access("127.0.0.1", 0))  # started again on the same folder
        job = second_ui.jobs.get(one["job"])
        assert job.state == "running" and job.runner_pid == runner  # re-attached, still the same process
        assert _wait(lambda: second_ui.run("one")["status"] in ("running", "finished"))
        # the first run's runner starts the next queued job itself, with or without a UI
        assert _wait(lambda: second_ui.jobs.get(three["job"]).state in ("running", "finished"))
        assert second_ui.jobs.get(one["job"]).state == "finished" and second_ui.run("one")["status"] == "finished"
        assert "weights" in second_ui.run("one")["memory"]  # the run's own memory line, shown on its page
        assert _wait(lambda: second_ui.jobs.get(three["job"]).state == "finished")
        assert second_ui.run("three")["status"] == "finished"
        assert second_ui.jobs.get(two["job"]).state == "cancelled" and not (root / "two" / "model").exists()
    finally:
        Actions(root, Access("127.0.0.1", 0)).jobs.stop_all()
