"""``dreamtune ui``: a small HTTP server (standard library only) for the page in ``static/`` and the
JSON API behind it. Nothing else in dreamtune imports this package."""
from __future__ import annotations

import json
import mimetypes
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

from dreamtune.errors import UserError
from dreamtune.ui.actions import DREAMBENCH_PROMPTS, Actions
from dreamtune.ui.safety import Access, Limits, inside

STATIC = Path(__file__).parent / "static"
CSRF_HEADER = "X-Dreamtune"          # a cross-site page cannot send it without a CORS preflight, which we never answer
MAX_JSON = 2**20


def _info(actions: Actions) -> dict:
    from dreamtune.miniature import world
    from dreamtune.recipes import recipe_names

    return {"runs": str(actions.root), "local": actions.access.local, "recipes": [n for n in recipe_names() if "/" not in n],   # not the miniature's pretraining stages
            "subjects": list(world.HELD_OUT), "prompts": DREAMBENCH_PROMPTS, "photo_sets": actions.photo_sets(),
            "limits": {"max_file_mb": actions.limits.max_file_mb, "max_files": actions.limits.max_files}}


def _form(query: dict) -> list[dict]:
    from dreamtune.recipes import find_recipe
    from dreamtune.ui.form import form_fields

    return [f.as_dict() for f in form_fields(find_recipe(query.get("recipe", "miniature-lora")))]


