"""``dreamtune ui``: the page in ``static/`` and the JSON API behind it, a Starlette application served by
uvicorn (http_base.py); a run's live state reaches the page as server-sent events. Nothing else in
dreamtune imports this package."""

from __future__ import annotations

import asyncio
import json
import mimetypes
import sys
from pathlib import Path
from urllib.parse import unquote, urlencode

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from dreamtune.errors import UserError
from dreamtune.ui.actions import Actions
from dreamtune.ui.http_base import (
    MAX_JSON,
    READ_TIMEOUT,
    SECURITY_HEADERS,
    ServedUI,
    answer,
    bind,
    check_tls,
    error_response,
    json_response,
    read_body,
    respond,
)
from dreamtune.ui.machine import device_summary
from dreamtune.ui.presets import preset, recipe_groups
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
        "recipe_groups": recipe_groups(),
        "subjects": list(world.HELD_OUT),
        "prompts": DREAMBENCH_PROMPTS,
        "photo_sets": actions.photo_sets(),
        "miniature_contexts": [c.replace("_", " ") for c in world.CONTEXTS],
        "limits": {"max_file_mb": actions.limits.max_file_mb, "max_files": actions.limits.max_files},
        "device": device_summary(),
    }


def _form(actions: Actions, query: dict) -> list[dict]:
    from dreamtune.ui.form import form_fields

    return [f.as_dict() for f in form_fields(ui_recipe(actions.root, query.get("recipe", "miniature-lora")))]


def _gate(request: Request, actions: Actions) -> Response | None:
    """Host name, login, then this launch's token; a link's ``?token=`` becomes a cookie. None: let it in."""
    access, path, query = actions.access, request.scope["path"], dict(request.query_params)
    if not access.host_allowed(request.headers.get("host")):
        return error_response("this UI answers only requests addressed to 127.0.0.1 or localhost.", 403)
    if not access.authorized(request.headers.get("authorization")):
        return respond(401, b"login required", "text/plain", {"WWW-Authenticate": 'Basic realm="dreamtune"'})
    if not access.token_ok(access.token_from(request.headers, query)):
        if path in PAGES:
            return respond(403, NO_TOKEN.encode(), "text/html; charset=utf-8")
        return error_response(
            "this request lacks the UI's token; open the link printed in the terminal where dreamtune ui started.", 403
        )
    if "token" in query and request.method in ("GET", "HEAD"):  # the printed link: a cookie, then the bare address
        rest = urlencode({k: v for k, v in query.items() if k != "token"})
        return respond(
            303, b"", "text/plain", {"Location": path + (f"?{rest}" if rest else ""), "Set-Cookie": access.cookie()}
        )
    return None


def _static(name: str) -> Response:
    path = STATIC / Path(name).name
    if not path.is_file():
        return error_response(f"{name} is not a file of this UI.", 404)
    kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    charset = "; charset=utf-8" if kind.startswith("text/") or kind.endswith("javascript") else ""
    return respond(200, path.read_bytes(), kind + charset)


def _file(actions: Actions, relative: str, download: bool) -> Response:
    path = inside(actions.root, relative)
    if not path.is_file():
        return error_response(f"{relative} does not exist under the runs folder.", 404)
    kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    extra = {"Content-Disposition": f'attachment; filename="{path.name}"'} if download else {}
    return respond(200, path.read_bytes(), kind, extra)


def _get_api(actions: Actions, name: str, query: dict):
    a = actions
    routes = {
        "info": lambda: _info(a),
        "form": lambda: _form(a, query),
        "runs": a.list_runs,
        "jobs": a.job_list,
        "run": lambda: a.run(query.get("name", "")),
        "photos": lambda: a.photo_set(query.get("set", "")),
        "uploads": lambda: a.uploads(query.get("set", "")),
        "preset": lambda: preset(query.get("model", ""), a.access.local_path),
        "generation": lambda: a.generation(query.get("path", "")),
    }
    if name not in routes:
        raise UserError(f"/api/{name} is not part of this UI's API.")
    return routes[name]()


def _post_api(actions: Actions, name: str, r: dict):
    a = actions
    routes = {
        "sample": lambda: a.sample_photos(r.get("set", ""), r.get("subject", "")),
        "prepare": lambda: a.prepare(
            r.get("set", ""), r.get("instance_prompt", ""), int(r.get("resolution") or 512), r.get("folder", "")
        ),
        "captions": lambda: a.edit_captions(r.get("set", ""), r.get("captions", {})),
        "autocaption": lambda: a.autocaption(r.get("set", ""), r.get("model", ""), r.get("prefix", "")),
        "remove_upload": lambda: a.remove_upload(r.get("set", ""), r.get("file", "")),
        "train": lambda: a.train(r),
        "stop": lambda: a.stop(r.get("run", "")),
        "resume": lambda: a.resume(r.get("run", "")),
        "cancel": lambda: a.cancel(r.get("job", "")),
        "move": lambda: a.move(r.get("job", ""), int(r.get("by") or 0)),
        "generate": lambda: a.generate(r),
    }
    if name not in routes:
        raise UserError(f"/api/{name} is not part of this UI's API.")
    return routes[name]()


EVENT_INTERVAL = 1.0  # seconds between looks at a run for the event stream
ENDED = ("finished", "failed", "stopped", "incomplete", "paused")


