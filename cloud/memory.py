"""How much memory the cloud's processes use (proportional set size).

Why PSS: the services share the virtualenv's libraries and Python itself; PSS
charges each shared page to its users in proportion, so the sum over the
cloud's processes is the memory the cloud really takes. The /proc helpers are
the benchmarks' (benchmarks/memory.py).
"""
from __future__ import annotations

import os

from benchmarks.memory import children_map, cmdline, pss_kb, subtree
from cloud import layout, netns, supervisor


def processes() -> list[int]:
    """The supervisor and its descendants, plus processes in the cloud's
    namespaces or naming its state directory (Neutron's dnsmasq and haproxy,
    privsep daemons, which leave their parents)."""
    root = supervisor.pid()
    kids = children_map()
    mine = set(subtree(root, kids)) if root else set()
    inodes = set()
    for ns in netns.namespaces():
        if ns.startswith(layout.PREFIX + "-"):
            try:
                inodes.add(os.stat(f"/run/netns/{ns}").st_ino)
            except OSError:
                pass
    for pid in (p for children in kids.values() for p in children):
        if pid in mine:
            continue
        try:
            if os.stat(f"/proc/{pid}/ns/net").st_ino in inodes \
                    or layout.STATE in cmdline(pid):
                mine.add(pid)
        except OSError:
            pass
    return sorted(mine)


def total_mb() -> tuple[float, int]:
    """(PSS in MB, number of processes)."""
    pids = processes()
    return sum(pss_kb(p) for p in pids) / 1024, len(pids)
