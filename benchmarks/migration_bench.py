#!/usr/bin/env python3
"""Moving instances between two daemons over TLS: our runtime against LXD 5.0.2,
in the same run.

Rows (medians of --reps; the target pulls from the source's HTTPS address, as
`lxc copy` does, timed from the source's migration request until both
operations are done, through the raw unix-socket client of benchmarks/):
  copy      copy of a stopped busybox instance (target: <= 100 ms; LXD here: 215 ms)
  move      move of a running instance, client-side (stop, copy, start): downtime
  move-srv  our runtime only: the same move done by the daemons, as pylxd's
            migrate() asks for it (no `live` key: the source stops the instance,
            streams it, the target starts it)
  big       copy of an instance with a 200 MB file: MB/s, and as a fraction of a raw
            `tar -c | loopback TCP | tar -x` of the same tree run right before each
            copy (target: >= 0.7); --big-reps runs for us, 1 for LXD (it is slow)

Every timed run (in all rows, and each raw stream) starts after a sync, so none
pays for the previous run's writeback.

Two runtime daemons are started on fresh LXD_DIRs (HTTPS on 127.0.0.1:8460/8461)
and removed afterwards. LXD is the pair from `benchmarks/lxd_baseline.sh up` and
`... second` (/var/lib/lxd pulls from /var/lib/bench-lxd2 at 127.0.0.1:8449);
without them the LXD column says n/a. Instances are named bench-m*/bench-n*.
Our instances have no nic (the runtime's default profile), LXD's profile has a
bridged one: start times in the move row include LXD's veth set-up.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from rawclient import exec_record  # noqa: E402
from rawstream import RawStream  # noqa: E402
from runtime_bench import REPO, RuntimeProcess, build_image  # noqa: E402
from targets import ApiTarget  # noqa: E402

LXD_FIGURE_MS = 215


def ms(t0: float) -> float:
    return (time.perf_counter() - t0) * 1000


def migrate(dst: ApiTarget, src: ApiTarget, name: str, new: str, url: str,
            daemons_finish: bool = False) -> None:
    """Pull mode, as `lxc copy` does; see ApiTarget.copy_from."""
    dst.copy_from(src, name, new, url, daemons_finish=daemons_finish, timeout=120)


class Pair:
    def __init__(self, key: str, src: ApiTarget, dst: ApiTarget, url: str):
        self.key, self.src, self.dst, self.url = key, src, dst, url
        self.made: set[tuple[ApiTarget, str]] = set()

    def create(self, t: ApiTarget, name: str) -> None:
        self.made.add((t, name))
        t.create(name)

    def cleanup(self) -> None:
        for t, name in self.made:
            t.force_remove(name)

    def copy(self, reps: int) -> list[float]:
        name = f"{self.src.prefix}-src"
        self.create(self.src, name)
        out = []
        for i in range(reps):
            new = f"{self.dst.prefix}-c{i}"
            self.made.add((self.dst, new))
            os.sync()  # no writeback of the previous run inside this one
            t0 = time.perf_counter()
            migrate(self.dst, self.src, name, new, self.url)
            out.append(ms(t0))
            self.dst.force_remove(new)
        self.src.force_remove(name)
        return out

    def move_client(self, reps: int) -> list[float]:
        out = []
        for i in range(reps):
            name, new = f"{self.src.prefix}-mv{i}", f"{self.dst.prefix}-mv{i}"
            self.create(self.src, name)
            self.src.start(name)
            self.made.add((self.dst, new))
            os.sync()  # no writeback of the previous run inside this one
            t0 = time.perf_counter()
            self.src.stop_force(name)
            migrate(self.dst, self.src, name, new, self.url)
            self.dst.start(new)
            out.append(ms(t0))
            self.src.delete(name)
            self.dst.force_remove(new)
        return out

    def move_server(self, reps: int) -> list[float]:
        out = []
        for i in range(reps):
            name, new = f"{self.src.prefix}-ms{i}", f"{self.dst.prefix}-ms{i}"
            self.create(self.src, name)
            self.src.start(name)
            self.made.add((self.dst, new))
            os.sync()  # no writeback of the previous run inside this one
            t0 = time.perf_counter()
            migrate(self.dst, self.src, name, new, self.url, daemons_finish=True)
            out.append(ms(t0))
            if self.dst.state(new).get("status") != "Running":
                raise RuntimeError("target did not start the moved instance")
            self.src.delete(name)
            self.dst.force_remove(new)
        return out

    def big(self, mb: int, reps: int, raw) -> tuple[list[float], list[float]]:
        """MB/s of reps copies, each right after a raw stream of the same size.

        Interleaving matters on a shared machine: the ratio compares runs taken
        under the same load.
        """
        name = f"{self.src.prefix}-big"
        self.create(self.src, name)
        self.src.start(name)
        code, _, err = exec_record(self.src.client, name, [
            "dd", "if=/dev/urandom", "of=/big", "bs=1M", f"count={mb}"], timeout=300)
        if code != 0:
            raise RuntimeError(f"dd failed: {err[-200:]!r}")
        self.src.stop_force(name)
        subprocess.run(["sync"], check=False)
        ours, raws = [], []
        for i in range(reps):
            raws.append(raw())
            new = f"{self.dst.prefix}-big{i}"
            self.made.add((self.dst, new))
            os.sync()  # the raw run's writeback must not land inside ours
            t0 = time.perf_counter()
            migrate(self.dst, self.src, name, new, self.url)
            ours.append(mb / (time.perf_counter() - t0))
            self.dst.force_remove(new)
        self.src.force_remove(name)
        return ours, raws


def fmt(samples: list[float] | float | str | None) -> str:
    if samples is None:
        return "n/a"
    if isinstance(samples, str):
        return samples
    if isinstance(samples, float):
        return f"{samples:.0f}"
    return f"{statistics.median(samples):.0f}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reps", type=int, default=7)
    p.add_argument("--big-mb", type=int, default=200)
    p.add_argument("--big-reps", type=int, default=5,
                   help="throughput runs for our runtime, each after a raw stream")
    p.add_argument("--runtime-bin", default=os.path.join(REPO, ".venv/bin/nova-lxd-runtime"))
    p.add_argument("--lxd-socket", default="/var/lib/lxd/unix.socket")
    p.add_argument("--lxd-remote-socket", default="/var/lib/bench-lxd2/unix.socket")
    p.add_argument("--no-lxd", action="store_true")
    args = p.parse_args(argv)
    image = build_image(None)
    procs = [RuntimeProcess(args.runtime_bin, None, "mig-a"),
             RuntimeProcess(args.runtime_bin, None, "mig-b")]
    pairs: list[Pair] = []
    results: dict[str, dict[str, object]] = {"runtime": {}, "lxd": {}}
    raw = RawStream(image, args.big_mb) if args.big_mb else None
    try:
        for proc in procs:
            proc.ready(60)
        rt_src = ApiTarget("rt-src", "runtime A", procs[0].socket, "bench-m", ["default"])
        rt_dst = ApiTarget("rt-dst", "runtime B", procs[1].socket, "bench-n", ["default"])
        rt_src.client.request("PATCH", "/1.0", {"config": {
            "core.https_address": "127.0.0.1:8460"}})
        rt_dst.client.request("PATCH", "/1.0", {"config": {
            "core.https_address": "127.0.0.1:8461"}})
        for t in (rt_src, rt_dst):
            t.ensure_image(image)
        pairs.append(Pair("runtime", rt_src, rt_dst, "https://127.0.0.1:8460"))
        if not args.no_lxd and os.path.exists(args.lxd_socket) and \
                os.path.exists(args.lxd_remote_socket):
            lx_src = ApiTarget("lxd2", "LXD #2", args.lxd_remote_socket, "bench-y",
                               ["bench-lxd"])
            lx_dst = ApiTarget("lxd", "LXD", args.lxd_socket, "bench-x", ["bench-lxd"])
            try:
                for t in (lx_src, lx_dst):
                    t.ensure_image(image)
                pairs.append(Pair("lxd", lx_src, lx_dst, lx_src.https_url()))
            except Exception as exc:  # noqa: BLE001
                results["lxd"]["note"] = f"LXD unavailable: {exc}"
        for phase in ("copy", "move", "move-srv", "big"):
            for pair in pairs:
                try:
                    if phase == "copy":
                        results[pair.key][phase] = pair.copy(args.reps)
                    elif phase == "move":
                        results[pair.key][phase] = pair.move_client(max(3, args.reps // 2))
                    elif phase == "move-srv" and pair.key == "runtime":
                        results[pair.key][phase] = pair.move_server(max(3, args.reps // 2))
                    elif phase == "big" and args.big_mb:
                        reps = args.big_reps if pair.key == "runtime" else 1
                        ours, raws = pair.big(args.big_mb, reps, raw)
                        results[pair.key][phase] = ours
                        results[pair.key]["raw"] = raws
                except Exception as exc:  # noqa: BLE001 - report and go on
                    results[pair.key][phase] = f"FAILED ({str(exc)[:60]})"
                finally:
                    pair.cleanup()
    finally:
        if raw is not None:
            raw.close()
        for pair in pairs:
            pair.cleanup()
        for proc in procs:
            proc.remove()

    rt, lx = results["runtime"], results["lxd"]

    def ratio(key: str) -> str:
        a, b = rt.get(key), lx.get(key)
        if isinstance(a, list) and isinstance(b, list):
            return f"{statistics.median(b) / statistics.median(a):.1f}x faster"
        return ""
    print(f"\nmigration between two daemons over TLS (reps={args.reps}, "
          f"{args.big_mb} MB for throughput)")
    print(f"{'row':<40} {'runtime':>10} {'LXD 5.0.2':>12}  ratio / target")
    print(f"{'copy stopped busybox, median ms':<40} {fmt(rt.get('copy')):>10} "
          f"{fmt(lx.get('copy')):>12}  {ratio('copy')} (target <= 100 ms; "
          f"LXD figure {LXD_FIGURE_MS} ms)")
    print(f"{'move running (stop+copy+start) ms':<40} {fmt(rt.get('move')):>10} "
          f"{fmt(lx.get('move')):>12}  {ratio('move')}")
    print(f"{'move running, done by the daemons, ms':<40} {fmt(rt.get('move-srv')):>10} "
          f"{'n/a':>12}")
    for key, col in (("runtime", rt), ("lxd", lx)):
        big, raws = col.get("big"), col.get("raw")
        if isinstance(big, list) and raws:
            ratios = [b / r for b, r in zip(big, raws, strict=True)]
            print(f"{f'copy with {args.big_mb} MB, {key}, MB/s':<40} "
                  f"{statistics.median(big):>10.0f}  raw tar|tcp|tar right before: "
                  f"{statistics.median(raws):.0f} MB/s; fraction {statistics.median(ratios):.2f}"
                  f" (runs: {' '.join(f'{x:.2f}' for x in ratios)}; target >= 0.70)")
        elif big is not None:
            print(f"{f'copy with {args.big_mb} MB, {key}':<40} {fmt(big):>10}")
    for key in ("runtime", "lxd"):
        for phase in ("copy", "move", "move-srv", "big", "raw"):
            samples = results[key].get(phase)
            if isinstance(samples, list):
                print(f"  {key} {phase}: " + " ".join(f"{s:.0f}" for s in samples))
        if results[key].get("note"):
            print(f"  {key}: {results[key]['note']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
