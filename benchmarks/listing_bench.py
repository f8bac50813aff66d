#!/usr/bin/env python3
"""Listing at density: `GET /1.0/instances?recursion=1`, `?recursion=2` (what the stock
`lxc list` asks for its default columns) and one instance's `/state`, with N running
busybox containers (unprivileged, bridged nic, dir pool) on our runtime and on Debian's
LXD 5.0.2, in the same run; p50 and p95 of each, and the LXD/runtime ratios.

It also compares one running instance's state field by field between the two daemons
(keys, types, enumerations such as address scope or interface type, and which
numbers are zero), so a faster answer that reads differently shows up here.

`--baseline-src DIR` adds a third column: our runtime started from another source
tree (e.g. `git archive main | tar -x -C DIR`), for a same-run before/after.

    flock -o /var/lock/nlx-functional.lock .venv/bin/python benchmarks/listing_bench.py \\
        [--count 200] [--lxd-count N] [--baseline-src DIR] [--json out.json]

Everything lives in its own state directories under /var/tmp and its `lst-*` bridges,
and is removed at the end, even on failure.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, REPO)

from density_bench import Ramp, private_lxd  # noqa: E402
from rawclient import Client  # noqa: E402
from runtime_bench import RuntimeProcess, build_image  # noqa: E402
from targets import ApiTarget  # noqa: E402

from tools import statedir  # noqa: E402


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return round(xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))], 1)


def timed(sock: str, paths: list[str]) -> dict:
    """GET each path once on one kept-alive connection; p50/p95 in ms."""
    c = Client(sock, timeout=600)
    try:
        c.request("GET", paths[0])  # connection and caches warm, not counted
        times = []
        for path in paths:
            t0 = time.perf_counter()
            c.request("GET", path)
            times.append((time.perf_counter() - t0) * 1000)
    finally:
        c.close()
    return {"p50": round(statistics.median(times), 1), "p95": pct(times, 0.95),
            "n": len(times)}


def measure(t: ApiTarget, names: list[str], args) -> dict:
    out = {"r1": timed(t.socket_path, ["/1.0/instances?recursion=1"] * args.reps),
           "r2": timed(t.socket_path, ["/1.0/instances?recursion=2"] * args.reps2),
           "state": timed(t.socket_path, [f"/1.0/instances/{names[i % len(names)]}/state"
                                          for i in range(args.state_reps)])}
    c = Client(t.socket_path, timeout=600)
    try:
        name = names[len(names) // 2]
        out["sample_state"] = c.request("GET", f"/1.0/instances/{name}/state")["metadata"]
        items = c.request("GET", "/1.0/instances?recursion=2")["metadata"]
        out["listed"] = len(items)
        out["listed_running"] = sum(1 for i in items if i["status"] == "Running")
        out["sample_listed"] = next(i["state"] for i in items if i["name"] == name)
    finally:
        c.close()
    return out


def ramp_and_measure(t: ApiTarget, pid: int, count: int, args, key: str) -> dict:
    r = Ramp(t, pid, None)
    try:
        r.warm_up()
        t0 = time.perf_counter()
        while len(r.names) < count:
            r.launch(f"{t.prefix}-{len(r.names):04d}")
        log(f"{key}: {count} running after {time.perf_counter() - t0:.0f} s")
        time.sleep(5)  # the inits' boot scripts settle
        res = measure(t, r.names, args)
        log(f"{key}: r1 {res['r1']} r2 {res['r2']} state {res['state']}")
        return res
    finally:
        r.teardown(4)
        t.teardown()


def target(key: str, sock: str, prefix: str, bridge: str, subnet: str) -> ApiTarget:
    """A daemon with the busybox image and a profile putting eth0 on its own bridge."""
    t = ApiTarget(key, key, sock, prefix)
    t.ensure_image(build_image(None))
    t.ensure_profile(bridge, subnet)
    return t


def run_runtime(binary: str, key: str, args, results: dict, bridge: str, subnet: str,
                prefix: str) -> None:
    rt = RuntimeProcess(binary, None, label=f"listing-{key}")
    try:
        rt.ready(60)
        t = target(key, rt.socket, prefix, bridge, subnet)
        results[key] = ramp_and_measure(t, rt.proc.pid, args.count, args, key)
    finally:
        rt.stop()
        statedir.wipe(rt.dir)


def baseline_binary(src: str) -> str:
    """A launcher that runs the daemon from another source tree with this venv."""
    fd, path = tempfile.mkstemp(prefix="listing-baseline-", suffix=".sh", dir="/var/tmp")
    with os.fdopen(fd, "w") as f:
        f.write(f"#!/bin/sh\ncd {src} && exec {sys.executable} -m runtime.daemon \"$@\"\n")
    os.chmod(path, 0o755)
    return path


def run_lxd(args, results: dict) -> None:
    d = private_lxd("lst-lxd-", results)
    if d is None:
        return
    try:
        results["lxd"] = ramp_and_measure(target("lxd", d.socket, "lst-x", "lst-br1",
                                                 "10.249.0.1/22"),
                                          d.proc.pid, args.lxd_count, args, "lxd")
    finally:
        d.stop()


# Field-by-field comparison ------------------------------------------------------------
ENUMS = {"status", "status_code", "family", "scope", "state", "type", "netmask", "mtu"}


def describe(value, path: str = "", out: dict | None = None) -> dict:
    """Flatten a state into path -> comparable descriptor: key sets, types, enumerated
    values as they are, numbers as zero / positive, strings as empty / set."""
    out = {} if out is None else out
    if isinstance(value, dict):
        for k, v in value.items():
            describe(v, f"{path}.{k}" if path else k, out)
        if not value:
            out[path] = "{}"
    elif isinstance(value, list):
        if path.endswith("addresses"):  # compare addresses by family/scope, not order
            for a in value:
                out[f"{path}[{a.get('family')}/{a.get('scope')}]"] = (
                    f"netmask={a.get('netmask')}")
        else:
            out[path] = f"list[{len(value)}]"
    elif path.rsplit(".", 1)[-1] in ENUMS:
        out[path] = repr(value)
    elif isinstance(value, bool) or value is None:
        out[path] = repr(value)
    elif isinstance(value, int | float):
        out[path] = "number>0" if value > 0 else ("0" if value == 0 else "negative")
    elif isinstance(value, str):
        out[path] = "str" if value else "''"
    else:
        out[path] = type(value).__name__
    return out


def compare(ours: dict, lxd: dict, label: str) -> list[str]:
    a, b = describe(ours), describe(lxd)
    lines = []
    for path in sorted(set(a) | set(b)):
        if path in ("pid",):
            continue
        if a.get(path) != b.get(path):
            lines.append(f"  {path:<52} {label} {a.get(path, '-')!s:<16} LXD {b.get(path, '-')}")
    return lines


def report(results: dict, args) -> None:
    cols = [k for k in ("runtime", "baseline", "lxd") if k in results and
            "error" not in results[k]]
    print(f"\n== listing with {args.count} running busybox containers (LXD: "
          f"{args.lxd_count}); ms, p50 / p95 ==")
    print(f"{'request':<34}" + "".join(f"{c:>22}" for c in cols) +
          ("   LXD/runtime (p50)" if "lxd" in cols else ""))
    for key, label in (("r1", "GET /1.0/instances?recursion=1"),
                       ("r2", "GET /1.0/instances?recursion=2"),
                       ("state", "GET /1.0/instances/<name>/state")):
        row = f"{label:<34}"
        for c in cols:
            m = results[c][key]
            row += f"{m['p50']:>13} / {m['p95']:<6}"
        if "lxd" in cols and "runtime" in cols:
            row += f"   {results['lxd'][key]['p50'] / results['runtime'][key]['p50']:.2f}x"
        if "baseline" in cols and "runtime" in cols:
            row += (f"   baseline/runtime "
                    f"{results['baseline'][key]['p50'] / results['runtime'][key]['p50']:.2f}x")
        print(row)
    for c in cols:
        print(f"{c}: listed {results[c]['listed']}, running {results[c]['listed_running']}")
    for k in cols:
        if k != "lxd" and "lxd" in cols:
            print(f"\n== /state of one running instance, {k} vs LXD 5.0.2 (differences) ==")
            print("\n".join(compare(results[k]["sample_state"],
                                    results["lxd"]["sample_state"], k)) or "  none")
            print(f"-- same, from the recursion=2 listing ({k} vs LXD) --")
            print("\n".join(compare(results[k]["sample_listed"],
                                    results["lxd"]["sample_listed"], k)) or "  none")
    for k, v in results.items():
        if "error" in v:
            print(f"{k}: {v['error']}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--count", type=int, default=200)
    p.add_argument("--lxd-count", type=int, help="containers on LXD (default --count; "
                   "0 skips LXD)")
    p.add_argument("--baseline-src", help="also run our runtime from this source tree")
    p.add_argument("--reps", type=int, default=30, help="recursion=1 requests")
    p.add_argument("--reps2", type=int, default=10, help="recursion=2 requests")
    p.add_argument("--state-reps", type=int, default=100, help="/state requests")
    p.add_argument("--json", help="write the results here")
    args = p.parse_args(argv)
    if args.lxd_count is None:
        args.lxd_count = args.count
    if os.geteuid() != 0:
        sys.exit("run as root (it starts containers)")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    results: dict = {}
    launcher = None
    try:
        run_runtime(os.path.join(REPO, ".venv/bin/nova-lxd-runtime"), "runtime", args,
                    results, "lst-br0", "10.248.0.1/22", "lst-r")
        if args.baseline_src:
            launcher = baseline_binary(os.path.abspath(args.baseline_src))
            run_runtime(launcher, "baseline", args, results, "lst-br2", "10.247.0.1/22",
                        "lst-b")
        if args.lxd_count:
            run_lxd(args, results)
    finally:
        if launcher:
            os.unlink(launcher)
        if args.json:
            with open(args.json, "w") as f:
                json.dump(results, f, indent=1)
        report(results, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
