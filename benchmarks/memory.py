"""Host memory accounting from /proc, for daemon RSS and per-container cost.

Why PSS: a container's monitor and init share pages (libc, the daemon binary for
LXD's forked monitor, busybox) with other containers and the daemon. RSS counts
a shared page once per process and so overstates density; PSS splits each page
among the processes that map it, so summing PSS over one container's processes
gives its fair share. MemAvailable deltas are reported next to it because they
also catch kernel memory (cgroups, netdevs, page tables) that PSS cannot see.
"""
from __future__ import annotations

import os


def _status_kb(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def rss_kb(pid: int) -> int:
    """Resident set size of one process (VmRSS)."""
    return _status_kb(pid, "VmRSS")


def pss_kb(pid: int) -> int:
    """Proportional set size of one process, 0 if it is gone."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        pass
    return 0


def ppid(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        data = f.read()
    # comm may contain spaces and parentheses: split after the last ')'.
    return int(data.rsplit(")", 1)[1].split()[1])


def children_map() -> dict[int, list[int]]:
    """Parent pid -> child pids, for every process on the host."""
    out: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            parent = ppid(int(name))
        except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
            continue
        out.setdefault(parent, []).append(int(name))
    return out


def subtree(root: int, kids: dict[int, list[int]]) -> list[int]:
    """root and all its descendants."""
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(kids.get(pid, []))
    return out


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def container_pss_kb(init_pid: int, daemon_pid: int | None,
                     kids: dict[int, list[int]]) -> tuple[int, int]:
    """(PSS of the container's processes, PSS of its monitor) in kB.

    The monitor is the parent of the container's init (liblxc's lxc-start
    process, or LXD's `lxd forkstart`), unless that parent is the daemon itself
    (a runtime that keeps containers as direct children has no monitor).
    """
    container = sum(pss_kb(p) for p in subtree(init_pid, kids))
    monitor = 0
    try:
        parent = ppid(init_pid)
    except OSError:
        parent = 0
    if parent > 1 and parent != daemon_pid:
        monitor = pss_kb(parent)
        # Helpers the monitor keeps beside init (not init's subtree) are its cost too.
        for sibling in kids.get(parent, []):
            if sibling != init_pid:
                monitor += sum(pss_kb(p) for p in subtree(sibling, kids))
    return container, monitor


def mem_available_kb() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1])
    return 0
