"""Failures of one compute host, on purpose: crash or stop its nova-compute or
its runtime, kill its containers, start them again, give its nova-compute
options of its own.

Why a crash is not supervisor's stop: a stop sends SIGTERM, and nova-compute
then shuts down gracefully (its driver's cleanup_host runs). A crash must
give the process no chance at all, and supervisor must not restart it behind
the caller's back (``autorestart=unexpected``). So the process group is
frozen first (SIGSTOP), supervisor is asked to stop it (its SIGTERM stays
pending on a frozen process, and an exit while stopping is expected), and the
group is then killed with SIGKILL: the process dies where it was frozen.

Used by tests/functional/cloud/test_host_failures.py.
"""
from __future__ import annotations

import datetime
import os
import signal
import time
import xmlrpc.client

from cloud import config, inifile, layout, readiness, services, supervisor
from cloud.inifile import Sections
from cloud.layout import Node


def node(host: str) -> Node:
    """The compute host named *host* (``nlxc-host2``)."""
    number = host.removeprefix(layout.PREFIX + "-host")
    if not number.isdigit():
        raise ValueError(f"{host} is not a compute host of the cloud")
    return layout.compute_node(int(number))


def compute(n: Node) -> str:
    """Supervisor's program name of *n*'s nova-compute."""
    return f"nova-compute-{n.short}"


def runtime(n: Node) -> str:
    """Supervisor's program name of *n*'s runtime daemon."""
    return f"runtime-{n.short}"


def _service(name: str) -> services.Service:
    for n in _computes():
        for service in services.compute_host(n):
            if service.name == name:
                return service
    raise KeyError(name)


def _computes() -> list[Node]:
    from cloud import orchestrate

    return orchestrate.computes(orchestrate.saved_hosts() or 0)


def _state(name: str) -> dict:
    return supervisor.rpc().supervisor.getProcessInfo(name)


def state(name: str) -> str:
    """Supervisor's state of program *name* (RUNNING, STOPPED, ...)."""
    return _state(name)["statename"]


def crash(name: str, timeout: float = 30) -> None:
    """kill -9 program *name* (and its process group), and keep it down."""
    info = _state(name)
    if info["statename"] != "RUNNING":
        raise RuntimeError(f"{name} is {info['statename']}, not running")
    pgid = info["pid"]
    os.killpg(pgid, signal.SIGSTOP)
    try:
        supervisor.rpc().supervisor.stopProcess(name, False)
    except xmlrpc.client.Fault:
        pass
    os.killpg(pgid, signal.SIGKILL)
    _wait_stopped(name, timeout)


def stop(name: str) -> None:
    """A clean stop (SIGTERM, then SIGKILL after the program's stop wait)."""
    supervisor.stop([name])


def _wait_stopped(name: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while _state(name)["statename"] not in ("STOPPED", "EXITED", "FATAL"):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{name} is still {_state(name)['statename']}")
        time.sleep(0.1)


def start(name: str, timeout: float | None = None) -> None:
    """Start program *name* and wait until it does its job again.

    nova-compute is ready when it has reported to nova after this start: its
    service record may still look up from before a crash, and it reports only
    once init_host (which reconciles the host's instances) is over. A host
    that nova has forced down starts the same way (nova lets it be forced up
    only once it has started and cleaned up what was evacuated)."""
    service = _service(name)
    since = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None, microsecond=0)
    supervisor.start(name)
    deadline = time.monotonic() + (timeout or service.timeout)
    why = "not started"
    while time.monotonic() < deadline:
        state = _state(name)["statename"]
        if state in ("FATAL", "EXITED", "BACKOFF", "STOPPED"):
            raise RuntimeError(f"{name} is {state}; see {service.log}")
        if state == "RUNNING":
            if name.startswith("nova-compute-"):
                # up or forced down in nova alike: it reported again
                why = _reported_since(node(service.namespace or ""), since)
            else:
                why = service.ready() or ""
            if not why:
                return
        time.sleep(0.5)
    raise TimeoutError(f"{name} is not ready: {why}; see {service.log}")


def _reported_since(n: Node, since: datetime.datetime) -> str:
    found = [s for s in readiness.admin().compute.services(binary="nova-compute")
             if s.host == n.name]
    if not found or not found[0].updated_at:
        return f"nova-compute on {n.name} has not reported"
    updated = datetime.datetime.fromisoformat(found[0].updated_at.rstrip("Z"))
    updated = updated.replace(tzinfo=None)
    return "" if updated > since else f"nova-compute on {n.name} has not reported since {since}"


def container_processes(n: Node) -> list[int]:
    """Pids of *n*'s containers: liblxc's monitors of its runtime (found as
    tools.statedir finds any runtime's) and everything under them."""
    from tools import statedir
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat.rsplit(b")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid for pid, _, _ in statedir.monitors_below(layout.runtime_dir(n))]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += children.get(pid, [])
    return found


def kill_containers(n: Node) -> int:
    """SIGKILL every container of *n* (their monitors and all they run), as a
    power cut does; return how many processes were killed."""
    pids = container_processes(n)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 30
    while any(os.path.exists(f"/proc/{p}") and _alive(p) for p in pids):
        if time.monotonic() > deadline:
            raise TimeoutError(f"processes of {n.name}'s containers survived SIGKILL")
        time.sleep(0.1)
    return len(pids)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except OSError:
        return False


def crash_host(n: Node) -> None:
    """A host that lost power: its containers, runtime and nova-compute die
    at once (OVS and its agent stand for the network, which stays)."""
    for pid in container_processes(n):  # frozen first: none reacts to the others
        try:
            os.kill(pid, signal.SIGSTOP)
        except ProcessLookupError:
            pass
    crash(compute(n))
    crash(runtime(n))
    kill_containers(n)


def boot_host(n: Node) -> None:
    """The host back: its runtime, then nova-compute (which reconciles)."""
    start(runtime(n))
    start(compute(n))


def write_compute_options(n: Node, sections: Sections) -> None:
    """Give *n*'s nova-compute *sections* of its own, over the cloud's
    configuration (empty: none), from its next start on."""
    inifile.write(config.compute_local_conf(n), sections)
