"""How many processes the kernel's OOM killer has killed in this process's memory cgroup.

A container's memory limit is its cgroup's (``memory.max``, v1 ``memory.limit_in_bytes``): a process that
reaches it is sent SIGKILL by the kernel, with no MemoryError and no last line in its log. The cgroup counts
those kills (v2 ``memory.events``, v1 ``memory.oom_control``: ``oom_kill N``), so the supervisor, in the same
cgroup as the parts it starts, can tell a part the OOM killer ended from one a person killed.
"""

from __future__ import annotations

from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")


def memory_cgroup_files(proc_cgroup: str) -> list[Path]:
    """The files that may hold the OOM-kill count of the memory cgroup that ``/proc/PID/cgroup`` names, v2 and v1."""
    files = []
    for line in proc_cgroup.splitlines():
        hierarchy, controllers, path = line.split(":", 2)
        relative = path.lstrip("/")
        if hierarchy == "0" and controllers == "":  # v2: the unified hierarchy (hybrid hosts mount it at unified/)
            files += [CGROUP_ROOT / relative / "memory.events", CGROUP_ROOT / "unified" / relative / "memory.events"]
        elif "memory" in controllers.split(","):  # v1: the memory controller's own hierarchy
            files.append(CGROUP_ROOT / "memory" / relative / "memory.oom_control")
    return files


def oom_kills(pid: str = "self") -> int | None:
    """The OOM kills counted in the memory cgroup of ``pid``; None where no memory cgroup can be read."""
    try:
        proc_cgroup = Path(f"/proc/{pid}/cgroup").read_text()
    except OSError:
        return None
    for path in memory_cgroup_files(proc_cgroup):
        try:
            text = path.read_text()
        except OSError:
            continue
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value)
    return None
