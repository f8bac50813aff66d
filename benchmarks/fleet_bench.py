#!/usr/bin/env python3
"""Many hosts: boot a fleet of servers through the Compute API of the real cloud.

For each host count (default: 2, then 10, in one run) it brings the cloud up
(`cloud/`, the same code as `scripts/cloud up --hosts N`), boots servers as the
member user with openstacksdk (image `busybox`, flavor `c1.tiny`, network
`private`, no floating IPs), measures, deletes them all and takes the cloud down.

Boots, in this order:
- batches: ``POST /servers`` with ``min_count = max_count = --batch`` until only
  ``--single`` servers are left of ``--servers``;
- one by one: ``--single`` servers, each created and waited for before the next.

**Per-server time to ACTIVE** (what the same-run ratio compares):
- ``single``: the median over the one-by-one boots of create→ACTIVE, from just
  before ``POST /servers`` to the first poll (every 0.25 s) that reads ACTIVE;
  the one-by-one boots come after the batches, so they run on the loaded fleet;
- ``batch/server``: over all batches, the sum of each batch's create→all-ACTIVE
  (POST to the poll that reads every server of the reservation ACTIVE) divided
  by the number of servers booted in batches: the fleet's throughput as a cost
  per server;
- ``batch median``: the median create→ACTIVE of the servers inside the batches.
The ratio of each figure, N hosts over the first host count of the run, is
printed; the target is 1.2 at most.

Also reported: the time to bring the cloud up; servers per host (the
scheduler's spread, read as admin); the cloud's memory (PSS summed over its
processes, `cloud/memory.py`, the README's figure) idle and with every server
ACTIVE, split into the control plane, the network node, each compute host
(its services, its privsep helpers, its containers' liblxc monitors) and the
containers themselves; the time to delete them all (first ``DELETE`` to nova
listing none and every host's runtime empty).

    flock -o /var/lock/nlx-cloud.lock .venv/bin/python benchmarks/fleet_bench.py \\
        [--hosts 2 10] [--servers 40 100] [--batch 10] [--single 10] [--json out.json] \
        [--precache] [--security-group default|cidr]

``--precache`` caches the image on every host first (nova's aggregate image
cache), as an operator readies a fleet; ``--security-group cidr`` boots into a
group without remote-group rules (no membership fan-out to every host's agent).
Also reported: CPU seconds per server booted, by service (benchmarks/README).

Runs as root (it brings the cloud up and reads /proc). ``--keep`` leaves the
last cloud up; ``--no-up`` measures the cloud that is up now (its host count).
"""
from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import re
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)

from benchmarks.memory import children_map, cmdline, pss_kb, subtree  # noqa: E402
from cloud import layout, memory, netns, orchestrate, readiness, resources, supervisor  # noqa: E402

PREFIX = "fleet-"
POLL = 0.25
HOST_RE = re.compile(rf"{layout.PREFIX}-host(\d+)\b")


