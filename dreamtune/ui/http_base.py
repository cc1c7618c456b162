"""The HTTP plumbing under the UI's routes: a request handler that parses every request
defensively (sizes checked before reading, bodies read against a deadline, every failure a status
and one sentence, never a hang or a dropped connection), and the threaded server with optional TLS."""

from __future__ import annotations

import json
import sys
import time
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING

from dreamtune.errors import UserError

if TYPE_CHECKING:
    from dreamtune.ui.actions import Actions

MAX_JSON = 2**20
READ_TIMEOUT = 30  # seconds of silence before a request is dropped (a stalled client holds no thread)
MIN_RATE = 64 * 2**10  # bytes per second a body must arrive at, after READ_TIMEOUT of grace


class RequestProblem(Exception):
    """A request the server cannot take (bad framing, too slow): an HTTP status and one sentence."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class SafeHandler(BaseHTTPRequestHandler):
    timeout = READ_TIMEOUT  # the socket's: a request line or header that stalls ends the connection

    def setup(self) -> None:
        super().setup()
        if hasattr(self.connection, "do_handshake"):  # TLS: the handshake runs here, in this request's thread
            self.connection.do_handshake()

    def log_message(self, fmt, *args) -> None:  # quiet: the terminal shows the CLI jobs' progress, not every poll
        pass

    # ---- plumbing -----------------------------------------------------------------------------
    def _send(self, status: int, body: bytes, content_type: str, extra: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header(
            "Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'"
        )
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, value, status: int = 200) -> None:
        self._send(status, json.dumps(value).encode(), "application/json")

    def _error(self, message: str, status: int = 400) -> None:
        self._json({"error": message}, status)

    def _length(self, limit: int) -> int:
        """The declared body size, checked before a byte of it is read."""
        if self.headers.get("Transfer-Encoding"):
            raise RequestProblem(411, "send the request with a Content-Length (this UI does not take chunked bodies).")
        declared = (self.headers.get("Content-Length") or "0").strip()
        if not declared.isdigit():
            raise RequestProblem(
                400, f"the request's Content-Length {declared!r} is not a size in bytes; send it again from the page."
            )
        if int(declared) > limit:
            raise RequestProblem(
                413, f"the request is larger than {limit / 2**20:.0f} MB; send fewer prompts or captions at once."
            )
        return int(declared)

    def _body(self, length: int) -> bytes:
        """Exactly ``length`` bytes, arriving at a usable rate (a trickling client is cut off)."""
        deadline = time.monotonic() + READ_TIMEOUT + length / MIN_RATE
        parts, have = [], 0
        while have < length:
            chunk = self.rfile.read1(
                min(length - have, 2**16)
            )  # what has arrived, up to 64 KB: the deadline is checked between
            if not chunk:
                raise RequestProblem(400, "the request ended before its body did; send it again.")
            parts.append(chunk)
            have += len(chunk)
            if time.monotonic() > deadline:
                raise RequestProblem(408, "the request's body arrived too slowly; send it again.")
        return b"".join(parts)

    def _answer(self, work) -> None:
        """Run one request's work: every failure becomes a status and one sentence, never a hang."""
        try:
            work()
        except UserError as exc:
            self.close_connection = True  # an unread body must not be taken for the next request
            self._error(str(exc))
        except RequestProblem as exc:
            self.close_connection = True
            self._error(str(exc), exc.status)
        except (TimeoutError, ConnectionError):
            self.close_connection = True
            try:
                self._error("the request stalled; send it again.", 408)
            except OSError:
                pass
        except Exception:  # a bug: say so, keep serving
            traceback.print_exc(file=sys.stderr)
            self.close_connection = True
            self._error("the UI hit an internal error; its terminal shows the details (please report them).", 500)


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 64  # the listen backlog (5 by default: a burst of clients waited seconds for a SYN retry)
    actions: Actions
    url: str  # the link to open: address, port and this launch's token

    def handle_error(self, request, client_address) -> None:
        """A client that vanished, stalled or failed the TLS handshake is routine; anything else is printed."""
        import ssl

        error = sys.exc_info()[1]
        if not isinstance(error, (OSError, ssl.SSLError)):
            super().handle_error(request, client_address)


def tls_context(certfile: str, keyfile: str):
    import ssl

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(certfile, keyfile or None)
    except (OSError, ssl.SSLError) as exc:
        raise UserError(
            f"cannot use the certificate {certfile} (key {keyfile or 'inside it'}): {getattr(exc, 'strerror', None) or exc}; "
            "pass a PEM certificate and its private key."
        ) from None
    return context
