#!/usr/bin/env python3
"""Snapshot, restore, copy and publish: our runtime vs Debian's LXD 5.0.2, same run.

Rows (medians, milliseconds, client-side wall clock until the operation is done):
snapshot and restore of a stopped and of a running busybox container (restore of a
running one includes its stop and start), copy of a stopped container (without
snapshots), publish of a stopped and of a running container. Both daemons use a
profile with only a root disk (no nic), so the figures compare storage work.

    .venv/bin/python benchmarks/snapshot_bench.py --start-runtime [--btrfs] \\
        [--compare-lxd] [--reps 10]

`--btrfs` adds a column for our runtime on a btrfs pool (a loop file it makes).
LXD is used only if it already answers on --lxd-socket (benchmarks/lxd_baseline.sh
starts it) and has a `dir` pool (bench-dir by default). Every instance is named
snp-b*, every profile snp-bench*, and all are removed at the end, even on failure.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)

from rawclient import ApiError  # noqa: E402
from runtime_bench import RuntimeProcess  # noqa: E402
from targets import ApiTarget  # noqa: E402

# LXD 5.0.2 on this machine (doc DESIGN.md section 4 and issue 3); targets are half.
LXD_REFERENCE = {"snapshot_stopped": 121, "restore_stopped": 81, "copy_stopped": 431}
NOTES: list[str] = []
ROWS = ["snapshot_stopped", "restore_stopped", "snapshot_running", "restore_running",
        "copy_stopped", "publish_stopped", "publish_running"]


def ensure_profile(t: ApiTarget, name: str, pool: str) -> None:
    body = {"name": name, "description": "snapshot benchmark: root disk only",
            "config": {}, "devices": {"root": {"type": "disk", "path": "/", "pool": pool}}}
    try:
        t.client.request("GET", f"/1.0/profiles/{name}")
        t.client.request("PUT", f"/1.0/profiles/{name}", body)
    except ApiError as e:
        if e.status != 404:
            raise
        t.client.request("POST", "/1.0/profiles", body)
    t.profiles = [name]


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1000


def publish_once(t: ApiTarget, name: str) -> float:
    t0 = time.perf_counter()
    fp = t.publish(name)
    ms = (time.perf_counter() - t0) * 1000
    t.delete_image(fp)
    return ms


def measure(t: ApiTarget, reps: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {k: [] for k in ROWS}
    name = f"{t.prefix}-src"
    made = [name]
    try:
        t.force_remove(name)
        t.create(name)
        t.start(name)
        t.client.call("POST", f"/1.0/instances/{name}/exec", {
            "command": ["sh", "-c", "echo data > /root/f"], "record-output": True,
            "wait-for-websocket": False, "interactive": False})
        t.stop_force(name)
        for i in range(reps):
            out["snapshot_stopped"].append(timed(lambda i=i: t.snapshot(name, f"s{i}")))
        for i in range(reps):
            out["restore_stopped"].append(timed(lambda i=i: t.restore(name, f"s{i}")))
        for i in range(reps):
            dst = f"{t.prefix}-c{i}"
            made.append(dst)
            out["copy_stopped"].append(timed(lambda dst=dst: t.copy(name, dst)))
            t.force_remove(dst)
        for _ in range(max(2, reps // 3)):
            out["publish_stopped"].append(publish_once(t, name))
        t.start(name)
        for i in range(reps):
            out["snapshot_running"].append(timed(lambda i=i: t.snapshot(name, f"r{i}")))
        for i in range(reps):
            out["restore_running"].append(timed(lambda i=i: t.restore(name, f"r{i}")))
        try:
            for _ in range(max(2, reps // 3)):
                out["publish_running"].append(publish_once(t, name))
        except ApiError as e:  # LXD refuses: "Cannot export a running instance"
            NOTES.append(f"{t.title}: publish_running n/a ({e.message})")
            out["publish_running"] = []
    finally:
        for n in made:
            t.force_remove(n)
    return out


def render(results: dict[str, dict[str, list[float]]]) -> str:
    cols = list(results)
    lines = ["| operation | " + " | ".join(cols) + " | "
             + " | ".join(f"{c} / lxd" for c in cols if c != "lxd") + " | target |",
             "|---" * (2 + len(cols) + sum(c != "lxd" for c in cols)) + "|"]
    for row in ROWS:
        med = {c: statistics.median(results[c][row]) if results[c].get(row) else None
               for c in cols}
        cells = [f"{med[c]:.1f}" if med[c] is not None else "n/a" for c in cols]
        lxd = med.get("lxd")
        ratios = [f"{med[c] / lxd:.2f}" if lxd and med[c] else "-" for c in cols
                  if c != "lxd"]
        ref = LXD_REFERENCE.get(row)
        target = f"<= {ref / 2:.0f} ms (LXD ref {ref})" if ref else "<= 0.5 x LXD"
        lines.append(f"| {row} | " + " | ".join(cells) + " | " + " | ".join(ratios)
                     + f" | {target} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--start-runtime", action="store_true",
                   help="start our runtime on a temporary LXD_DIR (default if no socket)")
    p.add_argument("--runtime-socket", help="use an already running runtime")
    p.add_argument("--btrfs", action="store_true", help="also measure a btrfs pool")
    p.add_argument("--compare-lxd", action="store_true")
    p.add_argument("--lxd-socket", default="/var/lib/lxd/unix.socket")
    p.add_argument("--lxd-pool", default="bench-dir")
    p.add_argument("--reps", type=int, default=10)
    p.add_argument("--image", default=os.path.join(REPO, ".cache/images/busybox.tar.xz"))
    args = p.parse_args(argv)

    rt = None
    targets: list[tuple[str, ApiTarget, str]] = []
    cleanup: list = []
    try:
        sock = args.runtime_socket
        if not sock:
            rt = RuntimeProcess(os.path.join(REPO, ".venv/bin/nova-lxd-runtime"), None,
                                "snapshots")
            rt.ready(20)
            sock = rt.socket
        ours = ApiTarget("runtime", "runtime (dir)", sock, "snp-bd")
        ours.ensure_image(args.image)
        targets.append(("runtime", ours, "default"))
        if args.btrfs:
            bt = ApiTarget("runtime-btrfs", "runtime (btrfs)", sock, "snp-bb")
            try:
                bt.client.request("POST", "/1.0/storage-pools", {
                    "name": "snp-bench-bt", "driver": "btrfs", "config": {"size": "2GiB"}})
                cleanup.append(lambda: bt.client.request(
                    "DELETE", "/1.0/storage-pools/snp-bench-bt"))
            except ApiError as e:
                if e.status != 409:
                    raise
            targets.append(("btrfs", bt, "snp-bench-bt"))
        if args.compare_lxd:
            if not os.path.exists(args.lxd_socket):
                print(f"LXD not running at {args.lxd_socket}: run benchmarks/lxd_baseline.sh",
                      file=sys.stderr)
                return 2
            lxd = ApiTarget("lxd", "LXD 5.0.2", args.lxd_socket, "snp-bx")
            lxd.ensure_image(args.image)
            targets.append(("lxd", lxd, args.lxd_pool))
        results: dict[str, dict[str, list[float]]] = {}
        for key, t, pool in targets:
            profile = f"snp-bench-{key}"
            ensure_profile(t, profile, pool)
            cleanup.insert(0, lambda t=t, profile=profile: t.client.request(
                "DELETE", f"/1.0/profiles/{profile}"))
        # phase by phase would interleave; per target is fine: nothing else runs here
        for key, t, _pool in targets:
            results[key] = measure(t, args.reps)
        print(render(results))
        for note in NOTES:
            print(f"- {note}")
        return 0
    finally:
        for fn in cleanup:
            try:
                fn()
            except (ApiError, OSError) as e:
                print(f"cleanup: {e}", file=sys.stderr)
        if rt:
            rt.remove()


if __name__ == "__main__":
    sys.exit(main())
