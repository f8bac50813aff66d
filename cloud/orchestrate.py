"""``up``, ``status`` and ``down``: bring the service table to life in stages.

Every step is idempotent: ``up`` on a running cloud checks and returns, ``up``
after a failure or an interrupt picks up where things are. Services start in
stages (those of one stage together, then each waits for its readiness), so
a failure names the service and shows its log's last lines.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable

from cloud import (bootstrap, config, horizon, infra, inifile, layout, netns, readiness,
                   resources, services, supervisor)
from cloud.layout import Node
from cloud.services import Service

Progress = Callable[[str], None]


class ServiceFailed(RuntimeError):
    """A service did not become ready: its name, why, and its log's tail."""

    def __init__(self, service: Service, why: str):
        self.service = service
        tail = log_tail(service.log)
        super().__init__(f"{service.name} did not become ready: {why}\n"
                         f"--- last lines of {service.log} ---\n{tail}")


def log_tail(path: str, lines: int = 20) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(max(0, os.path.getsize(path) - 64 * 1024))
            return "\n".join(f.read().decode(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def computes(count: int) -> list[Node]:
    return [layout.compute_node(i) for i in range(1, count + 1)]


def saved_hosts() -> int | None:
    try:
        with open(os.path.join(layout.CACHE, "cloud.json")) as f:
            return len(json.load(f)["hosts"])
    except (OSError, ValueError, KeyError):
        return None


def _wait(batch: list[Service], progress: Progress) -> None:
    started = time.monotonic()
    pending = {s.name: s for s in batch}
    deadline = {s.name: time.monotonic() + s.timeout for s in batch}
    why: dict[str, str] = {}
    while pending:
        states = supervisor.states()
        for name, service in list(pending.items()):
            state = states.get(name, {}).get("statename")
            if state in ("FATAL", "EXITED", "BACKOFF", "STOPPED"):
                raise ServiceFailed(service, f"its process is {state}")
            if state == "RUNNING":
                why[name] = service.ready() or ""
                if not why[name]:
                    del pending[name]
                    continue
            if time.monotonic() > deadline[name]:
                raise ServiceFailed(service, why.get(name) or f"still {state}")
        if pending:
            time.sleep(0.5)
    progress(f"  up in {time.monotonic() - started:.1f} s")


def _start(batch: list[Service], progress: Progress) -> None:
    for service in batch:
        supervisor.start(service.name)
    _wait(batch, progress)


# Compute hosts whose agents and nova-compute start together. Each host's
# OVS agent and nova-compute cost about 10 s of CPU to start (imports, the
# first RPC round trips): ten hosts at once on two cores took every one of
# them past its readiness timeout. Hosts start in waves of this many, the
# first wave with the network node's agents; two hosts are one wave, as before.
HOST_WAVE = 4


def _stages(table: list[Service], nodes: list[Node]) -> list[tuple[str, list[Service]]]:
    by = {s.name: s for s in table}

    def pick(*names: str) -> list[Service]:
        return [by[n] for n in names]

    control = [s for s in table if s.group == "control" and s.name != "keystone"]
    ovs = [s for s in table if s.name.startswith(("ovsdb-server-", "ovs-vswitchd-"))]
    runtimes = [s for s in table if s.name.startswith("runtime-")]
    host_names = {n.short for n in nodes}
    net_agents = [s for s in table if s.group == "network" and s not in ovs
                  and s.name.rsplit("-", 1)[-1] not in host_names]

    def host_services(node: Node) -> list[Service]:
        return [s for s in table if s.name in (f"neutron-ovs-agent-{node.short}",
                                                f"nova-compute-{node.short}")]

    # Two cores: what does not wait on something else starts together. The
    # switches need their database (ovs-vswitchd waits for it by itself); the
    # OVS agents need the bridges made after this stage (tunnel endpoints);
    # nova-compute needs its runtime.
    stages = [
        ("infra", pick("mariadb", "rabbitmq", "memcached")),
        ("identity", pick("keystone")),
        ("control", control + ovs + runtimes),
    ]
    for first in range(0, max(len(nodes), 1), HOST_WAVE):
        wave = nodes[first:first + HOST_WAVE]
        batch = [s for node in wave for s in host_services(node)]
        if first == 0:
            stages.append(("agents", net_agents + batch))
        else:
            stages.append((f"hosts {wave[0].short}-{wave[-1].short}", batch))
    return stages


def up(hosts: int, progress: Progress = print) -> dict:
    """Bring the cloud up with *hosts* compute hosts; return cloud.json."""
    if os.geteuid() != 0:
        raise SystemExit("cloud: run as root")
    previous = saved_hosts()
    if previous is not None and supervisor.pid() and previous != hosts:
        raise SystemExit(f"cloud: a cloud with {previous} hosts is up; "
                         "`scripts/cloud down` first to change the number of hosts")
    started = time.monotonic()
    nodes = computes(hosts)
    progress(f"network: namespaces {layout.NETWORK_NODE.name}, "
             + ", ".join(n.name for n in nodes))
    netns.create([layout.NETWORK_NODE, *nodes])
    for d in ("logs", "run", "glance", "nova", "neutron"):
        os.makedirs(layout.path(d), exist_ok=True)
    for node in [layout.NETWORK_NODE, *nodes]:
        infra.prepare_ovs(node)
        os.makedirs(config.neutron_node_state(node), exist_ok=True)
    for node in nodes:
        os.makedirs(layout.host_dir(node, "nova", "instances"), exist_ok=True)
        os.makedirs(layout.runtime_dir(node), mode=0o711, exist_ok=True)
        # unprivileged container roots must cross every parent directory
        for d in (layout.STATE, layout.path("hosts"), layout.host_dir(node),
                  layout.runtime_dir(node)):
            os.chmod(d, 0o711)
    infra.prepare_mariadb()
    infra.prepare_rabbitmq()
    config.write_all(nodes)
    horizon.write_settings()
    horizon.collect_static(progress)
    table = services.table(nodes)
    supervisor.ensure(table)
    # A running service whose configuration changed starts again with it.
    running = supervisor.states()
    stale = [s.name for s in table if running.get(s.name, {}).get("statename") == "RUNNING"
             and any(s.reads(path) for path in inifile.CHANGED)]
    if stale:
        progress(f"configuration changed: restarting {', '.join(stale)}")
        supervisor.stop(stale)
    for stage, batch in _stages(table, nodes):
        progress(f"starting {stage}: {', '.join(s.name for s in batch)}")
        if stage == "identity":
            t = time.monotonic()
            infra.create_databases()
            bootstrap.keys()
            bootstrap.schemas(progress)
            progress(f"  databases ready in {time.monotonic() - t:.1f} s")
        _start(batch, progress)
        if stage == "identity":
            bootstrap.identity()
            readiness.forget_admin()
        if stage == "control":
            for node in [layout.NETWORK_NODE, *nodes]:
                infra.bridges(node)
            for node in nodes:
                infra.configure_runtime(node)
    bootstrap.discover_hosts()
    progress("resources: images, flavors, networks, security groups")
    t = time.monotonic()
    images = resources.ensure(progress)
    progress(f"  resources ready in {time.monotonic() - t:.1f} s")
    info = write_client_files(nodes, images)
    progress(f"cloud up in {time.monotonic() - started:.0f} s: {len(table)} services, "
             f"{hosts} compute hosts")
    return info


def write_client_files(nodes: list[Node], images: dict[str, str]) -> dict:
    """clouds.yaml (member and admin) and cloud.json (hosts, logs, images)."""
    import yaml

    os.makedirs(layout.CACHE, exist_ok=True)
    auth = {"auth_url": layout.url("keystone", "/v3"), "user_domain_name": "Default",
            "project_domain_name": "Default"}
    clouds = {"clouds": {
        "nova-lxd": {"auth": {**auth, "username": layout.MEMBER_USER,
                              "password": layout.MEMBER_PASSWORD,
                              "project_name": layout.MEMBER_PROJECT},
                     "region_name": layout.REGION, "identity_api_version": 3},
        "nova-lxd-admin": {"auth": {**auth, "username": "admin",
                                    "password": layout.ADMIN_PASSWORD,
                                    "project_name": "admin"},
                           "region_name": layout.REGION, "identity_api_version": 3},
    }}
    with open(os.path.join(layout.CACHE, "clouds.yaml"), "w") as f:
        yaml.safe_dump(clouds, f, sort_keys=False)
    info = {
        "clouds_yaml": os.path.join(layout.CACHE, "clouds.yaml"),
        "auth_url": layout.url("keystone", "/v3"),
        "state": layout.STATE,
        "logs": layout.path("logs"),
        "network_node": {"namespace": layout.NETWORK_NODE.name,
                         "ovs_rundir": layout.NETWORK_NODE.ovs_dir},
        "hosts": [{"name": n.name, "namespace": n.name, "address": n.mgmt_ip,
                   "runtime_socket": layout.runtime_socket(n),
                   "lxd_dir": layout.runtime_dir(n), "ovs_rundir": n.ovs_dir}
                  for n in nodes],
        "images": images,
        "dashboard": horizon.url(),
        "serial_console_proxy": f"ws://{layout.MGMT_IP}:{layout.PORTS['nova-serialproxy']}/",
        "external": {"cidr": layout.EXT_CIDR, "machine_address": layout.EXT_IP},
    }
    with open(os.path.join(layout.CACHE, "cloud.json"), "w") as f:
        json.dump(info, f, indent=2)
    return info


def status(out: Callable[[str], None] = print) -> int:
    """Print every service with its state; non-zero when something is down."""
    hosts = saved_hosts()
    states = supervisor.states()
    if not states:
        out("cloud: down (no supervisor running)")
        return 3
    table = services.table(computes(hosts or 0))
    bad = 0
    out(f"{'service':28} {'namespace':14} {'process':10} {'ready':6} pid")
    for service in table:
        info = states.get(service.name, {})
        state = info.get("statename", "MISSING")
        ready = "-"
        if state == "RUNNING":
            why = service.ready()
            ready = "yes" if not why else "no"
        if state != "RUNNING" or ready != "yes":
            bad += 1
        out(f"{service.name:28} {service.namespace or '-':14} {state:10} {ready:6} "
            f"{info.get('pid') or ''}")
    from cloud import memory
    mb, count = memory.total_mb()
    out(f"memory: {mb:.0f} MB (PSS) in {count} processes")
    dashboard = states.get("horizon", {}).get("statename") == "RUNNING"
    out(f"dashboard: {horizon.url() if dashboard else 'not running'} (user "
        f"{layout.MEMBER_USER}, password {layout.MEMBER_PASSWORD})")
    out(f"logs: {layout.path('logs')}; clients: "
        f"OS_CLIENT_CONFIG_FILE={os.path.join(layout.CACHE, 'clouds.yaml')}")
    return 1 if bad else 0


def down(progress: Progress = print) -> None:
    """Stop everything and remove all the cloud made (state, namespaces, links)."""
    from tools import statedir

    hosts = saved_hosts() or 0
    if supervisor.pid():
        nodes = computes(max(hosts, 1))
        known = supervisor.states()
        progress("stopping services")
        for stage, batch in reversed(_stages(services.table(nodes), nodes)):
            t = time.monotonic()
            supervisor.stop([s.name for s in batch if s.name in known])
            progress(f"  stopped {stage} in {time.monotonic() - t:.1f} s")
        supervisor.shutdown()
    _kill_strays(progress)
    hosts_dir = layout.path("hosts")
    if os.path.isdir(hosts_dir):
        for name in os.listdir(hosts_dir):
            lxd = os.path.join(hosts_dir, name, "lxd")
            if os.path.isdir(lxd):
                progress(f"removing the containers and state of {name}'s runtime")
                statedir.wipe(lxd, bridges=False)
    removed = netns.destroy()
    if removed:
        progress(f"removed {len(removed)} namespaces and links")
    if os.path.isdir(layout.STATE):
        shutil.rmtree(layout.STATE)
    if os.path.isdir("/run/nlxc-cgroup-keep"):  # ns-exec's mount point
        os.rmdir("/run/nlxc-cgroup-keep")
    for name in ("cloud.json", "clouds.yaml", "tempest"):
        target = os.path.join(layout.CACHE, name)
        if os.path.isdir(target):
            shutil.rmtree(target)
        elif os.path.exists(target):
            os.unlink(target)
    progress("cloud down: nothing left")


def _kill_strays(progress: Progress) -> None:
    """Processes of the cloud outside supervisor's process groups: dnsmasq and
    haproxy spawned by Neutron's agents, privsep daemons, epmd (RabbitMQ's
    port mapper). They are found by their command lines naming the state
    directory (or, for epmd, by RabbitMQ's home)."""
    mine = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ")
            with open(f"/proc/{pid}/environ", "rb") as f:
                env = f.read()
        except OSError:
            continue
        if layout.STATE.encode() in cmd or (b"epmd" in cmd and layout.STATE.encode() in env):
            mine.append(int(pid))
    for pid in mine:
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            pass
    if mine:
        progress(f"stopped {len(mine)} helper processes (dnsmasq, haproxy, privsep, epmd)")
    subprocess.run(["sync"], check=False)
