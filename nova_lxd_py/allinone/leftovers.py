"""Remove what a killed all-in-one cloud left behind.

Ctrl-C and SIGTERM clean up in-process; SIGKILL (or a crash of the machine's
OOM killer's choosing) cannot. Each cloud records its own pid and its runtime
daemons' pids in ``<state_dir>/aio.pids``; the next cloud started next to it
stops those daemons (only if they still are nova-lxd-runtime processes of that
state directory) and removes the directory.
"""
from __future__ import annotations

import glob
import os
import signal
import time
from collections.abc import Callable

from nova_lxd_py.allinone import network
from nova_lxd_py.allinone.runtimes import wipe_state_dir

PIDS_FILE = "aio.pids"


def record(state_dir: str, demo_pid: int, runtime_pids: list[int],
           names: list[tuple[str, str]] = ()) -> None:
    """Write what a cloud made: its pid, its daemons, its netns and bridge."""
    with open(os.path.join(state_dir, PIDS_FILE), "w") as f:
        f.write(f"demo {demo_pid}\n")
        for pid in runtime_pids:
            f.write(f"runtime {pid}\n")
        for kind, name in names:
            f.write(f"{kind} {name}\n")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def _is_runtime_of(pid: int, state_dir: str) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read()
        with open(f"/proc/{pid}/environ", "rb") as f:
            environ = f.read().split(b"\0")
    except OSError:
        return False
    prefix = b"LXD_DIR=" + os.path.abspath(state_dir).encode() + b"/"
    return b"nova-lxd-runtime" in cmdline and any(e.startswith(prefix) for e in environ)


def clean(parent: str, pattern: str = "aio-*",
          progress: Callable[[str], None] = print) -> list[str]:
    """Clean every dead cloud's state directory under *parent*; return them."""
    cleaned = []
    for pids_file in glob.glob(os.path.join(parent, pattern, PIDS_FILE)):
        state_dir = os.path.dirname(pids_file)
        try:
            with open(pids_file) as f:
                entries = [line.split() for line in f if line.strip()]
        except OSError:
            continue
        demo = [int(pid) for kind, pid in entries if kind == "demo"]
        names = [(kind, name) for kind, name in entries
                 if kind in ("netns", "bridge") and name.startswith("aio")]
        if any(_alive(pid) for pid in demo):
            continue  # a running cloud: not ours to touch
        for kind, pid in entries:
            if kind == "runtime" and _is_runtime_of(int(pid), state_dir):
                os.kill(int(pid), signal.SIGTERM)
                for _ in range(100):
                    if not _alive(int(pid)):
                        break
                    time.sleep(0.1)
        wipe_state_dir(state_dir)
        network.remove(names)
        progress(f"removed the leftovers of a killed cloud in {state_dir}")
        cleaned.append(state_dir)
    return cleaned
