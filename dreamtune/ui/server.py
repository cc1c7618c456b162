"""``dreamtune ui``: a small HTTP server (standard library only) for the page in ``static/`` and the
JSON API behind it. Nothing else in dreamtune imports this package."""

from __future__ import annotations

import json
import mimetypes
import sys
import threading
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlencode, urlparse

from dreamtune.errors import UserError
from dreamtune.ui.actions import Actions
from dreamtune.ui.http_base import MAX_JSON, SafeHandler, Server, tls_context
from dreamtune.ui.prompts import DREAMBENCH_PROMPTS
from dreamtune.ui.safety import Access, Limits, inside, ui_recipe

STATIC = Path(__file__).parent / "static"
CSRF_HEADER = "X-Dreamtune"  # a cross-site page cannot send it without a CORS preflight, which we never answer
PAGES = ("/", "/index.html")
NO_TOKEN = (
    "<!doctype html><title>dreamtune</title><p>This page needs the link printed in the terminal where "
    "<code>dreamtune ui</code> started (it carries this launch's token, which keeps other users of the machine out)."
)


def _info(actions: Actions) -> dict:
    from dreamtune.miniature import world
    from dreamtune.recipes import recipe_names

    return {
        "runs": str(actions.root),
        "local": actions.access.local,
        "recipes": [n for n in recipe_names() if "/" not in n],  # not the miniature's pretraining stages
        "recipe_models": {n: actions.recipe_model(n) for n in recipe_names() if "/" not in n},
        "subjects": list(world.HELD_OUT),
        "prompts": DREAMBENCH_PROMPTS,
        "photo_sets": actions.photo_sets(),
        "miniature_contexts": [c.replace("_", " ") for c in world.CONTEXTS],
        "limits": {"max_file_mb": actions.limits.max_file_mb, "max_files": actions.limits.max_files},
    }


def _form(actions: Actions, query: dict) -> list[dict]:
    from dreamtune.ui.form import form_fields

    return [f.as_dict() for f in form_fields(ui_recipe(actions.root, query.get("recipe", "miniature-lora")))]


