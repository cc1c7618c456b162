"""The memory a process may still use inside its control group (a container's or a job scheduler's limit),
which the machine's free memory does not show: a 64 GiB host running a container capped at 16 GiB
reports ~60 GiB available, and a run planned for that is killed at 16.

Read from the cgroup files of this process (v2: ``memory.max``, ``memory.current``; v1:
``memory.limit_in_bytes``, ``memory.usage_in_bytes``). Inactive file pages (page cache the kernel
reclaims before it kills anything) are counted as room, as the machine's "available" counts them.
"""

from __future__ import annotations

from pathlib import Path

UNLIMITED = 2**60  # v1 writes ~2^63 for "no limit"


def _number(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return UNLIMITED if text == "max" else int(text) if text.isdigit() else None


def _inactive_file(stat: Path, key: str) -> int:
    try:
        lines = stat.read_text().splitlines()
    except OSError:
        return 0
    return next((int(line.split()[1]) for line in lines if line.split()[0] == key), 0)


def _folders(mount: Path, own: str) -> list[Path]:
    """The process's group folder, then the mount's root (inside a container the group is the root)."""
    return [mount / own.lstrip("/"), mount] if own.strip("/") else [mount]


def room(proc_cgroup: Path = Path("/proc/self/cgroup"), root: Path = Path("/sys/fs/cgroup")) -> int | None:
    """Bytes this process's memory cgroup still allows, or None when no limit applies (or none is readable)."""
    try:
        entries = [line.split(":", 2) for line in proc_cgroup.read_text().splitlines() if line.count(":") >= 2]
    except OSError:
        return None
    found = []
    for _, controllers, own in entries:
        if "memory" in controllers.split(","):  # v1
            names, mount = ("memory.limit_in_bytes", "memory.usage_in_bytes", "total_inactive_file"), root / "memory"
        elif controllers == "":  # v2's unified hierarchy
            names, mount = ("memory.max", "memory.current", "inactive_file"), root
        else:
            continue
        for folder in _folders(mount, own):
            limit, usage = _number(folder / names[0]), _number(folder / names[1])
            if limit is not None and usage is not None:
                if limit < UNLIMITED:
                    found.append(max(0, limit - usage + _inactive_file(folder / "memory.stat", names[2])))
                break
    return min(found) if found else None
