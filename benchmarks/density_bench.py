#!/usr/bin/env python3
"""Density on one host: 1,000 running busybox containers on one runtime daemon.

Unprivileged, each with a bridged nic on a managed bridge, dir pool. Prints:
- host memory overhead beyond the containers' own processes: the drop of
  MemAvailable from the idle daemon to N running containers, minus the PSS of
  every container's own processes (init and what it runs); what is left is the
  daemon's growth, liblxc's monitors, and kernel memory (netdevs, cgroups,
  mounts, page tables). Target: under 1.5 GB for 1,000.
- `GET /1.0/instances?recursion=1` p50 (target < 100 ms) and `recursion=2` p50;
- the launch (create + start) of the N+1st against the launch on an empty host
  (medians of 5; target: within 1.5x);
- a daemon restart adopting all N (SIGTERM, start, until every instance reads
  Running): target < 5 s, and no container restarted (same init pids);
- stop --force of all, then with all N stopped: mounts left (target 0: a stopped
  root is unmounted, as LXD does), memory freed, listing, the files API on a
  stopped instance, one start; then delete of all (--workers clients at once).
`--lxd-count 200` runs the same ramp on a private LXD 5.0.2 (Debian's `lxd`,
tests/functional/runtime/lxd_daemon.py) for the ratio, and our runtime is measured
at that count on its way up.

    flock -o /var/lock/nlx-functional.lock .venv/bin/python benchmarks/density_bench.py \\
        [--count 1000] [--lxd-count 200] [--json out.json]

It takes the machine for several minutes: run it under the functional-test lock.
Everything it makes lives in its own state directories under /var/tmp and its
`dens-*` bridges, and is removed at the end, even on failure.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import signal
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, REPO)

import memory  # noqa: E402
from rawclient import Client  # noqa: E402
from runtime_bench import RuntimeProcess, build_image  # noqa: E402
from targets import ApiTarget  # noqa: E402

from tools import statedir  # noqa: E402
from runtime.instances import lxc  # noqa: E402


def ms(t0: float) -> float:
    return (time.perf_counter() - t0) * 1000


def p50(xs: list[float]) -> float:
    return round(statistics.median(xs), 1)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


class Ramp:
    """Launch, measure and tear down many containers on one LXD-API daemon."""

    def __init__(self, target: ApiTarget, daemon_pid: int, lxcpath: str | None):
        self.t = target
        self.daemon_pid = daemon_pid
        self.lxcpath = lxcpath
        self.names: list[str] = []
        self.launch_ms: list[float] = []
        self.split: list[tuple[float, float]] = []   # (create, start) of each launch
        self.out: dict = {}

    def launch(self, name: str) -> float:
        t0 = time.perf_counter()
        self.t.create(name)
        t1 = time.perf_counter()
        self.t.start(name)
        took = ms(t0)
        self.names.append(name)
        self.launch_ms.append(took)
        self.split.append(((t1 - t0) * 1000, ms(t1)))
        return took

    def warm_up(self) -> None:
        """The first launch unpacks the image: not what 'empty host' means."""
        name = f"{self.t.prefix}-warm"
        self.t.create(name)
        self.t.start(name)
        self.t.stop_force(name)
        self.t.delete(name)

    def list_p50(self, recursion: int, reps: int) -> float:
        c = Client(self.t.socket_path, timeout=600)
        try:
            times = []
            for _ in range(reps):
                t0 = time.perf_counter()
                c.request("GET", f"/1.0/instances?recursion={recursion}")
                times.append(ms(t0))
            return p50(times)
        finally:
            c.close()

    def memory_now(self) -> dict:
        """MemAvailable and the PSS of the containers' own processes and monitors."""
        kids = memory.children_map()
        inside = monitors = 0
        # Our containers' inits straight from /proc; LXD's (own monitor) through its API.
        inits = lxc.running_inits(self.lxcpath) if self.lxcpath else {}
        for name in self.names:
            pid = inits.get(name) or self.t.init_pid(name)
            c, m = memory.container_pss_kb(pid, self.daemon_pid, kids)
            inside += c
            monitors += m
        return {"avail_kb": memory.mem_available_kb(), "inside_kb": inside,
                "monitors_kb": monitors,
                "daemon_rss_kb": memory.rss_kb(self.daemon_pid) if self.daemon_pid else 0}

    def each(self, workers: int, *actions: str) -> float:
        """Apply ApiTarget methods (by name) to every container, workers clients at
        once; seconds taken."""
        def one(batch: list[str]) -> None:
            t = ApiTarget(self.t.key, self.t.title, self.t.socket_path, self.t.prefix)
            for name in batch:
                for action in actions:
                    getattr(t, action)(name)
            t.client.close()
        batches = [self.names[i::workers] for i in range(workers)]
        t0 = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(workers) as pool:
            list(pool.map(one, batches))
        return time.perf_counter() - t0

    def teardown(self, workers: int) -> float:
        took = self.each(workers, "stop_force", "delete")
        self.names = []
        return took

    def stopped_phase(self, workers: int, lxd_dir: str, reps: int) -> dict:
        """Stop every container, then measure the host with all of them stopped:
        mounts left (LXD unmounts a stopped instance's root, so do we), memory,
        listing, the files API on a stopped instance, one start and stop again."""
        avail_running = memory.mem_available_kb()
        stop_s = self.each(workers, "stop_force")
        time.sleep(3)
        c = Client(self.t.socket_path, timeout=600)
        try:
            files = []
            for name in self.names[:reps]:
                t0 = time.perf_counter()
                status, _, body = c.raw("GET", f"/1.0/instances/{name}/files?path=/etc/hostname")
                files.append(ms(t0))
                if status != 200:
                    raise RuntimeError(f"file GET on stopped {name}: {status} {body[:200]!r}")
        finally:
            c.close()
        name = self.names[len(self.names) // 2]
        t0 = time.perf_counter()
        self.t.start(name)
        start_one = ms(t0)
        self.t.stop_force(name)
        return {"stop_all_s": round(stop_s, 1),
                "stopped_mounts": len(statedir.mounts_below(lxd_dir)),
                "stopped_freed_mb": round((memory.mem_available_kb() - avail_running) / 1024),
                "stopped_daemon_rss_mb": round(memory.rss_kb(self.daemon_pid) / 1024, 1),
                "stopped_list_r1_p50_ms": self.list_p50(1, reps),
                "stopped_file_get_p50_ms": p50(files),
                "stopped_start_one_ms": round(start_one, 1)}


KERNEL_FIELDS = ("Slab", "SUnreclaim", "PageTables", "KernelStack", "Percpu", "Shmem")


def meminfo() -> dict[str, int]:
    """/proc/meminfo in kB: where kernel memory per container goes."""
    out = {}
    with open("/proc/meminfo") as f:
        for line in f:
            key, _, rest = line.partition(":")
            out[key] = int(rest.split()[0])
    return out


def ramp(r: Ramp, count: int, checkpoints: dict[int, dict], reps: int) -> None:
    """Launch up to count containers, measuring at each checkpoint count."""
    avail0 = memory.mem_available_kb()
    info0 = meminfo()
    while len(r.names) < count:
        r.launch(f"{r.t.prefix}-{len(r.names):04d}")
        n = len(r.names)
        if n % 100 == 0:
            log(f"{r.t.key}: {n} running, last launch {r.launch_ms[-1]:.0f} ms")
        if n in checkpoints:
            time.sleep(5)  # let the inits finish their boot scripts
            mem = r.memory_now()
            drop = avail0 - mem["avail_kb"]
            checkpoints[n].update({
                "mem_drop_mb": round(drop / 1024),
                "containers_pss_mb": round(mem["inside_kb"] / 1024),
                "monitors_pss_mb": round(mem["monitors_kb"] / 1024),
                "overhead_mb": round((drop - mem["inside_kb"]) / 1024),
                "daemon_rss_mb": round(mem["daemon_rss_kb"] / 1024, 1),
                "kernel_delta_mb": {k: round((v - info0.get(k, 0)) / 1024) for k, v in
                                    meminfo().items() if k in KERNEL_FIELDS},
                "list_r1_p50_ms": r.list_p50(1, reps),
                "list_r2_p50_ms": r.list_p50(2, max(3, reps // 4)),
            })
            log(f"{r.t.key} at {n}: {checkpoints[n]}")


def restart_runtime(rt: RuntimeProcess, count: int) -> tuple[RuntimeProcess, dict]:
    """SIGTERM the daemon, start it again; time until all count read Running."""
    lxcpath = os.path.join(rt.dir, "containers")
    before = lxc.running_inits(lxcpath)
    rt.stop()
    binary = os.path.join(REPO, ".venv/bin/nova-lxd-runtime")
    t0 = time.perf_counter()
    new = RuntimeProcess(binary, rt.dir, label="density")
    socket_ms = new.ready(60)
    c = Client(new.socket, timeout=600)
    try:
        while True:
            items = c.request("GET", "/1.0/instances?recursion=1")["metadata"]
            running = sum(1 for i in items if i["status"] == "Running")
            if running >= count or time.perf_counter() - t0 > 120:
                break
            time.sleep(0.05)
    finally:
        c.close()
    adopted_s = time.perf_counter() - t0
    after = lxc.running_inits(lxcpath)
    same = sum(1 for k, v in before.items() if after.get(k) == v)
    return new, {"restart_adopt_s": round(adopted_s, 2),
                 "restart_socket_ms": round(socket_ms),
                 "restart_running": running, "restart_same_init": same,
                 "restart_before": len(before)}


def run_runtime(args, results: dict) -> None:
    binary = os.path.join(REPO, ".venv/bin/nova-lxd-runtime")
    rt = RuntimeProcess(binary, None, label="density")
    lxd_dir = rt.dir
    t = None
    try:
        rt.ready(30)
        time.sleep(1)
        t = ApiTarget("runtime", "runtime (dir)", rt.socket, "dens-r")
        t.ensure_image(build_image(None))
        t.ensure_profile("dens-br0", "10.252.0.1/21")
        r = Ramp(t, rt.proc.pid, os.path.join(lxd_dir, "containers"))
        r.warm_up()
        checkpoints = {n: {} for n in sorted({args.lxd_count, args.count}) if n}
        ramp(r, args.count, checkpoints, args.reps)
        empty = r.launch_ms[:5]
        extra = [r.launch(f"dens-r-x{i}") for i in range(5)]
        results["runtime"] = {
            "count": args.count, "checkpoints": checkpoints,
            "launch_empty_p50_ms": p50(empty), "launch_next_ms": round(extra[0], 1),
            "launch_next_p50_ms": p50(extra),
            "launch_ratio": round(statistics.median(extra) / statistics.median(empty), 2),
            "launch_all_p50_ms": p50(r.launch_ms),
            "create_start_empty_ms": [p50([c for c, _ in r.split[:5]]),
                                      p50([s for _, s in r.split[:5]])],
            "create_start_next_ms": [p50([c for c, _ in r.split[-5:]]),
                                     p50([s for _, s in r.split[-5:]])],
            "mounts": len(statedir.mounts_below(lxd_dir)),
        }
        log(f"launch: empty {p50(empty)} ms, #{args.count + 1} {extra[0]:.0f} ms "
            f"(p50 of 5: {p50(extra)} ms)")
        rt, restart = restart_runtime(rt, len(r.names))
        results["runtime"].update(restart)
        log(f"restart: {restart}")
        r.daemon_pid = rt.proc.pid
        r.t = t = ApiTarget("runtime", "runtime (dir)", rt.socket, "dens-r")
        t.profiles = ["dens-r-profile"]
        n = len(r.names)
        stopped = r.stopped_phase(args.workers, lxd_dir, args.reps)
        results["runtime"].update(stopped)
        log(f"{n} stopped: {stopped}")
        delete_s = r.each(args.workers, "delete")
        r.names = []
        results["runtime"]["delete_all_s"] = round(delete_s, 1)
        results["runtime"]["stop_delete_all_s"] = round(stopped["stop_all_s"] + delete_s, 1)
        results["runtime"]["stop_delete_each_ms"] = round(
            results["runtime"]["stop_delete_all_s"] * 1000 / n * args.workers, 1)
        log(f"stop+delete of {n}: {results['runtime']['stop_delete_all_s']} s")
        t.created_profile, t.created_network = "dens-r-profile", "dens-br0"
        t.teardown()
    finally:
        rt.stop()
        statedir.wipe(lxd_dir)


def private_lxd(prefix: str, results: dict):
    """A private LXD 5.0.2 (tests/functional/runtime/lxd_daemon.py) on a free loopback
    port, started; None (and results["lxd"] saying why) when it cannot start."""
    sys.path.insert(0, os.path.join(REPO, "tests", "functional", "runtime"))
    from lxd_daemon import LxdDaemon
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    d = LxdDaemon(port=port, prefix=prefix)
    try:
        d.start()
    except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
        results["lxd"] = {"error": f"LXD 5.0.2 did not start: {exc}"}
        return None
    return d


def run_lxd(args, results: dict) -> None:
    d = private_lxd("dens-lxd-", results)
    if d is None:
        return
    try:
        t = ApiTarget("lxd", "LXD 5.0.2", d.socket, "dens-x")
        t.ensure_image(build_image(None))
        t.ensure_profile("dens-br1", "10.253.0.1/22")
        r = Ramp(t, d.proc.pid, None)
        r.warm_up()
        checkpoints = {args.lxd_count: {}}
        ramp(r, args.lxd_count, checkpoints, args.reps)
        empty = r.launch_ms[:5]
        extra = [r.launch(f"dens-x-x{i}") for i in range(5)]
        results["lxd"] = {"count": args.lxd_count, "checkpoints": checkpoints,
                          "launch_empty_p50_ms": p50(empty), "launch_next_p50_ms": p50(extra),
                          "launch_all_p50_ms": p50(r.launch_ms)}
        results["lxd"]["stop_delete_all_s"] = round(r.teardown(args.workers), 1)
        t.teardown()
    finally:
        d.stop()


def report(results: dict, args) -> None:
    ours = results.get("runtime", {})
    at = ours.get("checkpoints", {}).get(args.count, {})
    print("\n== density: runtime, %d running busybox containers (unprivileged, bridged nic, "
          "dir pool) ==" % args.count)
    rows = [
        ("host memory overhead beyond containers", f"{at.get('overhead_mb')} MB",
         "< 1536 MB", at.get("overhead_mb") is not None and at["overhead_mb"] < 1536),
        ("  MemAvailable drop / containers' PSS / monitors' PSS",
         f"{at.get('mem_drop_mb')} / {at.get('containers_pss_mb')} / "
         f"{at.get('monitors_pss_mb')} MB", "", None),
        ("  daemon RSS", f"{at.get('daemon_rss_mb')} MB", "", None),
        ("GET /1.0/instances?recursion=1 p50", f"{at.get('list_r1_p50_ms')} ms", "< 100 ms",
         (at.get("list_r1_p50_ms") or 1e9) < 100),
        ("GET /1.0/instances?recursion=2 p50", f"{at.get('list_r2_p50_ms')} ms", "report",
         None),
        (f"launch #{args.count + 1} (p50 of 5) vs empty host",
         f"{ours.get('launch_next_p50_ms')} vs {ours.get('launch_empty_p50_ms')} ms "
         f"= {ours.get('launch_ratio')}x", "<= 1.5x", (ours.get("launch_ratio") or 99) <= 1.5),
        ("daemon restart, all adopted", f"{ours.get('restart_adopt_s')} s "
         f"({ours.get('restart_same_init')}/{ours.get('restart_before')} same init pid)",
         "< 5 s, none restarted",
         (ours.get("restart_adopt_s") or 99) < 5 and
         ours.get("restart_same_init") == ours.get("restart_before")),
        (f"{args.count} stopped: mounts left under the daemon's directory",
         f"{ours.get('stopped_mounts')}", "0 (LXD unmounts stopped roots)",
         ours.get("stopped_mounts") == 0),
        ("  memory freed by stopping them all / daemon RSS",
         f"{ours.get('stopped_freed_mb')} MB / {ours.get('stopped_daemon_rss_mb')} MB", "",
         None),
        ("  list recursion=1 p50 / file GET on a stopped one p50",
         f"{ours.get('stopped_list_r1_p50_ms')} / {ours.get('stopped_file_get_p50_ms')} ms",
         "", None),
        ("  start of one stopped among them", f"{ours.get('stopped_start_one_ms')} ms", "",
         None),
        (f"stop --force of all, then delete of all ({args.workers} clients)",
         f"{ours.get('stop_all_s')} + {ours.get('delete_all_s')} s", "bounded", None),
    ]
    for label, value, target, ok in rows:
        mark = "" if ok is None else ("  ok" if ok else "  MISSED")
        print(f"{label:<55} {value:<40} {target}{mark}")
    lxd = results.get("lxd")
    if lxd and "error" not in lxd:
        ours_at = ours.get("checkpoints", {}).get(args.lxd_count, {})
        theirs = lxd["checkpoints"][args.lxd_count]
        print(f"\n== same run at {args.lxd_count} containers: runtime vs LXD 5.0.2 ==")
        for key, label in (("overhead_mb", "memory overhead beyond containers (MB)"),
                           ("monitors_pss_mb", "monitors' PSS (MB)"),
                           ("daemon_rss_mb", "daemon RSS (MB)"),
                           ("list_r1_p50_ms", "list recursion=1 p50 (ms)"),
                           ("list_r2_p50_ms", "list recursion=2 p50 (ms)")):
            a, b = ours_at.get(key), theirs.get(key)
            ratio = f"{b / a:.1f}x" if a and b else ""
            print(f"{label:<45} {a!s:>10} {b!s:>10}  LXD/runtime {ratio}")
        print(f"{'launch p50 over the ramp (ms)':<45} {ours.get('launch_all_p50_ms')!s:>10} "
              f"{lxd.get('launch_all_p50_ms')!s:>10}")
    elif lxd:
        print(f"\nLXD: {lxd['error']}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--count", type=int, default=1000)
    p.add_argument("--lxd-count", type=int, default=200,
                   help="containers on LXD 5.0.2 for the ratio (0: skip LXD)")
    p.add_argument("--reps", type=int, default=20, help="list requests per p50")
    p.add_argument("--workers", type=int, default=4, help="clients for stop + delete")
    p.add_argument("--json", help="write the results here")
    args = p.parse_args(argv)
    if os.geteuid() != 0:
        sys.exit("run as root (it starts containers)")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    results: dict = {}
    try:
        run_runtime(args, results)
        if args.lxd_count:
            run_lxd(args, results)
    finally:
        if args.json:
            with open(args.json, "w") as f:
                json.dump(results, f, indent=1)
        report(results, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