class Handler(SafeHandler):
    actions: Actions  # set on the subclass serve() makes
    server_version = "dreamtune-ui"

    def _gate(self, path: str, query: dict) -> bool:
        """Host name, login, then this launch's token; a link's ``?token=`` becomes a cookie."""
        access = self.actions.access
        if not access.host_allowed(self.headers.get("Host")):
            self._error("this UI answers only requests addressed to 127.0.0.1 or localhost.", 403)
            return False
        if not access.authorized(self.headers.get("Authorization")):
            self._send(401, b"login required", "text/plain", {"WWW-Authenticate": 'Basic realm="dreamtune"'})
            return False
        if not access.token_ok(access.token_from(self.headers, query)):
            if path in PAGES:
                self._send(403, NO_TOKEN.encode(), "text/html; charset=utf-8")
            else:
                self._error(
                    "this request lacks the UI's token; open the link printed in the terminal where dreamtune ui started.",
                    403,
                )
            return False
        if "token" in query and self.command in (
            "GET",
            "HEAD",
        ):  # the printed link: keep the token in a cookie, drop it from the address
            rest = urlencode({k: v for k, v in query.items() if k != "token"})
            self._send(
                303, b"", "text/plain", {"Location": path + (f"?{rest}" if rest else ""), "Set-Cookie": access.cookie()}
            )
            return False
        return True

    def _route(self) -> tuple[str, dict] | None:
        url = urlparse(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        return (url.path, query) if self._gate(url.path, query) else None

    # ---- GET ----------------------------------------------------------------------------------
    def do_GET(self) -> None:  # noqa: N802 (the standard library's name)
        self._answer(self._get)

    do_HEAD = do_GET

    def _get(self) -> None:
        routed = self._route()
        if routed is None:
            return
        path, query = routed
        if path in PAGES:
            self._send(200, (STATIC / "index.html").read_bytes(), "text/html; charset=utf-8")
        elif path.startswith("/static/"):
            self._static(path[len("/static/") :])
        elif path == "/favicon.ico":  # what browsers ask for before reading the page's <link>
            self._static("favicon.svg")
        elif path.startswith("/files/"):
            self._file(unquote(path[len("/files/") :]), "download" in query)
        elif path.startswith("/api/"):
            self._json(self._get_api(path[5:], query))
        else:
            self._error(f"{path} is not a page of this UI.", 404)

    def _get_api(self, name: str, query: dict):
        a = self.actions
        routes = {
            "info": lambda: _info(a),
            "form": lambda: _form(a, query),
            "runs": a.list_runs,
            "run": lambda: a.run(query.get("name", "")),
            "photos": lambda: a.photo_set(query.get("set", "")),
            "generation": lambda: a.generation(query.get("path", "")),
        }
        if name not in routes:
            raise UserError(f"/api/{name} is not part of this UI's API.")
        return routes[name]()

    def _static(self, name: str) -> None:
        path = STATIC / Path(name).name
        if not path.is_file():
            self._error(f"{name} is not a file of this UI.", 404)
            return
        kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        self._send(
            200,
            path.read_bytes(),
            kind + ("; charset=utf-8" if kind.startswith("text/") or kind.endswith("javascript") else ""),
        )

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
        self._answer(self._post)

    def _post(self) -> None:
        routed = self._route()
        if routed is None:
            return
        path, query = routed
        if self.headers.get(CSRF_HEADER) != "1":
            self._error(f"requests that change anything must carry the {CSRF_HEADER} header (the page sends it).", 403)
            return
        if path == "/api/upload":
            declared = self.headers.get("Content-Length")
            size = int(declared) if declared and declared.strip().isdigit() else None
            filename = unquote(self.headers.get("X-File-Name", "") or query.get("name", ""))
            self.actions.limits.check_upload(filename, size, 0)  # refuse before reading a huge body
            body = self._body(self._length(int(self.actions.limits.max_file_mb * 2**20)))
            self._json(self.actions.upload(query.get("set", ""), filename, body, size))
            return
        try:
            request = json.loads(self._body(self._length(MAX_JSON)) or b"{}")
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise UserError("the request is not valid JSON; reload the page.") from None
        if not isinstance(request, dict):
            raise UserError("the request is not a JSON object; reload the page.")
        self._json(self._post_api(path[len("/api/") :], request))

    def _post_api(self, name: str, r: dict):
        a = self.actions
        routes = {
            "sample": lambda: a.sample_photos(r.get("set", ""), r.get("subject", "")),
            "prepare": lambda: a.prepare(
                r.get("set", ""), r.get("instance_prompt", ""), int(r.get("resolution") or 512), r.get("folder", "")
            ),
            "captions": lambda: a.edit_captions(r.get("set", ""), r.get("captions", {})),
            "train": lambda: a.train(r),
            "stop": lambda: a.stop(r.get("run", "")),
            "resume": lambda: a.resume(r.get("run", "")),
            "generate": lambda: a.generate(r),
        }
        if name not in routes:
            raise UserError(f"/api/{name} is not part of this UI's API.")
        return routes[name]()


def make_server(
    runs: Path,
    host: str = "127.0.0.1",
    port: int = 7860,
    auth: str = "",
    limits: Limits | None = None,
    token: str | None = None,
    certfile: str = "",
    keyfile: str = "",
) -> Server:
    """The UI's server, bound and ready (``server.url`` is the link to open); nothing is served yet."""
    import socket

    context = tls_context(certfile, keyfile) if certfile else None
    if keyfile and not certfile:
        raise UserError("--keyfile needs --certfile (the certificate the key belongs to).")
    access = Access(host, port, auth, **({"token": token} if token else {}), tls=bool(context))
    actions = Actions(Path(runs), access, limits)
    handler = type("BoundHandler", (Handler,), {"actions": actions})
    try:
        server = Server((host, port), handler)
    except OSError as exc:
        raise UserError(f"cannot listen on {host}:{port} ({exc.strerror}); pick another --port.") from None
    if context:
        server.socket = context.wrap_socket(server.socket, server_side=True, do_handshake_on_connect=False)
    server.actions = actions
    shown = host if access.local else socket.gethostname()
    server.url = f"{'https' if context else 'http'}://{shown}:{server.server_address[1]}/?token={access.token}"
    return server


def serve(
    runs: Path, host: str, port: int, auth: str, limits: Limits, ready=None, certfile: str = "", keyfile: str = ""
) -> None:
    import signal

    def interrupt(number, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)  # stopped like Ctrl-C: its runs checkpoint and stop (resume them later)
    server = make_server(runs, host, port, auth, limits, certfile=certfile, keyfile=keyfile)
    print(
        f"dreamtune UI on {server.url}\n  (open that link: its token keeps other users of this machine out; runs in "
        f"{server.actions.root}; Ctrl-C stops it)",
        flush=True,
    )
    if not server.actions.access.local and not certfile:
        print(
            "warning: the UI is reachable from other machines over plain HTTP, so the login and the token cross the network "
            "unencrypted; pass --certfile and --keyfile, or serve it behind a TLS reverse proxy (docs/ui.md).",
            file=sys.stderr,
            flush=True,
        )
    if ready:
        ready(server)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.actions.jobs.stop_all()
        server.server_close()


def serve_in_thread(
    runs: Path,
    host: str = "127.0.0.1",
    port: int = 0,
    auth: str = "",
    limits: Limits | None = None,
    token: str | None = None,
    certfile: str = "",
    keyfile: str = "",
) -> Server:
    """For tests: a server on a free port in a daemon thread; returns it (``server.shutdown()`` stops it)."""
    server = make_server(runs, host, port, auth, limits, token, certfile, keyfile)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server
