"""Soak the web UI on loopback: N mixed API requests (good and bad, from C client threads) while a
training it started runs; then train the same config from the CLI with no load and compare the two
LoRAs bit for bit.

    python benchmarks/ui_soak.py [--requests 1000] [--clients 8] [--steps 40] [--root runs/ui_soak]

Prints the requests sent, answers by status, transport errors (a hang or a dropped connection
counts here), p50 / p95 / max latency, whether the run was still training when the soak ended,
and whether the weights are identical. tests/e2e/test_ui_soak.py runs it and checks the outcome.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
TOKEN = "soak-token"


@dataclass
class Tally:
    statuses: Counter = field(default_factory=Counter)
    latencies: list = field(default_factory=list)
    transport_errors: list = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, status: int | None, seconds: float, error: str = "") -> None:
        with self.lock:
            if status is None:
                self.transport_errors.append(error)
            else:
                self.statuses[status] += 1
            self.latencies.append(seconds)


def _http(base: str, path: str, body=None, token: str | None = TOKEN, headers: dict | None = None) -> int:
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    sent = {
        **({"X-Dreamtune-Token": token} if token else {}),
        **({"X-Dreamtune": "1"} if data is not None else {}),
        **(headers or {}),
    }
    request = urllib.request.Request(base + path, data=data, headers=sent)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            response.read()
            return response.status
    except urllib.error.HTTPError as error:
        error.read()
        return error.code


def _raw(base: str, text: str) -> int:
    """A hand-made request (framing urllib will not send); the status line's code."""
    host, port = urllib.parse.urlparse(base).netloc.split(":")
    with socket.create_connection((host, int(port)), timeout=30) as connection:
        connection.sendall(text.encode())
        answer = b""
        while b"\r\n" not in answer:
            chunk = connection.recv(4096)
            if not chunk:
                break
            answer += chunk
    return int(answer.split(b" ")[1])


