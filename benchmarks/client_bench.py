#!/usr/bin/env python3
"""What the client costs: the one LXD client (runtime.client, pylxd over requests)
against the benchmarks' raw client (rawclient.py: one kept-alive http.client
connection, standard library only), on the same runtime, in the same run.

Why: the benchmarks time the daemon, so the client they use must add as little as
possible; everything else (driver, CLI, tests) uses the one client. This measures
whether keeping the raw client on the benchmarks' hot path is worth its code.
Calls are interleaved (raw, one client, raw, ...) so drift hits both alike.

    flock -o /var/lock/nlx-functional.lock .venv/bin/python benchmarks/client_bench.py
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path[:0] = [HERE, REPO]

import rawclient  # noqa: E402

from runtime.client import LXDAPI  # noqa: E402
from tests.functional.runtime.harness import RuntimeDaemon, import_busybox  # noqa: E402


def _ms(fn: Callable[[], object], reps: int) -> list[float]:
    out = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def run(reps: int) -> list[tuple[str, float, float]]:
    daemon = RuntimeDaemon(prefix="bench-client-").start()
    raw = rawclient.Client(daemon.socket)
    try:
        client = daemon.client()
        import_busybox(client)
        one = LXDAPI(client, op_timeout=60)
        name = "bench-client"
        one.create({"name": name, "source": {"type": "image", "alias": "busybox"}})
        one.action(name, "start")
        path = f"/1.0/instances/{name}/state"
        rows = {
            "GET /1.0": (raw.server, one.server),
            "GET instance state": (lambda: raw.request("GET", path), lambda: one.state(name)),
            "exec echo, record-output": (
                lambda: rawclient.exec_record(raw, name, ["echo", "hi"]),
                lambda: one.exec_record(name, ["echo", "hi"])),
            "freeze + unfreeze": (
                lambda: (raw.call("PUT", path, {"action": "freeze"}),
                         raw.call("PUT", path, {"action": "unfreeze"})),
                lambda: (one.action(name, "freeze"), one.action(name, "unfreeze"))),
        }
        assert one.exec_record(name, ["echo", "hi"])[:2] == (0, b"hi\n")
        results = []
        for label, (fast, ours) in rows.items():
            fast(), ours()  # warm both connections
            a: list[float] = []
            b: list[float] = []
            for _ in range(reps):
                a += _ms(fast, 1)
                b += _ms(ours, 1)
            results.append((label, statistics.median(a), statistics.median(b)))
        one.delete_instance(name)
        return results
    finally:
        raw.close()
        daemon.destroy()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-n", "--reps", type=int, default=200)
    args = p.parse_args(argv)
    results = run(args.reps)
    print(f"median of {args.reps}, ms | raw client | one client (pylxd) | extra")
    for label, fast, ours in results:
        print(f"{label:28} | {fast:8.2f} | {ours:8.2f} | +{ours - fast:.2f} "
              f"({ours / fast:.2f}x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