class Handler(BaseHTTPRequestHandler):
    actions: Actions                  # set on the subclass serve() makes
    server_version = "dreamtune-ui"

    def log_message(self, fmt, *args) -> None:   # quiet: the terminal shows the CLI jobs' progress, not every poll
        pass

    # ---- plumbing -----------------------------------------------------------------------------
    def _send(self, status: int, body: bytes, content_type: str, extra: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'")
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, value, status: int = 200) -> None:
        self._send(status, json.dumps(value).encode(), "application/json")

    def _error(self, message: str, status: int = 400) -> None:
        self._json({"error": message}, status)

    def _gate(self) -> bool:
        access = self.actions.access
        if not access.host_allowed(self.headers.get("Host")):
            self._error("this UI answers only requests addressed to 127.0.0.1 or localhost.", 403)
            return False
        if not access.authorized(self.headers.get("Authorization")):
            self._send(401, b"login required", "text/plain", {"WWW-Authenticate": 'Basic realm="dreamtune"'})
            return False
        return True

    def _body(self) -> bytes:
        length = self.headers.get("Content-Length")
        return self.rfile.read(int(length)) if length else b""

    # ---- GET ----------------------------------------------------------------------------------
    def do_GET(self) -> None:  # noqa: N802 (the standard library's name)
        if not self._gate():
            return
        url = urlparse(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        try:
            if url.path in ("/", "/index.html"):
                self._send(200, (STATIC / "index.html").read_bytes(), "text/html; charset=utf-8")
            elif url.path.startswith("/static/"):
                self._static(url.path[len("/static/"):])
            elif url.path.startswith("/files/"):
                self._file(unquote(url.path[len("/files/"):]), "download" in query)
            elif url.path.startswith("/api/"):
                self._json(self._get_api(url.path[5:], query))
            else:
                self._error(f"{url.path} is not a page of this UI.", 404)
        except UserError as exc:
            self._error(str(exc))

    do_HEAD = do_GET

    def _get_api(self, name: str, query: dict):
        a = self.actions
        routes = {"info": lambda: _info(a), "form": lambda: _form(query), "runs": a.list_runs, "run": lambda: a.run(query.get("name", "")),
                  "photos": lambda: a.photo_set(query.get("set", "")), "generation": lambda: a.generation(query.get("path", ""))}
        if name not in routes:
            raise UserError(f"/api/{name} is not part of this UI's API.")
        return routes[name]()

    def _static(self, name: str) -> None:
        path = STATIC / Path(name).name
        if not path.is_file():
            self._error(f"{name} is not a file of this UI.", 404)
            return
        kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        self._send(200, path.read_bytes(), kind + ("; charset=utf-8" if kind.startswith("text/") or kind.endswith("javascript") else ""))

    def _file(self, relative: str, download: bool) -> None:
        path = inside(self.actions.root, relative)
        if not path.is_file():
            self._error(f"{relative} does not exist under the runs folder.", 404)
            return
        kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        extra = {"Content-Disposition": f'attachment; filename="{path.name}"'} if download else {}
        self._send(200, path.read_bytes(), kind, extra)

    # ---- POST ---------------------------------------------------------------------------------
    def do_POST(self) -> None:  # noqa: N802
        if not self._gate():
            return
        if self.headers.get(CSRF_HEADER) != "1":
            self._error(f"requests that change anything must carry the {CSRF_HEADER} header (the page sends it).", 403)
            return
        url = urlparse(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        try:
            if url.path == "/api/upload":
                declared = self.headers.get("Content-Length")
                size = int(declared) if declared and declared.isdigit() else None
                filename = unquote(self.headers.get("X-File-Name", "") or query.get("name", ""))
                self.actions.limits.check_upload(filename, size, 0)   # refuse before reading a huge body
                self._json(self.actions.upload(query.get("set", ""), filename, self._body(), size))
                return
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_JSON:
                raise UserError("the request is larger than 1 MB; send fewer prompts or captions at once.")
            try:
                request = json.loads(self._body() or b"{}")
            except json.JSONDecodeError:
                raise UserError("the request is not valid JSON; reload the page.") from None
            self._json(self._post_api(url.path[len("/api/"):], request))
        except UserError as exc:
            if url.path == "/api/upload":
                self.close_connection = True       # the unread body must not be taken for the next request
            self._error(str(exc))

    def _post_api(self, name: str, r: dict):
        a = self.actions
        routes = {
            "sample": lambda: a.sample_photos(r.get("set", ""), r.get("subject", "")),
            "prepare": lambda: a.prepare(r.get("set", ""), r.get("instance_prompt", ""), int(r.get("resolution") or 512), r.get("folder", "")),
            "captions": lambda: a.edit_captions(r.get("set", ""), r.get("captions", {})),
            "train": lambda: a.train(r),
            "stop": lambda: a.stop(r.get("run", "")),
            "resume": lambda: a.resume(r.get("run", "")),
            "generate": lambda: a.generate(r),
        }
        if name not in routes:
            raise UserError(f"/api/{name} is not part of this UI's API.")
        return routes[name]()


def make_server(runs: Path, host: str = "127.0.0.1", port: int = 7860, auth: str = "", limits: Limits | None = None) -> ThreadingHTTPServer:
    actions = Actions(Path(runs), Access(host, port, auth), limits)
    handler = type("BoundHandler", (Handler,), {"actions": actions})
    try:
        server = ThreadingHTTPServer((host, port), handler)
    except OSError as exc:
        raise UserError(f"cannot listen on {host}:{port} ({exc.strerror}); pick another --port.") from None
    server.daemon_threads = True
    server.actions = actions
    return server


def serve(runs: Path, host: str, port: int, auth: str, limits: Limits, ready=None) -> None:
    import signal

    def interrupt(number, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, interrupt)   # stopped like Ctrl-C: its runs checkpoint and stop (resume them later)
    server = make_server(runs, host, port, auth, limits)
    print(f"dreamtune UI on http://{host}:{server.server_address[1]}/  (runs in {server.actions.root}; Ctrl-C stops it)", flush=True)
    if ready:
        ready(server)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.actions.jobs.stop_all()
        server.server_close()


def serve_in_thread(runs: Path, host: str = "127.0.0.1", port: int = 0, auth: str = "", limits: Limits | None = None):
    """For tests: a server on a free port in a daemon thread; returns it (``server.shutdown()`` stops it)."""
    server = make_server(runs, host, port, auth, limits)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server