def log(line: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {line}", flush=True)


# ---------------------------------------------------------------- boots

class Fleet:
    """The member's servers of this run, polled as one detailed list."""

    def __init__(self, conn, image_id: str, flavor_id: str, net_id: str, timeout: float,
                 security_group: str = "default"):
        self.conn = conn
        self.image_id, self.flavor_id, self.net_id = image_id, flavor_id, net_id
        self.security_group = security_group
        self.timeout = timeout
        self.active_at: dict[str, float] = {}     # server id -> monotonic time seen ACTIVE
        self.faults: dict[str, str] = {}          # server id -> fault message

    def _create(self, name: str, count: int) -> None:
        self.conn.compute.create_server(
            name=name, image_id=self.image_id, flavor_id=self.flavor_id,
            networks=[{"uuid": self.net_id}], min_count=count, max_count=count,
            security_groups=[{"name": self.security_group}])

    def _wait(self, name: str, count: int, started: float) -> list[str]:
        """Poll the servers named *name* (a batch is named ``name-1`` .. ``name-N``
        by nova) until all *count* are ACTIVE or ERROR; return their ids."""
        pattern = f"^{re.escape(name)}(-[0-9]+)?$"
        while True:
            servers = _retry(lambda: list(self.conn.compute.servers(name=pattern)))
            now = time.monotonic()
            done = 0
            for s in servers:
                if s.status == "ACTIVE":
                    self.active_at.setdefault(s.id, now)
                    done += 1
                elif s.status == "ERROR":
                    if s.id not in self.faults:
                        full = self.conn.compute.get_server(s.id)
                        self.faults[s.id] = (full.fault or {}).get("message", "ERROR")
                        log(f"  {s.name} ERROR: {self.faults[s.id]}")
                    done += 1
            if len(servers) >= count and done >= count:
                return [s.id for s in servers]
            if now - started > self.timeout:
                raise TimeoutError(f"{name}: {done} of {count} done after {self.timeout:.0f} s")
            time.sleep(POLL)

    def boot(self, name: str, count: int) -> dict:
        started = time.monotonic()
        self._create(name, count)
        ids = self._wait(name, count, started)
        ok = [i for i in ids if i in self.active_at]
        per = [self.active_at[i] - started for i in ok]
        return {"name": name, "count": count, "active": len(ok),
                "wall_s": max(per) if per else time.monotonic() - started,
                "per_server_s": per}


def boot_all(fleet: Fleet, total: int, batch: int, single: int, tag: str) -> dict:
    batches, singles = [], []
    left = total - single
    n = 0
    while left > 0:
        size = min(batch, left)
        n += 1
        r = fleet.boot(f"{PREFIX}{tag}-b{n:02d}", size)
        batches.append(r)
        log(f"  batch {n}: {r['active']}/{size} ACTIVE in {r['wall_s']:.1f} s")
        left -= size
    for i in range(1, single + 1):
        r = fleet.boot(f"{PREFIX}{tag}-s{i:02d}", 1)
        singles.append(r)
        log(f"  single {i}: {'ACTIVE' if r['active'] else 'ERROR'} in {r['wall_s']:.1f} s")
    in_batches = sum(b["count"] for b in batches)
    per_batch = [t for b in batches for t in b["per_server_s"]]
    per_single = [t for s in singles for t in s["per_server_s"]]
    return {
        "batches": [{k: v for k, v in b.items() if k != "per_server_s"} for b in batches],
        "singles_s": per_single,
        "single_median_s": statistics.median(per_single) if per_single else None,
        "batch_per_server_s": (sum(b["wall_s"] for b in batches) / in_batches
                               if in_batches else None),
        "batch_median_s": statistics.median(per_batch) if per_batch else None,
        "active": len(fleet.active_at), "errors": len(fleet.faults),
        "faults": sorted(set(fleet.faults.values())),
    }


def _retry(call, tries: int = 5):
    """An API call retried on a server error: under load nova-api answered a
    listing with 500 once (its own call to Neutron failed), after every
    server was ACTIVE."""
    import openstack.exceptions

    for attempt in range(tries):
        try:
            return call()
        except openstack.exceptions.HttpException as e:
            if attempt == tries - 1 or (e.status_code or 500) < 500:
                raise
            log(f"  retrying after {e.status_code}: {e}")
            time.sleep(5)


def spread(adm) -> dict[str, int]:
    counts: dict[str, int] = {}
    for s in _retry(lambda: list(adm.compute.servers(all_projects=True))):
        if s.name.startswith(PREFIX) and s.status == "ACTIVE":
            counts[s.compute_host] = counts.get(s.compute_host, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: int(HOST_RE.search(kv[0]).group(1))))


def runtime_instances(hosts: int) -> int:
    """Instances the hosts' runtimes still hold (their on-disk containers)."""
    total = 0
    for node in orchestrate.computes(hosts):
        d = os.path.join(layout.runtime_dir(node), "containers")
        if os.path.isdir(d):
            total += len(os.listdir(d))
    return total


