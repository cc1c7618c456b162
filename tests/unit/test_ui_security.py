"""The web UI's trust boundary, through a real server on a free port: this launch's token on every
request, recipes and their paths confined to --runs, and requests parsed defensively (a status and
one sentence, never a hang, a dropped connection or a file's contents echoed back)."""

import http.client
import json
import shutil
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from dreamtune.config import Config
from dreamtune.ui.safety import READ_PATHS, TOKEN_HEADER, WRITTEN_PATHS
from tests.unit.test_ui import TOKEN, _call


@pytest.fixture()
def ui(tmp_path):
    from dreamtune.ui.server import serve_in_thread

    running = serve_in_thread(tmp_path / "runs", token=TOKEN)
    running.app.state.read_timeout = 2  # a stalled request is dropped after 2 s here (30 s when served)
    yield running, f"http://127.0.0.1:{running.server_address[1]}", tmp_path / "runs"
    running.shutdown()
    running.server_close()


def test_without_this_launchs_token_nothing_is_served_or_done(ui, tmp_path):
    """Another user of the machine (loopback, no login) cannot read files or start work."""
    server, base, root = ui
    (root / "photos" / "mine").mkdir()
    (root / "photos" / "mine" / "secret.png").write_bytes(b"owner's photo")
    for token in (None, "guess", TOKEN[:-1]):
        assert _call(base + "/api/info", token=token)[0] == 403
        status, body = _call(base + "/files/photos/mine/secret.png", token=token)
        assert status == 403 and b"owner's photo" not in body
        status, body = _call(base + "/", token=token)
        assert status == 403 and b"the link printed in the terminal" in body
        status, body = _call(
            base + "/api/prepare", {"set": "x", "folder": str(tmp_path)}, {"X-Dreamtune": "1"}, token=token
        )
        assert status == 403 and json.loads(body)["error"].startswith("this request lacks the UI's token")
    assert not (root / "photos" / "x").exists()
    assert _call(base + "/files/photos/mine/secret.png")[1] == b"owner's photo"  # with it: served


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def test_the_printed_link_sets_a_strict_cookie_and_drops_the_token_from_the_address(ui):
    server, base, root = ui
    assert server.url == f"{base}/?token={TOKEN}"

    opener = urllib.request.build_opener(_NoRedirect())
    with pytest.raises(urllib.error.HTTPError) as answer:
        opener.open(base + f"/files/x.png?download=1&token={TOKEN}", timeout=10)
    assert answer.value.code == 303 and answer.value.headers["Location"] == "/files/x.png?download=1"
    cookie = answer.value.headers["Set-Cookie"]
    assert cookie.startswith(f"dreamtune-token-0={TOKEN};") and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    request = urllib.request.Request(base + "/api/info", headers={"Cookie": f"dreamtune-token-0={TOKEN}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200


@pytest.mark.parametrize(
    "recipe", ["/etc/passwd", "../../../../etc/passwd", "/etc/hostname", "outside.yaml", "link.yaml"]
)
def test_recipes_outside_the_runs_folder_are_never_read(ui, tmp_path, recipe):
    server, base, root = ui
    (tmp_path / "outside.yaml").write_text("root:x:0:0:secret-line\n")
    (root / "link.yaml").symlink_to(tmp_path / "outside.yaml")
    status, body = _call(base + "/api/form?recipe=" + urllib.parse.quote(recipe))
    assert status == 400 and b"is neither a shipped recipe" in body
    assert (
        b"root:" not in body and b"secret-line" not in body and Path("/etc/hostname").read_bytes().strip() not in body
    )


def test_shipped_recipes_and_recipes_under_runs_are_read(ui):
    server, base, root = ui
    assert _call(base + "/api/form?recipe=miniature-dreambooth")[0] == 200
    (root / "mine.yaml").write_text("train:\n  steps: 7\n")
    status, body = _call(base + "/api/form?recipe=mine.yaml")
    assert status == 200 and {f["key"]: f["value"] for f in json.loads(body)}["train.steps"] == 7


def _prepared(root: Path) -> None:
    from dreamtune.miniature import world
    from dreamtune.miniature.demo import TRAIN_CONTEXTS

    uploads = root / "uploads" / "cat"
    uploads.mkdir(parents=True)
    for index in range(3):
        world.render(world.Scene("cat3", TRAIN_CONTEXTS[index % 2]), index).save(uploads / f"{index}.png")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "dreamtune.cli",
            "prepare",
            str(uploads),
            "--out",
            str(root / "photos" / "cat"),
            "--resolution",
            "64",
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )


@pytest.mark.parametrize("key", ["prior.class_dir", "data.cache_dir"])
def test_a_recipe_cannot_make_the_ui_write_outside_runs(ui, tmp_path, key):
    server, base, root = ui
    _prepared(root)
    import yaml

    recipe = yaml.safe_load((Path(__file__).parents[2] / "configs" / "miniature-lora.yaml").read_text())
    section, name = key.split(".")
    recipe.setdefault(section, {})[name] = str(tmp_path / "elsewhere")
    (root / "evil.yaml").write_text(yaml.safe_dump(recipe))
    status, body = _call(
        base + "/api/train",
        {"name": "r", "recipe": str(root / "evil.yaml"), "photos": "cat", "class_noun": "cat"},
        {"X-Dreamtune": "1"},
    )
    assert status == 400
    assert json.loads(body)["error"] == (
        f"the recipe sets {key} to {tmp_path / 'elsewhere'}, outside the runs folder {root.resolve()}; "
        f"the UI writes only there — remove that setting or point it inside {root.resolve()}."
    )
    assert not (tmp_path / "elsewhere").exists() and not (root / "r").exists()


def test_every_path_key_the_ui_confines_is_a_config_key():
    for key in WRITTEN_PATHS + READ_PATHS:
        value = Config()
        for part in key.split("."):
            value = getattr(value, part)  # a renamed key fails here, not silently in the UI
        assert isinstance(value, str)


def _raw(base: str, payload: bytes, wait: float = 10) -> bytes:
    """Send bytes as they are; the server's whole answer (it must answer, not hang)."""
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=wait) as connection:
        connection.sendall(payload)
        chunks = []
        while True:
            chunk = connection.recv(65536)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)


