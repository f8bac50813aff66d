"""Remove a runtime state directory and everything a daemon made from it.

For tests, benchmarks and the cloud of `scripts/cloud` (not the product: nothing in
`runtime/` needs it), which start daemons on
throwaway directories and must leave nothing behind, even when the daemon is
already gone: containers (found through their liblxc monitors, since a daemon
started with `lxc-start -f` leaves no per-container directory in the lxcpath),
the managed bridges, NAT tables and dnsmasq processes of its networks, every mount below
the directory, and the daemon's (now empty) cgroup parents.
"""
from __future__ import annotations

import glob
import os
import shutil
import signal
import sqlite3
import subprocess

from runtime.network import nat

DB = os.path.join("database", "runtime.db")


def mounts_below(path: str) -> list[str]:
    prefix = path.rstrip("/") + "/"
    found = []
    with open("/proc/self/mounts") as mounts:
        for line in mounts:
            target = line.split()[1].replace("\\040", " ")
            if target == path or target.startswith(prefix):
                found.append(target)
    return found


def monitors_below(lxd_dir: str) -> list[tuple[int, str, str]]:
    """(pid, lxcpath, name) of the liblxc monitors of containers under lxd_dir."""
    from runtime.instances.lxc import monitors
    prefix = os.path.abspath(lxd_dir).rstrip("/") + "/"
    return [m for m in monitors() if m[1].startswith(prefix)]


def managed_networks(lxd_dir: str) -> list[str]:
    path = os.path.join(lxd_dir, DB)
    if not os.path.exists(path):
        return []
    try:
        with sqlite3.connect(path) as conn:
            return [r[0] for r in conn.execute("SELECT name FROM networks")]
    except sqlite3.Error:
        return []


def _kill_pidfiles(pattern: str) -> None:
    for pidfile in glob.glob(pattern):
        try:
            with open(pidfile) as f:
                os.kill(int(f.read().strip()), signal.SIGTERM)
        except (OSError, ValueError):
            continue


def stop_containers(lxd_dir: str) -> None:
    # liblxc's command socket is an abstract unix socket, which lives in a network
    # namespace: a daemon run in a namespace of its own started its containers'
    # monitors there, and only lxc-stop run there reaches them.
    for pid, lxcpath, name in monitors_below(lxd_dir):
        subprocess.run(["nsenter", f"--net=/proc/{pid}/ns/net", "--", "lxc-stop", "-P",
                        lxcpath, "-n", name, "-k"], capture_output=True, timeout=60,
                       check=False)


def wipe(lxd_dir: str, bridges: bool = True) -> None:
    """Stop its containers, drop its bridges and dnsmasq, unmount, remove (best effort).

    lxd_dir may also be a directory holding several state directories (one per
    cloud host). bridges=False for daemons that ran in a network namespace
    of their own: their bridges live (and die) there, and a host link of the
    same name is somebody else's.
    """
    if not os.path.isdir(lxd_dir):
        return
    stop_containers(lxd_dir)
    states = [lxd_dir] + [d.rstrip("/") for d in glob.glob(os.path.join(lxd_dir, "*", ""))]
    for state in states:
        _kill_pidfiles(os.path.join(state, "networks", "*", "dnsmasq.pid"))
        for bridge in managed_networks(state) if bridges else []:
            nat.remove(bridge)
            if os.path.exists(f"/sys/class/net/{bridge}"):
                subprocess.run(["ip", "link", "del", bridge], capture_output=True,
                               check=False)
    for target in sorted(mounts_below(lxd_dir), key=len, reverse=True):
        subprocess.run(["umount", "-l", target], capture_output=True, check=False)
    from runtime.instances import cgroups, lxc
    cgroups.remove_stale(*(parent for state in states
                           for parent in lxc.daemon_cgroup_dirs(state)))
    shutil.rmtree(lxd_dir, ignore_errors=True)
