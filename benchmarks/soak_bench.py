#!/usr/bin/env python3
"""Soak: create / start / exec / file push / stop / delete, over and over, on one daemon.

Each cycle launches a busybox container with a bridged nic, runs a command in it
(record-output exec), pushes a file and reads it back, stops it and deletes it.
Every --every cycles it samples the daemon: RSS, open file descriptors, and on
the host the mounts below its state directory, the cgroups under its cgroup
parents, the veths on its bridge and its liblxc monitors. It prints the curve and
checks, at the end:
- daemon RSS within --rss-slack MB (default 5) of its level after the first
  --settle cycles (default 100: caches, the template worker, first-use imports)
  and --settle-seconds (default 10: finished operations stay queryable for 5 s,
  as in LXD, so memory fills up to that window first);
- open fds, mounts, cgroups, veths and monitors back to their level before the
  first cycle.

    flock -o /var/lock/nlx-functional.lock .venv/bin/python benchmarks/soak_bench.py \\
        [--cycles 2000] [--every 50] [--max-seconds 3600]

tests/functional/runtime/test_soak.py runs a short version in CI.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, REPO)

import memory  # noqa: E402
from rawclient import Client, exec_record  # noqa: E402

from runtime import statedir  # noqa: E402
from runtime.instances import cgroups, lxc  # noqa: E402


def sample(pid: int, lxd_dir: str, bridge: str) -> dict:
    """What a leak would show: the daemon's memory and fds, the host's leftovers."""
    cgs = 0
    for root in cgroups.hierarchies():
        for parent in lxc.daemon_cgroup_dirs(lxd_dir):
            path = os.path.join(root, parent)
            if os.path.isdir(path):
                cgs += sum(1 for e in os.scandir(path) if e.is_dir())
    try:
        veths = len(os.listdir(f"/sys/class/net/{bridge}/brif"))
    except FileNotFoundError:
        veths = 0
    return {"rss_kb": memory.rss_kb(pid), "fds": len(os.listdir(f"/proc/{pid}/fd")),
            "mounts": len(statedir.mounts_below(lxd_dir)), "cgroups": cgs,
            "veths": veths, "monitors": len(statedir.monitors_below(lxd_dir))}


def cycle(c: Client, name: str, bridge: str) -> None:
    c.call("POST", "/1.0/instances", {
        "name": name, "source": {"type": "image", "alias": "busybox"},
        "devices": {"eth0": {"type": "nic", "nictype": "bridged", "parent": bridge}}})
    c.call("PUT", f"/1.0/instances/{name}/state", {"action": "start", "timeout": 30})
    rc, out, _err = exec_record(c, name, ["hostname"])
    if rc != 0 or out.strip() != name.encode():
        raise AssertionError(f"{name}: exec gave {rc} {out!r}")
    payload = os.urandom(4096)
    c.request("POST", f"/1.0/instances/{name}/files?path=/root/soak", payload,
              {"Content-Type": "application/octet-stream", "X-LXD-type": "file",
               "X-LXD-mode": "0600"})
    status, _, data = c.raw("GET", f"/1.0/instances/{name}/files?path=/root/soak")
    if status != 200 or data != payload:
        raise AssertionError(f"{name}: file read back {status}, {len(data)} bytes")
    c.call("PUT", f"/1.0/instances/{name}/state", {"action": "stop", "force": True,
                                                    "timeout": 30})
    c.call("DELETE", f"/1.0/instances/{name}")


def soak(socket: str, lxd_dir: str, pid: int, bridge: str, cycles: int, every: int,
         max_seconds: float, settle: int, out=print, settle_seconds: float = 0) -> dict:
    """Run the cycles; returns {"samples": [(cycle, sample)], "checks": {...}}."""
    c = Client(socket)
    # One cycle first: the baseline is the daemon at rest after first use (its
    # template worker started, this client's connection open), not before it.
    cycle(c, "soak-warm", bridge)
    base = sample(pid, lxd_dir, bridge)
    samples = [(0, base)]
    out(f"{'cycle':>6} {'s':>7} {'RSS MB':>7} {'fds':>5} {'mounts':>6} {'cgroups':>7} "
        f"{'veths':>5} {'monitors':>8}")

    def show(n: int, s: dict, t: float) -> None:
        out(f"{n:>6} {t:>7.1f} {s['rss_kb'] / 1024:>7.1f} {s['fds']:>5} {s['mounts']:>6} "
            f"{s['cgroups']:>7} {s['veths']:>5} {s['monitors']:>8}")
    show(0, base, 0.0)
    t0 = time.monotonic()
    done = 0
    settled = None
    try:
        for n in range(1, cycles + 1):
            cycle(c, f"soak-{n:05d}", bridge)
            done = n
            if settled is None and n >= settle and time.monotonic() - t0 >= settle_seconds:
                settled = sample(pid, lxd_dir, bridge)
                out(f"(reference for RSS: cycle {n}, {time.monotonic() - t0:.0f} s)")
            if n % every == 0 or n == cycles:
                s = sample(pid, lxd_dir, bridge)
                samples.append((n, s))
                show(n, s, time.monotonic() - t0)
            if time.monotonic() - t0 > max_seconds:
                out(f"stopping after {n} cycles: --max-seconds {max_seconds:.0f} reached")
                break
    finally:
        c.close()
    last = samples[-1][1] if samples[-1][0] == done else sample(pid, lxd_dir, bridge)
    ref = settled or samples[min(1, len(samples) - 1)][1]
    checks = {key: last[key] == base[key] for key in ("fds", "mounts", "cgroups", "veths",
                                                       "monitors")}
    checks["rss"] = (last["rss_kb"] - ref["rss_kb"]) / 1024
    return {"samples": samples, "checks": checks, "cycles": done, "base": base,
            "last": last, "seconds": time.monotonic() - t0}


def main(argv: list[str] | None = None) -> int:
    from runtime_bench import RuntimeProcess, build_image
    from targets import ApiTarget
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cycles", type=int, default=2000)
    p.add_argument("--every", type=int, default=50)
    p.add_argument("--settle", type=int, default=100)
    p.add_argument("--settle-seconds", type=float, default=10,
                   help="and not before this many seconds: finished operations stay "
                        "queryable for 5 s (runtime.operations.KEEP_FINISHED), so the "
                        "daemon's memory fills up to that window first; a leak grows on")
    p.add_argument("--rss-slack", type=float, default=5.0)
    p.add_argument("--max-seconds", type=float, default=3600)
    args = p.parse_args(argv)
    rt = RuntimeProcess(os.path.join(REPO, ".venv/bin/nova-lxd-runtime"), None, label="soak")
    try:
        rt.ready(30)
        t = ApiTarget("runtime", "runtime", rt.socket, "soak")
        t.image_alias = "busybox"
        t.ensure_image(build_image(None))
        bridge = "soak-br0"
        t.client.call("POST", "/1.0/networks", {"name": bridge, "config": {
            "ipv4.address": "10.254.0.1/24", "ipv4.dhcp": "false"}})
        result = soak(rt.socket, rt.dir, rt.proc.pid, bridge, args.cycles, args.every,
                      args.max_seconds, min(args.settle, args.cycles),
                      settle_seconds=args.settle_seconds)
        checks = result["checks"]
        print(f"\n{result['cycles']} cycles in {result['seconds']:.0f} s "
              f"({result['seconds'] * 1000 / max(result['cycles'], 1):.0f} ms each)")
        ok = abs(checks["rss"]) <= args.rss_slack
        print(f"daemon RSS from the reference point to the end: "
              f"{checks['rss']:+.1f} MB (limit {args.rss_slack} MB) {'ok' if ok else 'MISSED'}")
        for key in ("fds", "mounts", "cgroups", "veths", "monitors"):
            print(f"{key:<9} {result['base'][key]:>5} -> {result['last'][key]:>5} "
                  f"{'ok' if checks[key] else 'MISSED'}")
        t.client.call("DELETE", f"/1.0/networks/{bridge}")
        return 0 if ok and all(checks[k] for k in checks if k != "rss") else 1
    finally:
        rt.stop()
        statedir.wipe(rt.dir)


if __name__ == "__main__":
    sys.exit(main())