def _requests(base: str, run: str) -> list:
    """The mix: (what, callable) pairs, about half of them mistakes or probes."""
    head = f"X-Dreamtune-Token: {TOKEN}\r\nX-Dreamtune: 1\r\nHost: 127.0.0.1"
    return [
        ("info", lambda: _http(base, "/api/info")),
        ("runs", lambda: _http(base, "/api/runs")),
        ("run", lambda: _http(base, f"/api/run?name={run}")),
        ("form", lambda: _http(base, "/api/form?recipe=miniature-dreambooth")),
        ("photos", lambda: _http(base, "/api/photos?set=subject")),
        ("page", lambda: _http(base, "/")),
        ("static", lambda: _http(base, "/static/app.js")),
        ("photo file", lambda: _http(base, "/files/photos/subject/images/0000.png")),
        ("no token", lambda: _http(base, "/api/info", token=None)),
        ("wrong token", lambda: _http(base, "/api/runs", token="guess")),
        ("recipe outside", lambda: _http(base, "/api/form?recipe=/etc/passwd")),
        ("null byte", lambda: _http(base, "/files/x%00.png")),
        ("climb out", lambda: _http(base, "/files/..%2F..%2Fetc%2Fpasswd")),
        ("unknown api", lambda: _http(base, "/api/nothing")),
        ("bad json", lambda: _http(base, "/api/stop", b"{not json")),
        (
            "train bad lr",
            lambda: _http(
                base,
                "/api/train",
                {"name": "x", "photos": "subject", "class_noun": "dog", "settings": {"train.lr": "-1"}},
            ),
        ),
        ("stop unknown", lambda: _http(base, "/api/stop", {"run": "nobody"})),
        (
            "upload bad type",
            lambda: _http(base, "/api/upload?set=soak", b"#!/bin/sh", headers={"X-File-Name": "run.sh"}),
        ),
        ("negative length", lambda: _raw(base, f"POST /api/stop HTTP/1.1\r\n{head}\r\nContent-Length: -1\r\n\r\n{{}}")),
        (
            "chunked",
            lambda: _raw(base, f"POST /api/stop HTTP/1.1\r\n{head}\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
        ),
    ]


def _client(base: str, mix: list, count: int, seed: int, tally: Tally) -> None:
    rng = random.Random(seed)
    for _ in range(count):
        name, call = rng.choice(mix)
        started = time.perf_counter()
        try:
            status = call()
            tally.add(status, time.perf_counter() - started)
        except Exception as exc:  # a timeout, a reset: the UI failed to answer
            tally.add(None, time.perf_counter() - started, f"{name}: {type(exc).__name__}: {exc}")


def _wait(predicate, timeout: float, what: str) -> None:
    deadline = time.time() + timeout
    while not predicate():
        if time.time() > deadline:
            raise TimeoutError(f"gave up waiting for {what}")
        time.sleep(0.2)


def _weights(folder: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(folder / "model" / "pytorch_lora_weights.safetensors"))


def soak(root: Path, requests: int = 1000, clients: int = 8, steps: int = 40) -> dict:
    from dreamtune.ui.server import serve_in_thread

    root = Path(root)
    shutil.rmtree(root, ignore_errors=True)
    server = serve_in_thread(root / "runs", token=TOKEN)
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        assert _http(base, "/api/sample", {"set": "subject", "subject": "dog3"}) == 200
        assert _http(base, "/api/prepare", {"set": "subject", "instance_prompt": "a sks dog", "resolution": 64}) == 200
        settings = {
            "train.steps": str(steps),
            "prior.enabled": False,
            "train.checkpoint_every": "0",
            "train.validate_every": "0",
        }
        assert (
            _http(
                base, "/api/train", {"name": "soaked", "photos": "subject", "class_noun": "dog", "settings": settings}
            )
            == 200
        )
        run = root / "runs" / "soaked"
        _wait(lambda: (run / "metrics.jsonl").is_file(), 600, "the run's first step")
        tally, started = Tally(), time.perf_counter()
        threads = [
            threading.Thread(
                target=_client,
                args=(base, _requests(base, "soaked"), requests // clients + (i < requests % clients), i, tally),
            )
            for i in range(clients)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        soak_seconds = time.perf_counter() - started
        still_training = not (run / "model").exists()
        _wait(
            lambda: (
                (run / "model" / "dreamtune.json").is_file()
                or server.actions.jobs.latest_for(run).exit_code not in (None,)
            ),
            1800,
            "the run to finish",
        )
    finally:
        server.actions.jobs.stop_all()
        server.shutdown()
        server.server_close()
    reference = root / "reference"
    subprocess.run(
        [sys.executable, "-m", "dreamtune.cli", "train", str(run / "config.yaml"), f"train.output_dir={reference}"],
        check=True,
        capture_output=True,
        cwd=ROOT,
        timeout=1800,
    )
    a, b = _weights(run), _weights(reference)
    latencies = sorted(tally.latencies)
    return {
        "requests": len(latencies),
        "clients": clients,
        "statuses": dict(sorted(tally.statuses.items())),
        "transport_errors": tally.transport_errors,
        "seconds": soak_seconds,
        "p50_ms": 1000 * latencies[len(latencies) // 2],
        "p95_ms": 1000 * latencies[int(len(latencies) * 0.95)],
        "max_ms": 1000 * latencies[-1],
        "still_training_when_soak_ended": still_training,
        "identical": a.keys() == b.keys() and all(bool((a[k] == b[k]).all()) for k in a),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--root", default="runs/ui_soak")
    args = parser.parse_args()
    figures = soak(Path(args.root), args.requests, args.clients, args.steps)
    print(
        f"{figures['requests']} requests from {figures['clients']} clients in {figures['seconds']:.1f} s while training; "
        f"answers by status {figures['statuses']}; transport errors {len(figures['transport_errors'])}; "
        f"latency p50 {figures['p50_ms']:.1f} ms, p95 {figures['p95_ms']:.1f} ms, max {figures['max_ms']:.0f} ms; "
        f"run still training at the end: {figures['still_training_when_soak_ended']}; "
        f"weights identical to a run without load: {figures['identical']}"
    )
    for error in figures["transport_errors"][:5]:
        print("  ", error)


if __name__ == "__main__":
    main()
