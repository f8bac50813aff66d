#!/usr/bin/env python3
"""Side-by-side benchmark: our runtime vs Debian's LXD 5.0.2 vs raw liblxc.

Why one script for all columns: figures taken on different days on a shared
2-core machine are not comparable; here each phase runs on every target in
turn, in the same run, and the table prints the ratios next to the issues'
targets. Operations a target lacks are "n/a", never a crash.

Examples (as root, from the repository root):
  .venv/bin/python benchmarks/runtime_bench.py --start-runtime --compare-lxd --raw-lxc
  LXD_DIR=/tmp/rt .venv/bin/python benchmarks/runtime_bench.py --runtime-socket /tmp/rt/unix.socket
  .venv/bin/python benchmarks/runtime_bench.py --no-runtime --compare-lxd   # LXD only
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tools/

import memory
from rawclient import ApiError, exec_record
from rawstream import RawStream
from targets import ApiTarget, NotSupported, wait_socket

from tools import statedir

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class NA(str):
    """A figure that could not be taken, with the reason."""


# key, label, unit, absolute target (upper bound) or None, "half of LXD" rule
METRICS: list[tuple[str, str, str, float | None, bool]] = [
    ("daemon_ready", "daemon start to first GET /1.0", "ms", None, False),
    ("get_server", "GET /1.0, new connection", "ms", None, False),
    ("launch", "launch (create + start), median", "ms", 100, False),
    ("create", "  create alone, median", "ms", None, False),
    ("start", "  start alone, median", "ms", None, False),
    ("exec_ws", "exec echo hi, raw websocket", "ms", 15, False),
    ("exec_record", "exec echo hi, raw record-output", "ms", 15, False),
    ("exec_cli", "exec echo hi, lxc CLI", "ms", None, False),
    ("exec_pylxd", "exec echo hi, pylxd execute", "ms", None, False),
    ("stop_force", "stop --force, median", "ms", 120, False),
    ("delete", "delete (stopped), median", "ms", None, False),
    ("launch20", "20 launches in a row", "s", None, False),
    ("teardown20", "stop --force + delete of those 20", "s", None, False),
    ("rss_idle", "daemon RSS idle (image imported)", "MB", 45, False),
    ("rss_warm", "daemon RSS idle after one launch/exec/stop", "MB", 45, False),
    ("rss_20", "daemon RSS with 20 running", "MB", None, False),
    ("ct_pss", "host memory per container (PSS)", "MB", 4, False),
    ("ct_pss_monitor", "  of which monitor (PSS)", "MB", None, False),
    ("ct_pss_inside", "  of which container processes (PSS)", "MB", None, False),
    ("ct_memavail", "host memory per container (MemAvailable)", "MB", None, False),
    ("snapshot_stopped", "snapshot (stopped), median", "ms", None, True),
    ("restore_stopped", "restore (stopped), median", "ms", None, True),
    ("snapshot_running", "snapshot (running), median", "ms", None, True),
    ("restore_running", "restore (running), median", "ms", None, True),
    ("copy_stopped", "copy of a stopped instance, median", "ms", None, True),
    ("publish", "publish (stopped instance), median", "ms", None, True),
    ("copy_remote", "copy stopped, two daemons over TLS, median", "ms", 100, False),
    ("move_downtime", "move running (stop, copy, start), downtime", "ms", None, False),
    ("copy_big", "copy stopped with 200 MB file over TLS", "MB/s", None, False),
    ("copy_big_fraction", "  as a fraction of a raw tar|tcp|tar stream", "", None, False),
]
# Lower bounds (higher is better).
AT_LEAST = {"copy_big_fraction": 0.7}

# The LXD figures quoted by the design guide and issues, for runs without --compare-lxd.
QUOTED_LXD = {"launch": 248, "exec_cli": 34, "exec_pylxd": 130, "stop_force": 689,
              "get_server": 6.8, "launch20": 6.09, "rss_idle": 72, "rss_20": 87,
              "ct_pss": 13.5, "snapshot_stopped": 121, "restore_stopped": 81,
              "copy_stopped": 431, "copy_remote": 215}


def ms(t0: float) -> float:
    return (time.perf_counter() - t0) * 1000


def median(xs: list[float]) -> float:
    return statistics.median(xs)


class Results:
    """Per-target figures plus every raw sample (for --json).

    With --rounds, a figure measured again is merged: samples are pooled and
    single values become the median of the rounds; a number beats an n/a.
    """

    def __init__(self) -> None:
        self.values: dict[str, dict[str, Any]] = {}
        self.samples: dict[str, dict[str, list[float]]] = {}
        self.rounds: dict[str, dict[str, list[float]]] = {}
        self.notes: dict[str, list[str]] = {}

    def put(self, target: str, key: str, value: Any, samples: list[float] | None = None) -> None:
        if samples is not None:
            self.samples.setdefault(target, {}).setdefault(key, []).extend(samples)
        if isinstance(value, NA):
            old = self.values.get(target, {}).get(key)
            if old is None or isinstance(old, NA):
                self.values.setdefault(target, {})[key] = value
            return
        seen = self.rounds.setdefault(target, {}).setdefault(key, [])
        seen.append(value)
        merged = median(seen) if len(seen) > 1 else value
        self.values.setdefault(target, {})[key] = (round(merged, 2) if isinstance(merged, float)
                                                   else merged)

    def put_samples(self, target: str, key: str, samples: list[float]) -> None:
        if not samples:
            self.put(target, key, NA("no sample"))
            return
        pooled = self.samples.setdefault(target, {}).setdefault(key, [])
        pooled.extend(samples)
        self.rounds.setdefault(target, {})[key] = []
        self.values.setdefault(target, {})[key] = round(median(pooled), 1)

    def has(self, target: str, key: str) -> bool:
        return key in self.values.get(target, {})

    def na(self, target: str, keys: list[str], reason: str) -> None:
        for k in keys:
            if not self.has(target, k):
                self.put(target, k, NA(reason))

    def note(self, target: str, text: str) -> None:
        """A line under the table; a later round's line with the same label replaces it."""
        label = text.split(":", 1)[0]
        notes = self.notes.setdefault(target, [])
        for i, old in enumerate(notes):
            if old.split(":", 1)[0] == label:
                notes[i] = text
                return
        notes.append(text)


