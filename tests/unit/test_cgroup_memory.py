"""The room a memory cgroup leaves (a container's limit), read from cgroup v1 and v2 file layouts."""

from pathlib import Path

from dreamtune.training import cgroup_memory

GIB = 2**30


def write(folder: Path, files: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text)


def test_v2_limit_minus_usage_with_reclaimable_cache_counted_as_room(tmp_path):
    proc = tmp_path / "cgroup"
    proc.write_text("0::/jobs/train\n")
    write(
        tmp_path / "fs/jobs/train",
        {
            "memory.max": f"{16 * GIB}\n",
            "memory.current": f"{10 * GIB}\n",
            "memory.stat": f"anon {7 * GIB}\nfile {3 * GIB}\ninactive_file {2 * GIB}\n",
        },
    )
    assert cgroup_memory.room(proc, tmp_path / "fs") == 8 * GIB


def test_v1_memory_controller_and_no_limit(tmp_path):
    proc = tmp_path / "cgroup"
    proc.write_text("5:cpu,cpuacct:/\n4:memory:/docker/abc\n0::/\n")
    group = tmp_path / "fs/memory/docker/abc"
    write(group, {"memory.limit_in_bytes": f"{12 * GIB}", "memory.usage_in_bytes": f"{4 * GIB}"})
    assert cgroup_memory.room(proc, tmp_path / "fs") == 8 * GIB
    (group / "memory.limit_in_bytes").write_text("9223372036854771712\n")  # v1's "no limit"
    assert cgroup_memory.room(proc, tmp_path / "fs") is None


def test_inside_a_container_the_group_is_the_mount_root(tmp_path):
    """The host's path in /proc/self/cgroup is not mounted inside the container: its root holds the limit."""
    proc = tmp_path / "cgroup"
    proc.write_text("0::/system.slice/docker-1234.scope\n")
    write(tmp_path / "fs", {"memory.max": f"{6 * GIB}", "memory.current": f"{5 * GIB}"})
    assert cgroup_memory.room(proc, tmp_path / "fs") == 1 * GIB
    (tmp_path / "fs/memory.max").write_text("max\n")
    assert cgroup_memory.room(proc, tmp_path / "fs") is None


def test_nothing_readable_means_no_limit(tmp_path):
    assert cgroup_memory.room(tmp_path / "missing", tmp_path) is None
    proc = tmp_path / "cgroup"
    proc.write_text("0::/\n")
    assert cgroup_memory.room(proc, tmp_path / "nowhere") is None