def delete_all(conn, hosts: int, timeout: float) -> dict:
    started = time.monotonic()
    servers = [s for s in conn.compute.servers() if s.name.startswith(PREFIX)]
    # Four at a time, as a client cleaning up a fleet would (nova-api has one
    # worker with four threads here).
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        list(pool.map(conn.compute.delete_server, servers))
    issued = time.monotonic() - started
    while True:
        left = [s for s in _retry(lambda: list(conn.compute.servers()))
                if s.name.startswith(PREFIX)]
        if not left:
            break
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"{len(left)} servers left after {timeout:.0f} s")
        time.sleep(POLL)
    nova_s = time.monotonic() - started
    while runtime_instances(hosts) and time.monotonic() - started < timeout:
        time.sleep(POLL)
    return {"count": len(servers), "requests_s": issued, "nova_s": nova_s,
            "runtimes_empty_s": time.monotonic() - started,
            "runtime_left": runtime_instances(hosts)}


# ---------------------------------------------------------------- set-up

CACHE_AGGREGATE = "fleet-image-cache"
CIDR_GROUP = "fleet-cidr"


def precache(adm, image_id: str, hosts: int, timeout: float) -> float:
    """The image into every host's runtime before the timed boots, the way an
    operator readies a fleet: nova's image pre-caching (an aggregate of the
    hosts, ``POST /os-aggregates/{id}/images``, microversion 2.81, which calls
    the driver's ``cache_image``). Returns the seconds until every runtime
    holds the image."""
    import pylxd
    from pylxd import exceptions as lxd_exceptions

    started = time.monotonic()
    nodes = orchestrate.computes(hosts)
    agg = adm.compute.find_aggregate(CACHE_AGGREGATE) or adm.compute.create_aggregate(
        name=CACHE_AGGREGATE)
    for node in nodes:
        if node.name not in (agg.hosts or []):
            agg = adm.compute.add_host_to_aggregate(agg, node.name)
    adm.compute.aggregate_precache_images(agg, [image_id])
    missing = list(nodes)
    while missing:
        for node in list(missing):
            client = pylxd.Client(endpoint=layout.runtime_socket(node))
            try:
                client.api.images.aliases[image_id].get()
                missing.remove(node)
            except lxd_exceptions.NotFound:
                pass
        if missing and time.monotonic() - started > timeout:
            raise TimeoutError(f"image not cached on {[n.name for n in missing]}")
        time.sleep(POLL if missing else 0)
    return time.monotonic() - started


def cidr_group(conn, net_id: str) -> str:
    """A security group that admits the private subnet by address, without a
    remote-group rule: a new port then changes no group's membership, so no
    agent refreshes the firewall of its other ports (what the default group's
    ``remote_group_id`` rules make every host do for every port)."""
    sg = conn.network.find_security_group(CIDR_GROUP)
    if sg is None:
        sg = conn.network.create_security_group(name=CIDR_GROUP)
        for subnet in conn.network.subnets(network_id=net_id):
            conn.network.create_security_group_rule(
                security_group_id=sg.id, direction="ingress",
                ethertype=f"IPv{subnet.ip_version}", remote_ip_prefix=subnet.cidr)
    return sg.name


# ---------------------------------------------------------------- memory

def supervised_programs(kids: dict[int, list[int]]) -> dict[int, str]:
    """pid -> the supervisor program it runs under (the program's process and
    all its descendants); *kids*: benchmarks.memory.children_map()."""
    programs = {}
    for name, info in supervisor.states().items():
        if info.get("pid"):
            for p in subtree(info["pid"], kids):
                programs[p] = name
    return programs