def short(e: BaseException) -> str:
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return text[:90]


def classify(e: BaseException) -> NA:
    """n/a for what a daemon says it lacks; 'failed' for anything else."""
    if isinstance(e, NotSupported):
        return NA(f"n/a: {short(e)}")
    if isinstance(e, ApiError):
        msg = e.message.lower()
        if e.status in (404, 405, 501) or (e.status == 400 and (
                "not supported" in msg or "not implemented" in msg or "unknown" in msg)):
            return NA(f"n/a: {short(e)}")
    return NA(f"failed: {short(e)}")


class Bench:
    """The phases; each runs on every target before the next phase starts."""

    def __init__(self, args: argparse.Namespace, targets: list[Any], results: Results):
        self.args = args
        self.targets = targets
        self.r = results
        self._raw: RawStream | None = None

    def run(self) -> None:
        phases: list[tuple[str, Callable[[Any], None], list[str]]] = [
            ("server", self.phase_server, ["get_server", "rss_idle"]),
            ("warmup", self.phase_warmup, ["rss_warm"]),
            ("lifecycle", self.phase_lifecycle,
             ["launch", "create", "start", "exec_ws", "exec_record", "exec_cli",
              "exec_pylxd", "stop_force", "delete"]),
            ("density", self.phase_density,
             ["launch20", "teardown20", "rss_20", "ct_pss", "ct_pss_monitor",
              "ct_pss_inside", "ct_memavail"]),
            ("snapshots", self.phase_snapshots,
             ["snapshot_stopped", "restore_stopped", "copy_stopped", "publish",
              "snapshot_running", "restore_running"]),
            ("remote", self.phase_remote, ["copy_remote", "move_downtime", "copy_big",
                                           "copy_big_fraction"]),
        ]
        wanted = set(self.args.phases.split(",")) if self.args.phases else None
        try:
            for rnd in range(self.args.rounds):
                if self.args.rounds > 1:
                    print(f"[bench] round {rnd + 1}/{self.args.rounds}", file=sys.stderr)
                for name, fn, keys in phases:
                    if not wanted or name in wanted:
                        self.run_phase(name, fn, keys)
        finally:
            if self._raw is not None:
                self._raw.close()

    def run_phase(self, name: str, fn: Callable[[Any], None], keys: list[str]) -> None:
        for t in self.targets:
            if getattr(t, "broken", None):
                self.r.na(t.key, keys, t.broken)
                continue
            print(f"[bench] {name}: {t.title}", file=sys.stderr, flush=True)
            t0 = time.perf_counter()
            spy = self.start_py_spy(t, name)
            try:
                fn(t)
            except Exception as e:  # noqa: BLE001 - any failure becomes n/a
                na = classify(e)
                self.r.na(t.key, keys, na)
                if not na.startswith("n/a"):
                    self.r.note(t.key, f"{name} phase failed: {short(e)}")
                if name == "warmup":
                    t.broken = f"failed: warm-up launch: {short(e)}"
            finally:
                self.stop_py_spy(spy)
                self.cleanup(t)
            print(f"[bench]   {name} took {time.perf_counter() - t0:.1f}s",
                  file=sys.stderr, flush=True)

    # -- helpers ---------------------------------------------------------
    def start_py_spy(self, t: Any, phase: str) -> subprocess.Popen | None:
        """Sample our daemon during a phase (--py-spy DIR): collapsed stacks per phase."""
        if not self.args.py_spy or t.key != "runtime":
            return None
        os.makedirs(self.args.py_spy, exist_ok=True)
        spy = os.path.join(os.path.dirname(sys.executable), "py-spy")
        out = os.path.join(self.args.py_spy, f"{phase}.txt")
        return subprocess.Popen([spy, "record", "--nonblocking", "--format", "raw",
                                 "--rate", "250", "-o", out, "-p", str(t.server_pid())],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stop_py_spy(self, spy: subprocess.Popen | None) -> None:
        if spy is None:
            return
        spy.send_signal(signal.SIGINT)
        try:
            spy.wait(30)
        except subprocess.TimeoutExpired:
            spy.kill()
            spy.wait()

    def names(self, t: Any, tag: str, n: int) -> list[str]:
        return [f"{t.prefix}-{tag}{i}" for i in range(n)]

    def cleanup(self, t: Any) -> None:
        for name in sorted(getattr(t, "live", set())):
            t.force_remove(name)
        t.live = set()

    def launch(self, t: Any, name: str) -> tuple[float, float]:
        t.live = getattr(t, "live", set())
        t.live.add(name)
        t0 = time.perf_counter()
        t.create(name)
        t1 = time.perf_counter()
        t.start(name)
        t2 = time.perf_counter()
        return (t1 - t0) * 1000, (t2 - t1) * 1000

    def timed(self, fn: Callable[[], Any]) -> float:
        t0 = time.perf_counter()
        fn()
        return ms(t0)

    # -- phases ----------------------------------------------------------
    def phase_server(self, t: Any) -> None:
        samples = [self.timed(t.get_fresh) for _ in range(self.args.exec_reps)]
        self.r.put_samples(t.key, "get_server", samples)
        pid = t.server_pid()
        if pid:
            self.r.put(t.key, "rss_idle", round(memory.rss_kb(pid) / 1024, 1))
            self.r.note(t.key, f"daemon pid {pid}: {memory.cmdline(pid)[:100]}; "
                               f"idle PSS {memory.pss_kb(pid) / 1024:.1f} MB")

    def phase_warmup(self, t: Any) -> None:
        """One untimed launch/exec/stop/delete: first-use costs (image unpack, caches)."""
        name = f"{t.prefix}-warm"
        self.launch(t, name)
        try:
            desc = t.describe_config(name)
            self.r.note(t.key, f"instance config: {desc}")
        except (ApiError, OSError, NotSupported) as e:
            self.r.note(t.key, f"could not describe instance config: {short(e)}")
        try:
            t.exec_ws(name)
        except NotSupported:
            t.exec_cli(name)
        t.stop_force(name)
        t.delete(name)
        t.live.discard(name)
        pid = t.server_pid()
        if pid:
            time.sleep(0.5)
            self.r.put(t.key, "rss_warm", round(memory.rss_kb(pid) / 1024, 1))

    def phase_lifecycle(self, t: Any) -> None:
        names = self.names(t, "l", self.args.launches)
        creates, starts, launches = [], [], []
        for n in names:
            c, s = self.launch(t, n)
            creates.append(c)
            starts.append(s)
            launches.append(c + s)
        self.r.put_samples(t.key, "launch", launches)
        self.r.put_samples(t.key, "create", creates)
        self.r.put_samples(t.key, "start", starts)
        time.sleep(1)  # let the new containers' boot scripts finish first
        self.exec_modes(t, names[0])
        if getattr(t, "lost_output", 0):
            self.r.note(t.key, f"exec websocket: {t.lost_output} of {t.ws_calls} "
                               "round trips returned exit 0 with no output (output lost)")
        stops, deletes = [], []
        for n in names:
            stops.append(self.timed(lambda n=n: t.stop_force(n)))
        self.r.put_samples(t.key, "stop_force", stops)
        for n in names:
            deletes.append(self.timed(lambda n=n: t.delete(n)))
            t.live.discard(n)
        self.r.put_samples(t.key, "delete", deletes)

    def exec_modes(self, t: Any, name: str) -> None:
        reps = self.args.exec_reps
        modes: list[tuple[str, Callable[[], None]]] = [
            ("exec_ws", lambda: t.exec_ws(name)),
            ("exec_record", lambda: t.exec_record(name)),
            ("exec_cli", lambda: t.exec_cli(name)),
        ]
        for key, fn in modes:
            try:
                fn()  # one untimed round: connection set-up, first attach
                self.r.put_samples(t.key, key, [self.timed(fn) for _ in range(reps)])
            except Exception as e:  # noqa: BLE001
                self.r.put(t.key, key, classify(e))
        try:
            if not hasattr(t, "pylxd_instance"):
                raise NotSupported("no API")
            inst = t.pylxd_instance(name)
            t.exec_pylxd(inst)
            self.r.put_samples(t.key, "exec_pylxd",
                               [self.timed(lambda: t.exec_pylxd(inst))
                                for _ in range(max(5, reps // 3))])
        except Exception as e:  # noqa: BLE001
            self.r.put(t.key, "exec_pylxd", classify(e))

    def phase_density(self, t: Any) -> None:
        names = self.names(t, "d", self.args.density)
        pid = t.server_pid()
        time.sleep(1)
        avail0 = memory.mem_available_kb()
        t0 = time.perf_counter()
        for n in names:
            self.launch(t, n)
        self.r.put(t.key, "launch20", round(time.perf_counter() - t0, 2))
        time.sleep(self.args.settle)  # let each init finish its boot scripts
        avail1 = memory.mem_available_kb()
        if pid:
            self.r.put(t.key, "rss_20", round(memory.rss_kb(pid) / 1024, 1))
        kids = memory.children_map()
        inside, monitor = [], []
        for n in names:
            ipid = t.init_pid(n)
            c, m = memory.container_pss_kb(ipid, pid, kids)
            inside.append(c / 1024)
            monitor.append(m / 1024)
        total = [a + b for a, b in zip(inside, monitor, strict=True)]
        self.r.put(t.key, "ct_pss", round(statistics.mean(total), 2), total)
        self.r.put(t.key, "ct_pss_monitor", round(statistics.mean(monitor), 2), monitor)
        self.r.put(t.key, "ct_pss_inside", round(statistics.mean(inside), 2), inside)
        per = (avail0 - avail1) / 1024 / len(names)
        self.r.put(t.key, "ct_memavail", round(per, 2) if per > 0 else NA(
            "n/a: MemAvailable rose meanwhile (other activity on the host)"))
        try:
            ipid = t.init_pid(names[0])
            parent = memory.ppid(ipid)
            self.r.note(t.key, f"container 0: init pid {ipid}; its parent {parent}: "
                               f"{memory.cmdline(parent)[:90]}")
        except (OSError, ApiError, NotSupported):
            pass
        t0 = time.perf_counter()
        for n in names:
            t.stop_force(n)
            t.delete(n)
            t.live.discard(n)
        self.r.put(t.key, "teardown20", round(time.perf_counter() - t0, 2))

    def phase_snapshots(self, t: Any) -> None:
        if not hasattr(t, "snapshot"):
            raise NotSupported("no snapshots")
        reps = self.args.reps
        name = f"{t.prefix}-snap"
        t.live = getattr(t, "live", set())
        t.live.add(name)
        t.create(name)

        def series(key: str, fn: Callable[[int], Any]) -> None:
            try:
                self.r.put_samples(t.key, key, [self.timed(lambda i=i: fn(i))
                                                for i in range(reps)])
            except Exception as e:  # noqa: BLE001
                self.r.put(t.key, key, classify(e))

        series("snapshot_stopped", lambda i: t.snapshot(name, f"s{i}"))
        series("restore_stopped", lambda i: t.restore(name, f"s{i}"))

        copies: list[float] = []
        try:
            for i in range(reps):
                dst = f"{t.prefix}-copy{i}"
                t.live.add(dst)
                t0 = time.perf_counter()
                t.copy(name, dst)
                copies.append(ms(t0))
                t.force_remove(dst)
                t.live.discard(dst)
            self.r.put_samples(t.key, "copy_stopped", copies)
        except Exception as e:  # noqa: BLE001
            self.r.put(t.key, "copy_stopped", classify(e))

        pubs: list[float] = []
        try:
            for _ in range(max(2, reps // 2)):
                t0 = time.perf_counter()
                fp = t.publish(name)
                pubs.append(ms(t0))
                try:
                    t.delete_image(fp)
                except (ApiError, OSError):
                    pass
            self.r.put_samples(t.key, "publish", pubs)
        except Exception as e:  # noqa: BLE001
            self.r.put(t.key, "publish", classify(e))

        t.start(name)
        series("snapshot_running", lambda i: t.snapshot(name, f"r{i}"))
        series("restore_running", lambda i: t.restore(name, f"r{i}"))


    def phase_remote(self, t: Any) -> None:
        src = getattr(t, "remote", None)
        if src is None:
            why = getattr(t, "remote_reason", "no second daemon (--remote)")
            if why.startswith("failed: "):
                raise RuntimeError(why[len("failed: "):])
            raise NotSupported(why)
        url = src.https_url()
        name = f"{t.prefix}-rsrc"
        src.create(name)
        try:
            samples = []
            for i in range(self.args.reps):
                dst = f"{t.prefix}-rcopy{i}"
                t.live = getattr(t, "live", set())
                t.live.add(dst)
                t0 = time.perf_counter()
                t.copy_from(src, name, dst, url)
                samples.append(ms(t0))
                t.force_remove(dst)
                t.live.discard(dst)
            self.r.put_samples(t.key, "copy_remote", samples)
        finally:
            src.force_remove(name)
        self.remote_move(t, src, url)
        if self.args.big_mb:
            self.remote_big(t, src, url)

    def remote_move(self, t: Any, src: Any, url: str) -> None:
        """Stateless move of a running instance, as `lxc move --stateless` does it."""
        name = f"{t.prefix}-rmove"
        downs = []
        try:
            for i in range(max(2, self.args.reps // 2)):
                dst = f"{t.prefix}-rmoved{i}"
                src.create(name)
                src.start(name)
                t.live.add(dst)
                t0 = time.perf_counter()
                src.stop_force(name)
                t.copy_from(src, name, dst, url)
                t.start(dst)
                downs.append(ms(t0))
                src.delete(name)
                t.force_remove(dst)
                t.live.discard(dst)
            self.r.put_samples(t.key, "move_downtime", downs)
        except Exception as e:  # noqa: BLE001
            self.r.put(t.key, "move_downtime", classify(e))
        finally:
            src.force_remove(name)

    def remote_big(self, t: Any, src: Any, url: str) -> None:
        """Throughput of a copy with a big file in the rootfs, against a raw stream.

        Both sides are warmed once (untimed): a first pass over fresh page cache
        is much slower on this VM than any later one, for the raw stream too.
        Then copies and raw streams alternate, each after a sync; the fraction is
        the median of the per-pair ratios (3 pairs, 1 for a target slower than
        100 MB/s on its warm-up, since LXD takes seconds per copy).
        """
        mb = self.args.big_mb
        name = f"{t.prefix}-rbig"
        try:
            src.create(name)
            src.start(name)
            code, _, err = exec_record(src.client, name, [
                "dd", "if=/dev/urandom", "of=/big", "bs=1M", f"count={mb}"], timeout=300)
            if code != 0:
                raise RuntimeError(f"dd in the container failed: {err[-200:]!r}")
            src.stop_force(name)

            def copy(i: int) -> float:
                dst = f"{t.prefix}-rbigcopy{i}"
                t.live.add(dst)
                os.sync()
                t0 = time.perf_counter()
                t.copy_from(src, name, dst, url)
                took = time.perf_counter() - t0
                t.force_remove(dst)
                t.live.discard(dst)
                return took
            warm = copy(0)
            self.raw_stream()()
            pairs = 1 if mb / warm < 100 else 3
            took, raws = [], []
            for i in range(pairs):
                raws.append(self.raw_stream()())
                took.append(copy(i + 1))
            rates = [mb / x for x in took]
            self.r.put(t.key, "copy_big", round(statistics.median(rates), 1), took)
            self.r.put(t.key, "copy_big_fraction", round(statistics.median(
                [r / w for r, w in zip(rates, raws, strict=True)]), 2))
            self.r.note(t.key, f"copy of {mb} MB: " + " ".join(f"{x:.2f}s" for x in took)
                        + f" (warm-up {warm:.2f}s); raw tar|tcp|tar of the same amount: "
                        + " ".join(f"{x:.0f}" for x in raws) + " MB/s")
        except Exception as e:  # noqa: BLE001
            self.r.na(t.key, ["copy_big", "copy_big_fraction"], classify(e))
        finally:
            src.force_remove(name)

    def raw_stream(self) -> RawStream:
        if self._raw is None:
            self._raw = RawStream(self.args.image_path, self.args.big_mb)
        return self._raw


# -- report ----------------------------------------------------------------
def fmt(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, NA):
        return "n/a" if v.startswith("n/a") else "FAILED"
    if isinstance(v, float):
        return f"{v:.2f}" if v < 1 else f"{v:.1f}" if v < 100 else f"{v:.0f}"
    return str(v)


def verdict(key: str, ours: Any, lxd: Any, target: float | None, half: bool) -> str:
    if isinstance(ours, NA) or ours is None:
        return ""
    if key in AT_LEAST:
        low = AT_LEAST[key]
        return (f"ok (>= {low:g})" if ours >= low
                else f"MISS by {low - ours:.2f} ({ours / low:.2f}x of {low:g})")
    if half:
        ref = lxd if isinstance(lxd, (int, float)) else QUOTED_LXD.get(key)
        if ref is None:
            return ""
        limit = ref / 2
        src = "" if isinstance(lxd, (int, float)) else " (quoted LXD)"
        return (f"ok (<= {limit:.0f}{src})" if ours <= limit
                else f"MISS by {ours - limit:.0f} ({ours / limit:.1f}x of {limit:.0f}{src})")
    if target is None:
        return ""
    return (f"ok (<= {target:g})" if ours <= target
            else f"MISS by {ours - target:.1f} ({ours / target:.1f}x of {target:g})")


def render(results: Results, targets: list[Any]) -> str:
    keys = [t.key for t in targets]
    titles = {t.key: t.title for t in targets}
    ours = "runtime" if "runtime" in keys else None
    lxd = "lxd" if "lxd" in keys else None
    header = ["operation", "unit"] + [titles[k] for k in keys]
    if ours and lxd:
        header.append("runtime/LXD")
    if ours and "raw-lxc" in keys:
        header.append("runtime/floor")
    if ours:
        header.append("target: verdict")
    rows = []
    for key, label, unit, target, half in METRICS:
        vals = {k: results.values.get(k, {}).get(key) for k in keys}
        if all(v is None for v in vals.values()):
            continue
        row = [label, unit] + [fmt(vals[k]) for k in keys]
        o = vals.get(ours) if ours else None
        if ours and lxd:
            lv = vals.get(lxd)
            row.append(f"{o / lv:.2f}" if isinstance(o, (int, float)) and not isinstance(o, NA)
                       and isinstance(lv, (int, float)) and not isinstance(lv, NA) and lv else "")
        if ours and "raw-lxc" in keys:
            fv = vals.get("raw-lxc")
            row.append(f"{o / fv:.2f}" if isinstance(o, (int, float)) and not isinstance(o, NA)
                       and isinstance(fv, (int, float)) and not isinstance(fv, NA) and fv else "")
        if ours:
            lv = vals.get(lxd) if lxd else None
            row.append(verdict(key, o, lv if not isinstance(lv, NA) else None, target, half))
        rows.append(row)
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    out = ["| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |",
           "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    for r in rows:
        cells = (str(c).ljust(w) for c, w in zip(r, widths, strict=True))
        out.append("| " + " | ".join(cells) + " |")
    grouped: dict[tuple[str, str], list[str]] = {}
    for k in keys:
        for key, v in results.values.get(k, {}).items():
            if isinstance(v, NA):
                grouped.setdefault((titles[k], str(v)), []).append(key)
    if grouped:
        out.append("")
        out.append("n/a and failures:")
        for (title, why), ks in sorted(grouped.items()):
            out.append(f"- {title} {', '.join(ks)}: {why}")
    for k in keys:
        for n in results.notes.get(k, []):
            out.append(f"- {titles[k]}: {n}")
    return "\n".join(out)


# -- set-up of the targets ---------------------------------------------------
def build_image(path: str | None) -> str:
    if path:
        return path
    cached = os.path.join(REPO, ".cache/images/busybox.tar.xz")
    if os.path.exists(cached):
        return cached
    out = os.path.join(tempfile.gettempdir(), "bench-busybox.tar.xz")
    if not os.path.exists(out):
        subprocess.run([os.path.join(REPO, "tools/images/build-busybox"), out], check=True)
    return out


class RuntimeProcess:
    """Our daemon started on a temporary LXD_DIR for the run (--start-runtime)."""

    def __init__(self, binary: str, lxd_dir: str | None, label: str = "runtime"):
        self.label = label
        self.dir = lxd_dir or tempfile.mkdtemp(prefix="bench-rt-", dir="/var/tmp")
        self.own_dir = lxd_dir is None
        os.makedirs(self.dir, exist_ok=True)
        os.chmod(self.dir, 0o711)  # mkdtemp's 0700 would stop unprivileged container roots
        self.log = open(os.path.join(self.dir, "bench-runtime.log"), "ab")  # noqa: SIM115
        env = dict(os.environ, LXD_DIR=self.dir)
        self.t0 = time.perf_counter()
        self.proc = subprocess.Popen([binary], env=env, stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        self.socket = os.path.join(self.dir, "unix.socket")

    def ready(self, timeout: float) -> float:
        try:
            wait_socket(self.socket, timeout)
        except TimeoutError:
            if self.proc.poll() is not None:
                raise RuntimeError(f"runtime exited with {self.proc.returncode}; see "
                                   f"/var/tmp/bench-{self.label}-last.log")
            raise
        return (time.perf_counter() - self.t0) * 1000

    def stop(self) -> None:
        """Stop the daemon; its log is kept as /var/tmp/bench-<label>-last.log."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        shutil.copyfile(self.log.name, f"/var/tmp/bench-{self.label}-last.log")

    def remove(self) -> None:
        """Stop the daemon and, for a directory of our own, remove every trace of it:
        containers left running, mounts below it, the directory."""
        self.stop()
        if not self.own_dir:
            return
        statedir.wipe(self.dir)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runtime-socket", help="our runtime's unix socket "
                   "(default $LXD_DIR/unix.socket when LXD_DIR is set)")
    p.add_argument("--start-runtime", action="store_true",
                   help="start our runtime on a temporary LXD_DIR for this run")
    p.add_argument("--runtime-bin", default=os.path.join(REPO, ".venv/bin/nova-lxd-runtime"))
    p.add_argument("--runtime-dir", help="LXD_DIR for --start-runtime (default: a new temp dir)")
    p.add_argument("--runtime-profile", action="append",
                   help="profile(s) for our instances (default: auto, see README)")
    p.add_argument("--no-runtime", action="store_true", help="skip our runtime")
    p.add_argument("--compare-lxd", action="store_true", help="add Debian's LXD column")
    p.add_argument("--lxd-socket", default="/var/lib/lxd/unix.socket")
    p.add_argument("--lxd-profile", action="append",
                   help="profile(s) for LXD instances (default bench-lxd, made by lxd_baseline.sh)")
    p.add_argument("--raw-lxc", action="store_true", help="add the raw liblxc floor column")
    p.add_argument("--remote", action="store_true",
                   help="also copy between two daemons over TLS: a second runtime (with "
                        "--start-runtime, or --runtime-remote-socket) and a second LXD")
    p.add_argument("--big-mb", type=int, default=200,
                   help="with --remote: size of the file for the copy throughput (0: skip)")
    p.add_argument("--runtime-remote-socket", help="a second runtime with core.https_address")
    p.add_argument("--lxd-remote-socket", default="/var/lib/bench-lxd2/unix.socket",
                   help="second LXD (lxd_baseline.sh second)")
    p.add_argument("--image", help="unified busybox image tarball (default: built)")
    p.add_argument("-n", "--launches", type=int, default=10, help="timed launches (median)")
    p.add_argument("--exec-reps", type=int, default=30)
    p.add_argument("--reps", type=int, default=5, help="snapshot/restore/copy repetitions")
    p.add_argument("--density", type=int, default=20, help="containers for the density phase")
    p.add_argument("--settle", type=float, default=3.0,
                   help="seconds to wait before measuring memory with all running")
    p.add_argument("--rounds", type=int, default=1,
                   help="repeat all phases, pooling samples (evens out a shared machine's load)")
    p.add_argument("--phases", help="comma list: server,warmup,lifecycle,density,snapshots")
    p.add_argument("--json", help="write all samples to this file")
    p.add_argument("--py-spy", metavar="DIR",
                   help="sample our daemon with py-spy during each phase (collapsed stacks "
                        "in DIR/<phase>.txt; pip install py-spy into the venv)")
    args = p.parse_args(argv)

    if os.geteuid() != 0:
        print("runtime_bench: run as root (containers, /proc of other users)", file=sys.stderr)
        return 2
    image = build_image(args.image)
    args.image_path = image
    load0 = os.getloadavg()[0]
    results = Results()
    targets: list[Any] = []
    rt_proc: RuntimeProcess | None = None
    rt2_proc: RuntimeProcess | None = None
    remotes: list[ApiTarget] = []
    try:
        if not args.no_runtime:
            sock = args.runtime_socket
            if args.start_runtime:
                rt_proc = RuntimeProcess(args.runtime_bin, args.runtime_dir)
                sock = rt_proc.socket
            elif not sock and os.environ.get("LXD_DIR"):
                sock = os.path.join(os.environ["LXD_DIR"], "unix.socket")
            if not sock:
                p.error("no runtime socket: use --start-runtime, --runtime-socket or LXD_DIR "
                        "(or --no-runtime)")
            targets.append(ApiTarget("runtime", "nova-lxd runtime", sock, "bench-r",
                                     args.runtime_profile))
        if args.compare_lxd:
            targets.append(ApiTarget("lxd", "LXD 5.0.2", args.lxd_socket, "bench-x",
                                     args.lxd_profile or ["bench-lxd"]))
        if args.raw_lxc:
            from rawlxc import RawLxc
            targets.append(RawLxc(image))
        if not targets:
            p.error("nothing to measure")

        if args.remote:
            for t in targets:
                if t.key == "runtime":
                    sock2 = args.runtime_remote_socket
                    if not sock2 and rt_proc is not None:
                        rt2_proc = RuntimeProcess(args.runtime_bin, None, "runtime2")
                        sock2 = rt2_proc.socket
                    if sock2:
                        t.remote = ApiTarget("runtime2", "runtime #2", sock2, "bench-q",
                                             args.runtime_profile)
                    else:
                        t.remote_reason = "no second runtime (--runtime-remote-socket)"
                elif t.key == "lxd":
                    t.remote = ApiTarget("lxd2", "LXD #2", args.lxd_remote_socket, "bench-y",
                                         ["bench-lxd"])
                else:
                    t.remote_reason = "no daemon"
            for t in targets:
                src = getattr(t, "remote", None)
                if src is None:
                    continue
                try:
                    if src.key == "runtime2" and rt2_proc is not None:
                        rt2_proc.ready(60)
                        src.client.request("PATCH", "/1.0", {"config": {
                            "core.https_address": "127.0.0.1:8450"}})
                    wait_socket(src.socket_path, 10)
                    src.ensure_image(image)
                    if src.key == "runtime2":
                        src.ensure_profile("bench-rtbr0", "10.252.0.1/24")
                    remotes.append(src)
                    pid2 = src.server_pid()
                    results.note(t.key, f"second daemon ({src.title}, used only by this "
                                        f"benchmark) RSS {memory.rss_kb(pid2) / 1024:.1f} MB")
                except Exception as e:  # noqa: BLE001
                    t.remote = None
                    t.remote_reason = f"failed: second daemon: {short(e)}"
        for t in targets:
            try:
                if t.key == "runtime" and rt_proc is not None:
                    results.put("runtime", "daemon_ready", round(rt_proc.ready(60), 1))
                if isinstance(t, ApiTarget):
                    wait_socket(t.socket_path, 30)
                    t.ensure_image(image)
                    if t.key == "runtime":
                        t.ensure_profile("bench-rtbr0", "10.252.0.1/24")
                else:
                    t.setup()
            except Exception as e:  # noqa: BLE001
                t.broken = f"failed: set-up: {short(e)}"
                results.note(t.key, f"set-up failed: {e}")
        Bench(args, targets, results).run()
    finally:
        for t in remotes + targets:
            try:
                t.teardown()
            except Exception as e:  # noqa: BLE001
                print(f"[bench] teardown of {t.title}: {e}", file=sys.stderr)
        for proc in (rt2_proc, rt_proc):
            if proc is not None:
                proc.remove()

    print()
    print(f"busybox image {os.path.basename(image)}; {args.launches} launches, "
          f"{args.exec_reps} exec reps, {args.reps} snapshot reps, density {args.density}; "
          f"host {os.uname().release}, {os.cpu_count()} cpus, load average "
          f"{load0:.1f} at start, {os.getloadavg()[0]:.1f} at end; "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print(render(results, targets))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"values": results.values, "samples": results.samples,
                       "notes": results.notes}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