def _request(path: str, headers: dict, body: bytes = b"", method: str = "POST") -> bytes:
    lines = [
        f"{method} {path} HTTP/1.1",
        "Host: 127.0.0.1",
        f"{TOKEN_HEADER}: {TOKEN}",
        "X-Dreamtune: 1",
        *(f"{k}: {v}" for k, v in headers.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


@pytest.mark.parametrize(
    "payload, status, words",
    [
        (_request("/files/x%00.png", {}, method="GET"), 400, b"holds a null byte"),
        (_request("/api/stop", {"Content-Length": "-1"}, b"{}"), 400, b"is not a size in bytes"),
        (_request("/api/stop", {"Content-Length": "abc"}, b"{}"), 400, b"is not a size in bytes"),
        (_request("/api/stop", {"Content-Length": str(2**40)}, b"{}"), 413, b"larger than 1 MB"),
        (_request("/api/stop", {"Transfer-Encoding": "chunked"}, b"2\r\n{}\r\n0\r\n\r\n"), 411, b"Content-Length"),
        (_request("/api/stop", {"Content-Length": "2"}, b"[]"), 400, b"not a JSON object"),
        (_request("/api/stop", {"Content-Length": "4"}, b"\xff\xfe{}"), 400, b"not valid JSON"),
        (
            _request("/api/upload?set=s", {"Content-Length": "-5", "X-File-Name": "a.png"}, b"x"),
            400,
            b"is not a size in bytes",  # refused by h11 before the UI sees it, in the UI's words
        ),
        (
            _request("/api/stop", {"Content-Length": "100"}, b'{"run": "x"'),
            408,
            b"stalled",
        ),  # 11 of 100 bytes, then silence
    ],
)
def test_malformed_requests_get_a_status_and_a_sentence_never_a_hang(ui, payload, status, words):
    server, base, root = ui
    started = time.monotonic()
    answer = _raw(base, payload)
    assert answer.split(b"\r\n", 1)[0].split(b" ")[1] == str(status).encode(), answer[:300]
    assert words in answer and time.monotonic() - started < 8
    assert _call(base + "/api/info")[0] == 200  # and the server goes on answering


def test_a_server_error_is_a_500_sentence_and_the_server_goes_on(ui, monkeypatch):
    server, base, root = ui
    monkeypatch.setattr(server.actions, "list_runs", lambda: 1 / 0)  # a bug in an action, not the user's doing
    status, body = _call(base + "/api/runs")
    assert status == 500 and json.loads(body)["error"].startswith("the UI hit an internal error")
    assert _call(base + "/api/info")[0] == 200


def _certificate(folder: Path) -> tuple[Path, Path]:
    if not shutil.which("openssl"):
        pytest.skip("openssl is not installed; it makes the test's self-signed certificate")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


def test_tls_serves_https_with_a_secure_cookie(tmp_path):
    from dreamtune.ui.server import serve_in_thread

    cert, key = _certificate(tmp_path)
    running = serve_in_thread(tmp_path / "runs", token=TOKEN, certfile=str(cert), keyfile=str(key))
    try:
        assert running.url.startswith("https://127.0.0.1:")
        context = ssl.create_default_context(cafile=str(cert))
        context.check_hostname = False
        opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=context), _NoRedirect())
        with pytest.raises(urllib.error.HTTPError) as answer:  # the link: a cookie, then the address without the token
            opener.open(running.url, timeout=20)
        assert answer.value.code == 303
        assert "Secure" in answer.value.headers["Set-Cookie"]
        with opener.open(
            urllib.request.Request(running.url.split("/?")[0] + "/api/info", headers={TOKEN_HEADER: TOKEN}), timeout=20
        ) as response:
            assert response.status == 200 and "recipes" in json.loads(response.read())
        with pytest.raises((OSError, http.client.HTTPException)):  # plain HTTP to the TLS port is not answered as HTTP
            urllib.request.urlopen(running.url.replace("https://", "http://"), timeout=5).read()
    finally:
        running.shutdown()
        running.server_close()


def test_a_bad_certificate_is_one_sentence(tmp_path):
    from dreamtune.errors import UserError
    from dreamtune.ui.server import make_server

    (tmp_path / "cert.pem").write_text("not a certificate")
    with pytest.raises(UserError, match="cannot use the certificate .*cert.pem"):
        make_server(tmp_path / "runs", port=0, certfile=str(tmp_path / "cert.pem"))


def test_serving_beyond_loopback_over_plain_http_warns_and_prints_the_link(tmp_path):
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dreamtune.cli",
            "ui",
            "--host",
            "0.0.0.0",
            "--port",
            "0",
            "--auth",
            "a:b",
            "--runs",
            str(tmp_path / "r"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        warning = process.stderr.readline()
        link = process.stdout.readline()
    finally:
        process.terminate()
        process.wait(60)
    assert (
        warning.startswith("warning: the UI is reachable from other machines over plain HTTP")
        and "docs/ui.md" in warning
    )
    assert "/?token=" in link and link.startswith("dreamtune UI on http://")
