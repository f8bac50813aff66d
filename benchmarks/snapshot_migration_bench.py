#!/usr/bin/env python3
"""Moving stopped instances that have snapshots between two daemons over TLS:
our runtime against LXD 5.0.2, in the same run, by snapshot count.

For each snapshot count N (--snapshots, default 0,1,5,20) and each daemon pair:
one stopped busybox instance on the source with N snapshots (a small file is
written through the files API before each snapshot, so every snapshot differs
from the last), then --reps times, each after a sync:
  copy  the target pulls the instance with its snapshots, as `lxc copy a:X b:Y`
        does (and pylxd's migrate() for a stopped instance): timed from the
        source's migration request until both operations are done
  move  the same copy, then the source instance is deleted, as `lxc move a:X b:`
        does; the moved instance is moved back (untimed) for the next rep
and one check per N that the copy arrived with all N snapshots.

Two runtime daemons are started on fresh LXD_DIRs (HTTPS on 127.0.0.1:8462/8463)
and removed afterwards. LXD: by default two private LXD 5.0.2 daemons started for
the run (tests/functional/runtime/lxd_daemon.py: own LXD_DIRs, offline, a dir pool,
HTTPS on loopback) and removed afterwards; with --shared-lxd the pair from
`benchmarks/lxd_baseline.sh up` and `... second` (/var/lib/lxd pulls from
/var/lib/bench-lxd2 at 127.0.0.1:8449). Both sides' instances have the root disk
only (no nic: a stopped move touches no network). Instances are named
bench-s*/bench-t*. The issue's target: with snapshots, at least 2.5x faster than LXD.
"""
from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from runtime_bench import REPO, RuntimeProcess, build_image  # noqa: E402
from targets import ApiTarget  # noqa: E402

sys.path.insert(0, REPO)

TARGET_RATIO = 2.5


def push_file(t: ApiTarget, name: str, path: str, data: bytes) -> None:
    t.client.call("POST", f"/1.0/instances/{name}/files?path={path}", data,
                  {"Content-Type": "application/octet-stream", "X-LXD-type": "file",
                   "X-LXD-mode": "0644", "X-LXD-uid": "0", "X-LXD-gid": "0"})


def snapshot_names(t: ApiTarget, name: str) -> list[str]:
    snaps = t.client.request("GET", f"/1.0/instances/{name}/snapshots")["metadata"]
    return sorted(s.rsplit("/", 1)[-1] for s in snaps)


class Pair:
    def __init__(self, key: str, src: ApiTarget, dst: ApiTarget, src_url: str,
                 dst_url: str, dst_profiles: list[str] | None = None,
                 src_profiles: list[str] | None = None):
        self.key, self.src, self.dst = key, src, dst
        self.src_url, self.dst_url = src_url, dst_url
        # profiles of a copy on the other side (LXD's and ours differ)
        self.profiles = {id(dst): dst_profiles, id(src): src_profiles}
        self.made: set[tuple[ApiTarget, str]] = set()

    def cleanup(self) -> None:
        for t, name in self.made:
            t.force_remove(name)
        self.made.clear()

    def prepare(self, n: int) -> str:
        name = f"{self.src.prefix}-s{n}"
        self.made.add((self.src, name))
        self.src.create(name)
        for i in range(n):
            push_file(self.src, name, f"/root/snap{i}", os.urandom(4096))
            self.src.client.call("POST", f"/1.0/instances/{name}/snapshots",
                                 {"name": f"s{i}"})
        return name

    def copy(self, src: ApiTarget, dst: ApiTarget, url: str, name: str, new: str) -> None:
        dst.copy_from(src, name, new, url, timeout=300, instance_only=False,
                      profiles=self.profiles[id(dst)])

    def run(self, n: int, reps: int) -> tuple[list[float], list[float]]:
        name = self.prepare(n)
        copies, moves = [], []
        for i in range(reps):
            new = f"{self.dst.prefix}-c{n}-{i}"
            self.made.add((self.dst, new))
            os.sync()
            t0 = time.perf_counter()
            self.copy(self.src, self.dst, self.src_url, name, new)
            copies.append((time.perf_counter() - t0) * 1000)
            if i == 0:
                got = snapshot_names(self.dst, new)
                if got != [f"s{k}" for k in range(n)] and sorted(got) != sorted(
                        f"s{k}" for k in range(n)):
                    raise RuntimeError(f"copy arrived with snapshots {got}, wanted {n}")
            self.dst.delete(new)
        for _ in range(reps):
            moved = f"{self.dst.prefix}-m{n}"
            self.made.add((self.dst, moved))
            os.sync()
            t0 = time.perf_counter()
            self.copy(self.src, self.dst, self.src_url, name, moved)
            self.src.delete(name)
            moves.append((time.perf_counter() - t0) * 1000)
            # back again, untimed, so the next rep starts from the same place
            self.copy(self.dst, self.src, self.dst_url, moved, name)
            self.dst.delete(moved)
        self.src.force_remove(name)
        return copies, moves


