"""How much memory the cloud's processes use (proportional set size).

Why PSS: the services share the virtualenv's libraries and Python itself; PSS
charges each shared page to its users in proportion, so the sum over the
cloud's processes is the memory the cloud really takes.
"""
from __future__ import annotations

import os

from cloud import layout, netns, supervisor


def _ns_inodes() -> set[int]:
    inodes = set()
    for ns in netns.namespaces():
        if ns.startswith(layout.PREFIX + "-"):
            try:
                inodes.add(os.stat(f"/run/netns/{ns}").st_ino)
            except OSError:
                pass
    return inodes


def _parents() -> dict[int, int]:
    parents = {}
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/stat") as f:
                    parents[int(pid)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    return parents


def processes() -> list[int]:
    """The supervisor, its descendants, and processes in the cloud's namespaces
    or naming its state directory (Neutron's dnsmasq and haproxy, privsep
    daemons)."""
    root = supervisor.pid()
    parents = _parents()
    inodes = _ns_inodes()
    mine = set()
    for pid in parents:
        p, seen = pid, 0
        while p > 1 and seen < 64:
            if p == root:
                mine.add(pid)
                break
            p, seen = parents.get(p, 0), seen + 1
        if pid in mine:
            continue
        try:
            if os.stat(f"/proc/{pid}/ns/net").st_ino in inodes:
                mine.add(pid)
                continue
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if layout.STATE.encode() in f.read():
                    mine.add(pid)
        except OSError:
            pass
    return sorted(mine)


def pss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def total_mb() -> tuple[float, int]:
    """(PSS in MB, number of processes)."""
    pids = processes()
    return sum(pss_kb(p) for p in pids) / 1024, len(pids)
