"""What the UI may touch: names it makes folders from, paths it serves, uploads it accepts, and
who may talk to it. Every refusal is one sentence naming the thing and the fix."""

from __future__ import annotations

import base64
import hmac
import ipaddress
import os
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from dreamtune.errors import UserError

NAME = re.compile(r"[^A-Za-z0-9._-]+")
UPLOAD_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff", ".txt"}
HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")


def safe_name(text: str, what: str = "name") -> str:
    """A folder or file name made only of letters, digits, '.', '_' and '-' (no path, no dot first)."""
    cleaned = NAME.sub("-", str(text).strip()).strip("-.")[:80]
    if not cleaned:
        raise UserError(f"the {what} '{text}' has no letters or digits; type a short name such as my-dog.")
    return cleaned


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class Limits:
    max_file_mb: float = 25.0
    max_files: int = 100
    max_device_jobs: int = 1  # training jobs at once on this machine's accelerator; the rest wait in the queue

    def check_upload(self, filename: str, size: int | None, count_before: int) -> str:
        """The stored name of an accepted upload, or a one-sentence refusal."""
        name = safe_name(Path(filename).name, "file name")
        suffix = Path(name).suffix.lower()
        if suffix not in UPLOAD_SUFFIXES:
            raise UserError(
                f"{filename} is not an image this UI accepts ({', '.join(sorted(UPLOAD_SUFFIXES))}); "
                "convert it to PNG or JPEG and upload it again."
            )
        if size is None:
            raise UserError(f"{filename} came without its size (Content-Length); upload it again from the page.")
        if size > self.max_file_mb * 2**20:
            raise UserError(
                f"{filename} is {size / 2**20:.1f} MB, over the {self.max_file_mb:g} MB limit of one upload; "
                "resize it (2048 px is plenty) or start the UI with a larger --max-upload-mb."
            )
        if count_before >= self.max_files:
            raise UserError(
                f"this photo set already holds {self.max_files} files, the limit; start a new set "
                "or start the UI with a larger --max-files."
            )
        return name


def inside(root: Path, relative: str) -> Path:
    """``root/relative`` when it stays inside ``root`` after resolving links and '..', else an error."""
    if "\x00" in relative:
        raise UserError(f"{relative!r} holds a null byte; no file of the runs folder has one in its name.")
    root = Path(root).resolve()
    target = (root / relative.lstrip("/")).resolve()
    if target != root and root not in target.parents:
        raise UserError(f"{relative} lies outside the runs folder; the UI serves only files under {root}.")
    if any(part.startswith(".") for part in target.relative_to(root).parts):
        raise UserError(f"{relative} is a hidden file; the UI does not serve those.")
    return target


TOKEN_HEADER = "X-Dreamtune-Token"


def new_token() -> str:
    """This launch's secret: ``$DREAMTUNE_UI_TOKEN`` (an environment is private to its user, unlike
    a command line), else 32 random URL-safe characters."""
    return os.environ.get("DREAMTUNE_UI_TOKEN") or secrets.token_urlsafe(24)


