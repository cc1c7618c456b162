"""What the UI may touch: names it makes folders from, paths it serves, uploads it accepts, and
who may talk to it. Every refusal is one sentence naming the thing and the fix."""
from __future__ import annotations

import base64
import hmac
import ipaddress
import re
from dataclasses import dataclass
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

    def check_upload(self, filename: str, size: int | None, count_before: int) -> str:
        """The stored name of an accepted upload, or a one-sentence refusal."""
        name = safe_name(Path(filename).name, "file name")
        suffix = Path(name).suffix.lower()
        if suffix not in UPLOAD_SUFFIXES:
            raise UserError(f"{filename} is not an image this UI accepts ({', '.join(sorted(UPLOAD_SUFFIXES))}); "
                            "convert it to PNG or JPEG and upload it again.")
        if size is None:
            raise UserError(f"{filename} came without its size (Content-Length); upload it again from the page.")
        if size > self.max_file_mb * 2**20:
            raise UserError(f"{filename} is {size / 2**20:.1f} MB, over the {self.max_file_mb:g} MB limit of one upload; "
                            "resize it (2048 px is plenty) or start the UI with a larger --max-upload-mb.")
        if count_before >= self.max_files:
            raise UserError(f"this photo set already holds {self.max_files} files, the limit; start a new set "
                            "or start the UI with a larger --max-files.")
        return name


def inside(root: Path, relative: str) -> Path:
    """``root/relative`` when it stays inside ``root`` after resolving links and '..', else an error."""
    root = Path(root).resolve()
    target = (root / relative.lstrip("/")).resolve()
    if target != root and root not in target.parents:
        raise UserError(f"{relative} lies outside the runs folder; the UI serves only files under {root}.")
    if any(part.startswith(".") for part in target.relative_to(root).parts):
        raise UserError(f"{relative} is a hidden file; the UI does not serve those.")
    return target


@dataclass(frozen=True)
class Access:
    """Who may connect and whether the UI may name paths outside its runs folder (only for the person
    at this machine: bound to loopback)."""
    host: str
    port: int
    auth: str = ""                   # "user:pass" (required off loopback)

    def __post_init__(self):
        if not is_loopback(self.host) and not self.auth:
            raise UserError(f"--host {self.host} lets other machines reach the UI and start jobs on this one; "
                            "add --auth user:pass, or leave --host at 127.0.0.1.")
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

    def host_allowed(self, header: str | None) -> bool:
        """Refuse a DNS-rebinding page: on loopback the Host header must name loopback."""
        if not self.local:
            return True
        host = (header or "").rsplit(":", 1)[0].strip("[]")
        return is_loopback(host)

    def local_path(self, text: str, what: str) -> Path:
        """A path outside the runs folder typed by the user (photos, a base model): only on loopback."""
        if not self.local:
            raise UserError(f"{what} names a path on the server; a UI reachable from other machines takes uploads and "
                            "the runs folder only — start it on 127.0.0.1 to use local paths.")
        path = Path(text).expanduser()
        if not path.exists():
            raise UserError(f"{what} {path} does not exist; check the path.")
        return path