def memory_breakdown(hosts: int) -> dict:
    """PSS in MB of the cloud's processes (cloud/memory.py's set), by where
    they belong, plus the containers' own processes (outside that set)."""
    kids = children_map()
    cloud_pids = set(memory.processes())
    programs = supervised_programs(kids)
    inodes = {}
    for ns in netns.namespaces():
        try:
            inodes[os.stat(f"/run/netns/{ns}").st_ino] = ns
        except OSError:
            pass
    out = {"control": 0.0, "network_node": 0.0, "hosts": {}, "containers": 0.0}
    per_host_kind: dict[str, float] = {}
    monitors = []
    for pid in cloud_pids:
        kb = pss_kb(pid) / 1024
        cmd = cmdline(pid)
        prog = programs.get(pid)
        try:
            ns = inodes.get(os.stat(f"/proc/{pid}/ns/net").st_ino)
        except OSError:
            ns = None
        m = HOST_RE.search(prog or "") or HOST_RE.search(ns or "") or HOST_RE.search(cmd)
        if prog and not m and prog.endswith(tuple(f"-host{i}" for i in range(1, hosts + 1))):
            m = re.search(r"host(\d+)$", prog)
        if "lxc monitor" in cmd or cmd.startswith("lxc-start") or "[lxc monitor]" in cmd:
            monitors.append(pid)
        if m:
            host = f"host{m.group(1)}"
            out["hosts"][host] = out["hosts"].get(host, 0.0) + kb
            if "privsep-helper" in cmd:
                kind = "privsep"
            elif pid in monitors:
                kind = "lxc monitors"
            elif prog:
                kind = re.sub(r"-(host\d+)$", "", prog)
            else:
                kind = "other"
            per_host_kind[kind] = per_host_kind.get(kind, 0.0) + kb
        elif ns == layout.NETWORK_NODE.name or (prog or "").endswith("-net") \
                or prog in ("neutron-dhcp-agent", "neutron-l3-agent", "neutron-metadata-agent") \
                or f"{layout.NETWORK_NODE.name}" in cmd or "dhcp_agent.ini" in cmd \
                or "l3_agent.ini" in cmd or "metadata_agent.ini" in cmd:
            out["network_node"] += kb
        else:
            out["control"] += kb
    for mon in monitors:
        for p in subtree(mon, kids):
            if p != mon and p not in cloud_pids:
                out["containers"] += pss_kb(p) / 1024
    total = sum(pss_kb(p) for p in cloud_pids) / 1024
    host_values = list(out["hosts"].values())
    out.update({
        "total": total, "processes": len(cloud_pids),
        "per_host_mean": statistics.mean(host_values) if host_values else 0.0,
        "per_host_by_kind": {k: v / max(1, hosts) for k, v in sorted(per_host_kind.items())},
    })
    return out