@dataclass(frozen=True)
class Access:
    """Who may connect and whether the UI may name paths outside its runs folder (only for the person
    at this machine: bound to loopback). Every request must carry this launch's token (as notebook
    servers do: in the printed link, then a cookie), so no other user of the machine can drive the
    UI with its owner's rights; ``auth`` adds a login for a UI shared over the network."""

    host: str
    port: int
    auth: str = ""  # "user:pass" (required off loopback)
    token: str = field(default_factory=new_token)
    tls: bool = False  # served over HTTPS (--certfile / --keyfile)

    def __post_init__(self):
        if not is_loopback(self.host) and not self.auth:
            raise UserError(
                f"--host {self.host} lets other machines reach the UI and start jobs on this one; "
                "add --auth user:pass, or leave --host at 127.0.0.1."
            )
        if self.auth and ":" not in self.auth:
            raise UserError("--auth must be user:pass (a colon between them).")

    @property
    def local(self) -> bool:
        return is_loopback(self.host)

    def authorized(self, header: str | None) -> bool:
        if not self.auth:
            return True
        if not header or not header.startswith("Basic "):
            return False
        try:
            given = base64.b64decode(header[6:], validate=True).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            return False
        return hmac.compare_digest(given.encode(), self.auth.encode())

    @property
    def cookie_name(self) -> str:
        return f"dreamtune-token-{self.port}"  # cookies ignore ports: one UI's cookie per port

    def token_ok(self, given: str | None) -> bool:
        return bool(given) and hmac.compare_digest(str(given).encode(), self.token.encode())

    def token_from(self, headers, query: dict) -> str | None:
        """The token a request carries: its header, the link's ``?token=``, or the cookie."""
        from http.cookies import CookieError, SimpleCookie

        if headers.get(TOKEN_HEADER):
            return headers.get(TOKEN_HEADER)
        if query.get("token"):
            return query["token"]
        try:
            jar = SimpleCookie(headers.get("Cookie") or "")
        except CookieError:
            return None
        return jar[self.cookie_name].value if self.cookie_name in jar else None

    def cookie(self) -> str:
        secure = "; Secure" if self.tls else ""
        return f"{self.cookie_name}={self.token}; Path=/; HttpOnly; SameSite=Strict{secure}"

    def host_allowed(self, header: str | None) -> bool:
        """Refuse a DNS-rebinding page: on loopback the Host header must name loopback."""
        if not self.local:
            return True
        host = (header or "").rsplit(":", 1)[0].strip("[]")
        return is_loopback(host)

    def local_path(self, text: str, what: str) -> Path:
        """A path outside the runs folder typed by the user (photos, a base model): only on loopback."""
        if not self.local:
            raise UserError(
                f"{what} names a path on the server; a UI reachable from other machines takes uploads and "
                "the runs folder only — start it on 127.0.0.1 to use local paths."
            )
        path = Path(text).expanduser()
        if not path.exists():
            raise UserError(f"{what} {path} does not exist; check the path.")
        return path


# config keys that name places on disk: the UI writes only under --runs, and (off loopback) reads
# only there too; tests/unit/test_ui.py checks every key still exists in config.py
WRITTEN_PATHS = ("train.output_dir", "prior.class_dir", "data.cache_dir")
READ_PATHS = (
    "model.pretrained",
    "model.config",
    "data.instance_dir",
    "method.lora.init_from",
    "monitor.clip",
    "adversarial.features",
    "rl.clip",
    "rl.print_profile",
)


def ui_recipe(root: Path, text: str) -> Path:
    """A recipe the UI may read: a shipped recipe by name, or a YAML file under the runs folder.
    Any other path is refused without opening it (the UI must not read or echo server files)."""
    from dreamtune.recipes import RECIPES_DIR, recipe_names

    text = str(text or "").strip()
    shipped = [n for n in recipe_names() if "/" not in n]
    if text.removesuffix(".yaml") in shipped:
        return RECIPES_DIR / f"{text.removesuffix('.yaml')}.yaml"
    root = Path(root).resolve()
    given = Path(text) if text and "\x00" not in text else None
    path = (given if given.is_absolute() else root / given).resolve() if given else None
    if path is None or not path.is_relative_to(root) or path.suffix not in (".yaml", ".yml") or not path.is_file():
        raise UserError(
            f"recipe {text!r} is neither a shipped recipe ({', '.join(shipped[:3])}, ...) nor a .yaml file under {root}; "
            "pick one from the list."
        )
    return path


def _setting(cfg, key: str) -> str:
    value = cfg
    for part in key.split("."):
        value = getattr(value, part)
    return str(value or "")


def confine_config(cfg, root: Path, access: Access) -> None:
    """Refuse a config (from a recipe under --runs, or a run's config.yaml) whose paths lead the UI
    outside the runs folder: anything it would write, and off loopback anything it would read."""
    root = Path(root).resolve()
    for key in WRITTEN_PATHS + (() if access.local else READ_PATHS):
        value = _setting(cfg, key)
        if not value or (
            key in READ_PATHS and not Path(value).expanduser().exists() and ("/" not in value or HUB_ID.match(value))
        ):
            continue  # empty, a hub id or a built-in name ("miniature"): not a place on this disk
        if "\x00" in value or not Path(value).expanduser().resolve().is_relative_to(root):
            raise UserError(
                f"the recipe sets {key} to {value}, outside the runs folder {root}; the UI "
                f"{'writes' if key in WRITTEN_PATHS else 'reads'} only there — remove that setting or point it inside {root}."
            )
