"""The HTTP plumbing under the UI's routes, on a maintained stack: Starlette for routing and responses,
uvicorn (its h11 protocol) for parsing and serving, TLS included. What this module adds:

* every answer carries the page's security headers (no caching, no sniffing, a strict CSP);
* a body is checked before a byte of it is read (no chunked bodies, a size limit) and read against a
  deadline, so a stalled or trickling client gets a 408 and its connection closed;
* a request h11 itself refuses (a Content-Length that is not a size, a broken header) gets one sentence
  saying so instead of uvicorn's bare "Invalid HTTP request received.";
* ``ServedUI``: a bound socket and a uvicorn server, run in the foreground (``dreamtune ui``) or in a
  thread (tests, benchmarks).
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from typing import TYPE_CHECKING

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from uvicorn.protocols.http.h11_impl import H11Protocol

from dreamtune.errors import UserError

if TYPE_CHECKING:
    from dreamtune.ui.actions import Actions

MAX_JSON = 2**20
READ_TIMEOUT = 30  # seconds a body may take beyond its size at MIN_RATE (a stalled client is cut off)
MIN_RATE = 64 * 2**10  # bytes per second a body must arrive at, after READ_TIMEOUT of grace
SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'",
}
MALFORMED = (
    "the request is not valid HTTP (a Content-Length that is not a size in bytes, or a broken request line or "
    "header); send it again from the page."
)


class RequestProblem(Exception):
    """A request the server cannot take (bad framing, too slow): an HTTP status and one sentence."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class SentencesH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, answering a request h11 refuses with one sentence that names the problem."""

    def send_400_response(self, msg: str) -> None:
        super().send_400_response(MALFORMED)


def respond(status: int, body: bytes, content_type: str, extra: dict | None = None, close: bool = False) -> Response:
    headers = {**SECURITY_HEADERS, **(extra or {})}
    if close:  # an unread body must not be taken for the next request
        headers["Connection"] = "close"
    return Response(body, status, headers, media_type=content_type)


def json_response(value, status: int = 200, close: bool = False) -> Response:
    return respond(status, json.dumps(value).encode(), "application/json", close=close)


def error_response(message: str, status: int = 400) -> Response:
    return json_response({"error": message}, status, close=True)


def declared_length(request: Request, limit: int) -> int:
    """The declared body size, checked before a byte of it is read."""
    if request.headers.get("transfer-encoding"):
        raise RequestProblem(411, "send the request with a Content-Length (this UI does not take chunked bodies).")
    declared = (request.headers.get("content-length") or "0").strip()
    if not declared.isdigit():
        raise RequestProblem(
            400, f"the request's Content-Length {declared!r} is not a size in bytes; send it again from the page."
        )
    if int(declared) > limit:
        raise RequestProblem(
            413, f"the request is larger than {limit / 2**20:.0f} MB; send fewer prompts or captions at once."
        )
    return int(declared)


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body (at most ``limit`` bytes), arriving at a usable rate (a stalled client is cut off)."""
    length = declared_length(request, limit)
    grace = request.app.state.read_timeout
    parts = []
    try:
        async with asyncio.timeout(grace + length / MIN_RATE):
            async for chunk in request.stream():
                parts.append(chunk)
    except TimeoutError:
        raise RequestProblem(408, "the request stalled before its body arrived; send it again.") from None
    return b"".join(parts)


async def answer(work) -> Response:
    """Run one request's work: every failure becomes a status and one sentence, never a hang."""
    import sys
    import traceback

    try:
        return await work()
    except UserError as exc:
        fields = getattr(exc, "fields", None)  # a form's errors, one per field (actions.FieldErrors)
        if fields:
            return json_response({"error": str(exc), "fields": fields}, 400, close=True)
        return error_response(str(exc))
    except RequestProblem as exc:
        return error_response(str(exc), exc.status)
    except ClientDisconnect:  # nobody is left to read an answer
        return error_response("the request ended before its body did; send it again.")
    except Exception:  # a bug: say so, keep serving
        traceback.print_exc(file=sys.stderr)
        return error_response("the UI hit an internal error; its terminal shows the details (please report them).", 500)


def check_tls(certfile: str, keyfile: str) -> None:
    """One sentence for a certificate uvicorn could not use, before anything is served."""
    import ssl

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(certfile, keyfile or None)
    except (OSError, ssl.SSLError) as exc:
        raise UserError(
            f"cannot use the certificate {certfile} (key {keyfile or 'inside it'}): {getattr(exc, 'strerror', None) or exc}; "
            "pass a PEM certificate and its private key."
        ) from None


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise UserError(f"cannot listen on {host}:{port} ({exc.strerror}); pick another --port.") from None
    sock.listen(64)  # the backlog: a burst of clients must not wait for a SYN retry
    sock.set_inheritable(True)
    return sock


class ServedUI:
    """A bound UI: ``url`` (the link to open: address, port and this launch's token), ``actions``, ``app``;
    ``serve_forever()`` runs it in this thread, ``shutdown()`` stops it from another."""

    def __init__(self, app, sock: socket.socket, url: str, actions: Actions, certfile: str = "", keyfile: str = ""):
        import uvicorn

        self.app, self.socket, self.url, self.actions = app, sock, url, actions
        config = uvicorn.Config(
            app,
            http=SentencesH11Protocol,
            lifespan="off",
            log_level="error",  # quiet: the terminal shows the CLI jobs' progress, not every request
            access_log=False,
            server_header=False,
            timeout_keep_alive=5,
            timeout_graceful_shutdown=2,  # open event streams end with the server
            ssl_certfile=certfile or None,
            ssl_keyfile=keyfile or None,
        )
        self.server = uvicorn.Server(config)

    @property
    def server_address(self) -> tuple:
        return self.socket.getsockname()

    def serve_forever(self) -> None:
        self.server.run(sockets=[self.socket])

    def start_in_thread(self) -> ServedUI:
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started and self.thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.02)
        return self

    def shutdown(self) -> None:
        self.server.should_exit = True
        if getattr(self, "thread", None):
            self.thread.join(10)

    def server_close(self) -> None:
        self.socket.close()