def _cpu_ticks(pid: int, children: bool = False) -> int:
    """utime + stime of *pid*; with *children*, plus what its waited-for
    children used (the short-lived helpers: ip, ovs-vsctl, nsenter, lxc-start)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        used = int(fields[11]) + int(fields[12])
        return used + int(fields[13]) + int(fields[14]) if children else used
    except (OSError, IndexError, ValueError):
        return 0


def idle_cpu(seconds: float = 20.0) -> float:
    """CPU the idle cloud burns (periodic tasks, agents' loops, state reports),
    in cores: what is left of the machine's two for the boots."""
    pids = memory.processes()
    before = {p: _cpu_ticks(p) for p in pids}
    time.sleep(seconds)
    used = sum(max(0, _cpu_ticks(p) - t) for p, t in before.items())
    return used / os.sysconf("SC_CLK_TCK") / seconds


def cpu_by_kind():
    """Start counting CPU per kind of service (hosts' services summed as
    ``nova-compute-hostN``); the returned function gives CPU seconds used since,
    by kind. Counted: each cloud process's own time and its waited-for
    children's (the helpers it runs), and processes that started meanwhile
    (liblxc monitors, privsep daemons, dnsmasq) from zero."""
    hz = os.sysconf("SC_CLK_TCK")
    before = {p: _cpu_ticks(p, children=True) for p in memory.processes()}

    def since() -> dict[str, float]:
        programs = supervised_programs(children_map())

        def kind(pid: int) -> str:
            cmd = cmdline(pid)
            if "privsep-helper" in cmd:
                m = re.search(r"privsep_context (\S+)", cmd)
                where = "-hostN" if HOST_RE.search(cmd) else ""
                return "privsep " + (m.group(1) if m else "?") + where
            if pid in programs:
                return re.sub(r"-host\d+$", "-hostN", programs[pid])
            return os.path.basename(cmd.split()[0]) if cmd else "?"

        used: dict[str, float] = {}
        for pid in set(before) | set(memory.processes()):
            k = kind(pid)
            now = _cpu_ticks(pid, children=True)
            used[k] = used.get(k, 0.0) + max(0, now - before.get(pid, 0)) / hz
        return dict(sorted(used.items(), key=lambda kv: -kv[1]))
    return since


# ---------------------------------------------------------------- one phase

def ensure_quota(adm, project: str, servers: int) -> None:
    """The member project's nova quotas (default 10 instances, 20 cores) fit
    the fleet; neutron's port quota (500) already does."""
    adm.set_compute_quotas(project, instances=servers + 20, cores=servers + 40,
                           ram=(servers + 20) * 1024)


def phase(hosts: int, servers: int, batch: int, single: int, up: bool, keep: bool,
          timeout: float, partial: list[dict], cache: bool = False,
          secgroup: str = "default") -> dict:
    result: dict = {"hosts": hosts, "servers": servers, "precache": cache,
                    "security_group": secgroup}
    partial.append(result)   # kept in the JSON even if the phase fails
    if up:
        if supervisor.pid():
            log("cloud down (a cloud is up)")
            orchestrate.down(lambda line: None)
        log(f"cloud up --hosts {hosts}")
        t = time.monotonic()
        orchestrate.up(hosts, lambda line: log(f"  [cloud] {line}"))
        result["up_s"] = time.monotonic() - t
        log(f"  up in {result['up_s']:.0f} s")
    else:
        hosts = orchestrate.saved_hosts() or hosts
        result["hosts"] = hosts
    try:
        conn = resources.member()
        adm = readiness.admin()
        ensure_quota(adm, conn.current_project_id, servers)
        for s in conn.compute.servers():
            if s.name.startswith(PREFIX):
                conn.compute.delete_server(s)
        result["memory_idle_mb"] = memory_breakdown(hosts)
        log(f"  memory idle: {result['memory_idle_mb']['total']:.0f} MB")
        result["idle_cpu_cores"] = idle_cpu()
        log(f"  idle CPU: {result['idle_cpu_cores']:.2f} cores")
        image = conn.image.find_image("busybox", ignore_missing=False)
        flavor = conn.compute.find_flavor("c1.tiny", ignore_missing=False)
        net = conn.network.find_network("private", ignore_missing=False)
        group = cidr_group(conn, net.id) if secgroup == "cidr" else "default"
        fleet = Fleet(conn, image.id, flavor.id, net.id, timeout, group)
        if cache:
            result["precache_s"] = precache(adm, image.id, hosts, timeout)
            log(f"  image cached on {hosts} hosts in {result['precache_s']:.1f} s")
        log(f"booting {servers} servers: batches of {batch}, then {single} one by one")
        t = time.monotonic()
        result["load_before_boots"] = os.getloadavg()
        cpu = cpu_by_kind()
        result["boot"] = boot_all(fleet, servers, batch, single, f"h{hosts}")
        result["boot"]["total_s"] = time.monotonic() - t
        used = cpu()
        result["boot"]["cpu_s_per_server_by_kind"] = {k: v / servers for k, v in used.items()}
        result["boot"]["cpu_s_per_server"] = sum(used.values()) / servers
        result["load_after_boots"] = os.getloadavg()
        result["spread"] = spread(adm)
        result["memory_loaded_mb"] = memory_breakdown(hosts)
        log(f"  memory with {result['boot']['active']} ACTIVE: "
            f"{result['memory_loaded_mb']['total']:.0f} MB")
        log("deleting them all")
        result["delete"] = delete_all(conn, hosts, timeout)
        log(f"  deleted in {result['delete']['runtimes_empty_s']:.1f} s")
    finally:
        if up and not keep:
            t = time.monotonic()
            orchestrate.down(lambda line: None)
            result["down_s"] = time.monotonic() - t
    return result


# ---------------------------------------------------------------- report

def _f(v, fmt="{:.2f}") -> str:
    return "-" if v is None else fmt.format(v)


def table(results: list[dict]) -> None:
    base = results[0]
    print()
    print(f"{'hosts':>5} {'servers':>8} {'ACTIVE':>6} {'up s':>6} {'single s':>9} "
          f"{'batch/srv s':>11} {'batch med s':>11} {'boot all s':>10} {'delete s':>9} "
          f"{'mem idle MB':>11} {'mem loaded MB':>13} {'idle CPU':>8}")
    for r in results:
        b = r.get("boot", {})
        print(f"{r['hosts']:>5} {r['servers']:>8} {b.get('active', 0):>6} "
              f"{_f(r.get('up_s'), '{:.0f}'):>6} {_f(b.get('single_median_s')):>9} "
              f"{_f(b.get('batch_per_server_s')):>11} {_f(b.get('batch_median_s')):>11} "
              f"{_f(b.get('total_s'), '{:.0f}'):>10} "
              f"{_f(r.get('delete', {}).get('runtimes_empty_s'), '{:.1f}'):>9} "
              f"{_f(r.get('memory_idle_mb', {}).get('total'), '{:.0f}'):>11} "
              f"{_f(r.get('memory_loaded_mb', {}).get('total'), '{:.0f}'):>13} "
              f"{_f(r.get('idle_cpu_cores')):>8}")
    for r in results:
        print(f"\n{r['hosts']} hosts: servers per host {r.get('spread')}")
        m = r.get("memory_loaded_mb")
        if m:
            print(f"  memory loaded (PSS MB): control {m['control']:.0f}, network node "
                  f"{m['network_node']:.0f}, hosts {sum(m['hosts'].values()):.0f} "
                  f"(mean {m['per_host_mean']:.0f} per host: "
                  + ", ".join(f"{k} {v:.0f}" for k, v in m["per_host_by_kind"].items())
                  + f"), containers' own processes {m['containers']:.0f}")
        cpu = r.get("boot", {}).get("cpu_s_per_server_by_kind")
        if cpu:
            print(f"  CPU per server booted: {r['boot']['cpu_s_per_server']:.2f} s "
                  f"(load {r['load_before_boots'][0]:.1f} -> "
                  f"{r['load_after_boots'][0]:.1f}): "
                  + ", ".join(f"{k} {v:.2f}" for k, v in list(cpu.items())[:12]))
        if r.get("boot", {}).get("faults"):
            print(f"  faults: {r['boot']['faults']}")
    for r in results[1:]:
        print(f"\nratio {r['hosts']} hosts / {base['hosts']} hosts (target <= 1.2):")
        for key in ("single_median_s", "batch_per_server_s", "batch_median_s", "cpu_s_per_server"):
            a, b = base.get("boot", {}).get(key), r.get("boot", {}).get(key)
            if a and b:
                r.setdefault("ratio", {})[key] = b / a
                print(f"  {key}: {b:.2f} / {a:.2f} = {b / a:.2f}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--hosts", type=int, nargs="+", default=[2, 10])
    p.add_argument("--servers", type=int, nargs="+", default=[40, 100],
                   help="servers per host count (one value: the same for all)")
    p.add_argument("--batch", type=int, default=10)
    p.add_argument("--single", type=int, default=10)
    p.add_argument("--timeout", type=float, default=900)
    p.add_argument("--no-up", action="store_true", help="measure the cloud that is up")
    p.add_argument("--keep", action="store_true", help="leave the last cloud up")
    p.add_argument("--json", help="write the results there")
    p.add_argument("--precache", action="store_true",
                   help="cache the image on every host first (nova's aggregate image cache)")
    p.add_argument("--security-group", choices=("default", "cidr"), default="default",
                   help="the project's default group (remote-group rules), or a group "
                        "admitting the private subnet by address")
    args = p.parse_args(argv)
    servers = args.servers * len(args.hosts) if len(args.servers) == 1 else args.servers
    if len(servers) != len(args.hosts):
        p.error("--servers: one value, or one per --hosts")
    if os.geteuid() != 0:
        p.error("run as root")
    os.environ.pop("REQUESTS_CA_BUNDLE", None)
    os.environ.pop("CURL_CA_BUNDLE", None)
    results = []
    try:
        for i, (hosts, count) in enumerate(zip(args.hosts, servers, strict=True)):
            last = i == len(args.hosts) - 1
            phase(hosts, count, args.batch, args.single, not args.no_up,
                  args.keep and last, args.timeout, results, args.precache,
                  args.security_group)
    finally:
        if results:
            table(results)
        if args.json:
            with open(args.json, "w") as f:
                json.dump(results, f, indent=2)
    return 0 if all(r.get("boot", {}).get("active") == r["servers"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