async def _run_events(actions: Actions, request: Request, name: str):
    """Server-sent events: the run's state whenever it changes, until it ends or the page goes."""
    last = None
    while not await request.is_disconnected():
        try:
            run = await run_in_threadpool(actions.run, name)
        except UserError as exc:
            yield f"event: failure\ndata: {json.dumps({'error': str(exc)})}\n\n"
            return
        text = json.dumps(run)
        if text != last:
            yield f"data: {text}\n\n"
            last = text
        if run["status"] in ENDED and not await run_in_threadpool(actions.job_running, name):
            yield "event: end\ndata: {}\n\n"  # the page closes the stream (else the browser would reconnect)
            return
        await asyncio.sleep(EVENT_INTERVAL)


def make_app(actions: Actions):
    """The Starlette application: one entry point per method, the gate first, every failure one sentence."""

    def gated(handler):
        """An endpoint that lets ``handler(request, path, query)`` answer only past the gate, every failure one sentence."""

        async def endpoint(request: Request) -> Response:
            async def work():
                refused = _gate(request, actions)
                if refused is not None:
                    return refused
                return await handler(request, request.scope["path"], dict(request.query_params))

            return await answer(work)

        return endpoint

    async def get(request: Request, path: str, query: dict) -> Response:
        if path in PAGES:
            return respond(200, (STATIC / "index.html").read_bytes(), "text/html; charset=utf-8")
        if path.startswith("/static/"):
            return _static(path[len("/static/") :])
        if path == "/favicon.ico":  # what browsers ask for before reading the page's <link>
            return _static("favicon.svg")
        if path.startswith("/files/"):
            return _file(actions, path[len("/files/") :], "download" in query)
        if path == "/api/events":
            name = query.get("run", "")
            return StreamingResponse(
                _run_events(actions, request, name), media_type="text/event-stream", headers=SECURITY_HEADERS
            )
        if path.startswith("/api/"):
            return json_response(await run_in_threadpool(_get_api, actions, path[5:], query))
        return error_response(f"{path} is not a page of this UI.", 404)

    async def post(request: Request, path: str, query: dict) -> Response:
        if request.headers.get(CSRF_HEADER) != "1":
            return error_response(
                f"requests that change anything must carry the {CSRF_HEADER} header (the page sends it).", 403
            )
        if path == "/api/upload":
            declared = request.headers.get("content-length")
            size = int(declared) if declared and declared.strip().isdigit() else None
            filename = unquote(request.headers.get("x-file-name", "") or query.get("name", ""))
            actions.limits.check_upload(filename, size, 0)  # refuse before reading a huge body
            body = await read_body(request, int(actions.limits.max_file_mb * 2**20))
            return json_response(await run_in_threadpool(actions.upload, query.get("set", ""), filename, body, size))
        try:
            payload = json.loads(await read_body(request, MAX_JSON) or b"{}")
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise UserError("the request is not valid JSON; reload the page.") from None
        if not isinstance(payload, dict):
            raise UserError("the request is not a JSON object; reload the page.")
        return json_response(await run_in_threadpool(_post_api, actions, path[len("/api/") :], payload))

    app = Starlette(
        routes=[
            Route("/{path:path}", gated(get), methods=["GET", "HEAD"]),
            Route("/{path:path}", gated(post), methods=["POST"]),
        ]
    )
    app.state.read_timeout = READ_TIMEOUT
    return app


def make_server(
    runs: Path,
    host: str = "127.0.0.1",
    port: int = 7860,
    auth: str = "",
    limits: Limits | None = None,
    token: str | None = None,
    certfile: str = "",
    keyfile: str = "",
) -> ServedUI:
    """The UI's server, bound and ready (``server.url`` is the link to open); nothing is served yet."""
    import socket

    if keyfile and not certfile:
        raise UserError("--keyfile needs --certfile (the certificate the key belongs to).")
    if certfile:
        check_tls(certfile, keyfile)
    access = Access(host, port, auth, **({"token": token} if token else {}), tls=bool(certfile))
    actions = Actions(Path(runs), access, limits)
    sock = bind(host, port)
    shown = host if access.local else socket.gethostname()
    url = f"{'https' if certfile else 'http'}://{shown}:{sock.getsockname()[1]}/?token={access.token}"
    return ServedUI(make_app(actions), sock, url, actions, certfile, keyfile)


def serve(
    runs: Path, host: str, port: int, auth: str, limits: Limits, ready=None, certfile: str = "", keyfile: str = ""
) -> None:
    import signal

    server = make_server(runs, host, port, auth, limits, certfile=certfile, keyfile=keyfile)

    def stop(number, frame):  # SIGTERM, even one that comes before uvicorn listens for it: stop serving
        server.server.should_exit = True

    signal.signal(signal.SIGTERM, stop)  # uvicorn takes it while it serves, then gives it back and raises it again
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
        server.server_close()
        going = [j for j in server.actions.jobs.jobs() if j.running]
        if going:  # they outlive the UI: their runners go on, and start the queue's next jobs
            print(
                f"{len(going)} job(s) keep running or waiting; run dreamtune ui again to follow them "
                "(Stop on the Runs page pauses a run).",
                flush=True,
            )


def serve_in_thread(
    runs: Path,
    host: str = "127.0.0.1",
    port: int = 0,
    auth: str = "",
    limits: Limits | None = None,
    token: str | None = None,
    certfile: str = "",
    keyfile: str = "",
) -> ServedUI:
    """For tests: a server on a free port in a daemon thread; returns it (``server.shutdown()`` stops it)."""
    return make_server(runs, host, port, auth, limits, token, certfile, keyfile).start_in_thread()