def start_spies(directory: str | None, pair: Pair, n: int) -> list[subprocess.Popen]:
    """--py-spy DIR: py-spy on both of our daemons, idle frames included (where the
    wall-clock time of a copy goes, waits too); strace on both LXD daemons, only
    the processes they start and reap (LXD is Go: no Python frames; its copies are
    rsync runs and file copies, so when each child runs and for how long is its
    profile, summarised by lxd_children())."""
    if not directory or pair.key not in ("runtime", "lxd"):
        return []
    os.makedirs(directory, exist_ok=True)
    spies = []
    for side, t in (("source", pair.src), ("target", pair.dst)):
        if pair.key == "runtime":
            argv = [os.path.join(os.path.dirname(sys.executable), "py-spy"), "record",
                    "--nonblocking", "--idle", "--format", "raw", "--rate", "500",
                    "-o", os.path.join(directory, f"{side}-{n}.txt"),
                    "-p", str(t.server_pid())]
        else:
            argv = ["strace", "-f", "--seccomp-bpf", "-tt", "-q", "-e", "trace=execve",
                    "-o", os.path.join(directory, f"lxd-{side}-{n}.txt"),
                    "-p", str(t.server_pid())]
        spies.append(subprocess.Popen(argv, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL))
    time.sleep(0.5)     # attached before the first copy
    return spies


def lxd_children(path: str) -> str:
    """One line per program LXD ran during the copies: count, total and median time."""
    import collections
    import re
    started: dict[str, tuple[str, float]] = {}
    runs: dict[str, list[float]] = collections.defaultdict(list)

    def secs(stamp: str) -> float:
        h, m, s = stamp.split(":")
        return int(h) * 3600 + int(m) * 60 + float(s)
    with open(path) as f:
        for line in f:
            m = re.match(r"(\d+)\s+(\S+)\s+(.*)", line)
            if not m:
                continue
            pid, stamp, rest = m.groups()
            exe = re.match(r'execve\("([^"]+)"', rest)
            if exe and rest.rstrip().endswith("= 0"):
                started[pid] = (os.path.basename(exe.group(1)), secs(stamp))
            elif rest.startswith("+++ exited") and pid in started:
                name, t0 = started.pop(pid)
                runs[name].append((secs(stamp) - t0) * 1000)
    return "; ".join(f"{name} x{len(v)} {sum(v):.0f} ms (median {statistics.median(v):.0f})"
                     for name, v in sorted(runs.items(), key=lambda kv: -sum(kv[1])))


def stop_spies(spies: list[subprocess.Popen]) -> None:
    for spy in spies:
        spy.send_signal(signal.SIGINT)
    for spy in spies:
        try:
            spy.wait(30)
        except subprocess.TimeoutExpired:
            spy.kill()
            spy.wait()


def lxd_pair(args, started: list):
    """(source, target, source URL, target URL, profiles, target whose HTTPS address
    was set for the run) of LXD daemons, or why there are none (a string)."""
    if not args.shared_lxd:
        from tests.functional.runtime.lxd_daemon import LxdDaemon, lxd_binary
        if lxd_binary() is None:
            return "LXD unavailable: Debian's lxd package is not installed"
        for port in (8464, 8465):
            started.append(LxdDaemon(port, prefix="bench-lxd-").start())
        src, dst = (ApiTarget(f"lxd{i}", f"LXD #{i}", d.socket, prefix, ["default"])
                    for i, d, prefix in ((2, started[0], "bench-y"),
                                         (1, started[1], "bench-x")))
        return src, dst, started[0].url, started[1].url, ["default"], None
    if not (os.path.exists(args.lxd_socket) and os.path.exists(args.lxd_remote_socket)):
        return "LXD unavailable: run benchmarks/lxd_baseline.sh up and second"
    src = ApiTarget("lxd2", "LXD #2", args.lxd_remote_socket, "bench-y", ["bench-lxd"])
    dst = ApiTarget("lxd", "LXD", args.lxd_socket, "bench-x", ["bench-lxd"])
    https_set = None
    try:
        dst_url = dst.https_url()
    except Exception:  # noqa: BLE001 - give it an address for the way back
        addr = args.lxd_url.removeprefix("https://")
        if addr == src.https_url().removeprefix("https://"):
            addr = "127.0.0.1:8448"
        dst.client.request("PATCH", "/1.0", {"config": {"core.https_address": addr}})
        https_set = dst
        dst_url = f"https://{addr}"
    return src, dst, src.https_url(), dst_url, ["bench-lxd"], https_set


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--snapshots", default="0,1,5,20",
                   help="comma-separated snapshot counts")
    p.add_argument("--runtime-bin", default=os.path.join(REPO, ".venv/bin/nova-lxd-runtime"))
    p.add_argument("--lxd-socket", default="/var/lib/lxd/unix.socket")
    p.add_argument("--lxd-remote-socket", default="/var/lib/bench-lxd2/unix.socket")
    p.add_argument("--lxd-url", default="https://127.0.0.1:8449",
                   help="the first LXD's HTTPS address, set up if it has none "
                        "(moves go back through it)")
    p.add_argument("--no-lxd", action="store_true")
    p.add_argument("--shared-lxd", action="store_true",
                   help="the LXD pair of lxd_baseline.sh instead of two private ones")
    p.add_argument("--ports", default="8462,8463")
    p.add_argument("--py-spy", metavar="DIR", help="sample both runtime daemons per "
                   "snapshot count (spy_top.py DIR/source-5.txt --match runtime/) and "
                   "trace the programs both LXD daemons run (summarised at the end)")
    p.add_argument("--interop", action="store_true",
                   help="also LXD -> runtime and runtime -> LXD (LXD's protocol)")
    args = p.parse_args(argv)
    counts = [int(x) for x in args.snapshots.split(",") if x.strip()]
    image = build_image(None)
    procs = [RuntimeProcess(args.runtime_bin, None, "snapmig-a"),
             RuntimeProcess(args.runtime_bin, None, "snapmig-b")]
    ports = args.ports.split(",")
    pairs: list[Pair] = []
    results: dict[str, dict] = {"runtime": {}, "lxd": {}}
    lxd_https_set = None
    private_lxd: list = []
    try:
        for proc in procs:
            proc.ready(60)
        rt_src = ApiTarget("rt-src", "runtime A", procs[0].socket, "bench-s", ["default"])
        rt_dst = ApiTarget("rt-dst", "runtime B", procs[1].socket, "bench-t", ["default"])
        for t, port in ((rt_src, ports[0]), (rt_dst, ports[1])):
            t.client.request("PATCH", "/1.0", {"config": {
                "core.https_address": f"127.0.0.1:{port}"}})
            t.ensure_image(image)
        pairs.append(Pair("runtime", rt_src, rt_dst, f"https://127.0.0.1:{ports[0]}",
                          f"https://127.0.0.1:{ports[1]}"))
        lxd = None if args.no_lxd else lxd_pair(args, private_lxd)
        if isinstance(lxd, str):
            results["lxd"]["note"] = lxd
        elif lxd is not None:
            lx_src, lx_dst, src_url, dst_url, profiles, lxd_https_set = lxd
            try:
                for t in (lx_src, lx_dst):
                    t.ensure_image(image)
                pairs.append(Pair("lxd", lx_src, lx_dst, src_url, dst_url))
                if args.interop:
                    # LXD's protocol between LXD and our runtime, both directions; the
                    # move goes back the other way.
                    pairs.append(Pair("lxd->runtime", lx_src, rt_dst, src_url,
                                      f"https://127.0.0.1:{ports[1]}", ["default"],
                                      profiles))
                    pairs.append(Pair("runtime->lxd", rt_src, lx_dst,
                                      f"https://127.0.0.1:{ports[0]}", dst_url, profiles,
                                      ["default"]))
                    results["lxd->runtime"], results["runtime->lxd"] = {}, {}
            except Exception as exc:  # noqa: BLE001
                results["lxd"]["note"] = f"LXD unavailable: {exc}"
        for n in counts:
            for pair in pairs:
                spies = start_spies(args.py_spy, pair, n)
                try:
                    results[pair.key][n] = pair.run(n, args.reps)
                except Exception as exc:  # noqa: BLE001 - report and go on
                    results[pair.key][n] = f"FAILED ({str(exc)[:80]})"
                finally:
                    stop_spies(spies)
                    pair.cleanup()
    finally:
        for pair in pairs:
            pair.cleanup()
        if lxd_https_set is not None:
            try:
                lxd_https_set.client.request("PATCH", "/1.0", {"config": {
                    "core.https_address": ""}})
            except Exception:  # noqa: BLE001
                pass
        for proc in procs:
            proc.remove()
        for daemon in private_lxd:
            daemon.stop()

    def med(x) -> str:
        return f"{statistics.median(x):.0f}" if isinstance(x, list) else "n/a"

    print(f"\nstopped busybox instance with N snapshots, moved between two daemons over "
          f"TLS (reps={args.reps}; medians, ms; load average {os.getloadavg()[0]:.1f})")
    print("| snapshots | copy runtime | copy LXD 5.0.2 | LXD/runtime | move runtime "
          "| move LXD 5.0.2 | LXD/runtime | target >= 2.5x |")
    print("|---|---|---|---|---|---|---|---|")
    for n in counts:
        rt, lx = results["runtime"].get(n), results["lxd"].get(n)
        cells, ok = [str(n)], []
        for k in (0, 1):
            a = rt[k] if isinstance(rt, tuple) else rt
            b = lx[k] if isinstance(lx, tuple) else lx
            cells += [med(a) if not isinstance(a, str) else a,
                      med(b) if not isinstance(b, str) else (b or "n/a")]
            if isinstance(a, list) and isinstance(b, list):
                ratio = statistics.median(b) / statistics.median(a)
                cells.append(f"{ratio:.1f}x")
                ok.append(ratio >= TARGET_RATIO)
            else:
                cells.append("")
        cells.append(("ok" if all(ok) else "MISS") if ok else "")
        print("| " + " | ".join(cells) + " |")
    if "lxd->runtime" in results:
        print("\nbetween LXD 5.0.2 and the runtime, in LXD's migration protocol (same run; "
              "medians, ms; move = copy, then delete of the source)")
        print("| snapshots | copy LXD->LXD | copy LXD->runtime | copy runtime->LXD "
              "| move LXD->LXD | move LXD->runtime | move runtime->LXD |")
        print("|---|---|---|---|---|---|---|")
        for n in counts:
            cells = [str(n)]
            for k in (0, 1):
                for key in ("lxd", "lxd->runtime", "runtime->lxd"):
                    r = results[key].get(n)
                    cells.append(med(r[k]) if isinstance(r, tuple) else (r or "n/a"))
            print("| " + " | ".join(cells) + " |")
    if args.py_spy:
        for n in counts:
            for side in ("source", "target"):
                trace = os.path.join(args.py_spy, f"lxd-{side}-{n}.txt")
                if os.path.exists(trace):
                    print(f"  LXD {side}, {n} snapshots, programs run: {lxd_children(trace)}")
    for key in results:
        for n in counts:
            r = results[key].get(n)
            if isinstance(r, tuple):
                print(f"  {key} {n} snapshots: copy " + " ".join(f"{s:.0f}" for s in r[0])
                      + "; move " + " ".join(f"{s:.0f}" for s in r[1]))
        if results[key].get("note"):
            print(f"  {key}: {results[key]['note']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
