"""A compute host failing, against the real cloud (conftest.py): nova-compute
killed with SIGKILL in the middle of a spawn and of a cold migration (on its
source and on its destination), a host
that loses power (its containers, runtime and nova-compute killed at once)
and boots again with and without ``resume_guests_state_on_host_boot``, and a
host that stays down while its server is evacuated, then comes back.

What every step checks: nova and the host's runtime agree. A server is ACTIVE
with a running container on its host, SHUTOFF with a stopped one, or ERROR
with none; no container is left whose server is gone or lives elsewhere; no
OVS port of a server is left on a host's br-int once its container is gone.

The servers are busybox (c1.tiny, a few seconds to ACTIVE) and shared between
the steps, which run in the order of this file; reachability is a ping from
this machine to a floating IP. The host that fails is the one the first
server landed on (the victim), the other one is the survivor.
"""
from __future__ import annotations

import json
import subprocess
import time

import pytest

from cloud import hostctl, layout, resources
from cloud.readiness import UnixHTTP, admin

pytestmark = pytest.mark.timeout(900)
PREFIX = "hf-"


# -- what a host's runtime and switch hold -------------------------------------------
def _get(host: str, path: str):
    conn = UnixHTTP(layout.runtime_socket(hostctl.node(host)))
    try:
        conn.request("GET", path)
        return json.loads(conn.getresponse().read())["metadata"]
    finally:
        conn.close()


def containers(host: str) -> dict[str, dict]:
    """The runtime's instances on *host* by name ({} while it is down)."""
    try:
        return {i["name"]: i for i in _get(host, "/1.0/instances?recursion=1")}
    except OSError:
        return {}


def status(host: str, name: str) -> str | None:
    found = containers(host).get(name)
    return found["status"] if found else None


def aliases(host: str) -> set[str]:
    return {a["name"] for a in _get(host, "/1.0/images/aliases?recursion=1")}


def ovs_ports(host: str) -> set[str]:
    node = hostctl.node(host)
    done = subprocess.run(["ovs-vsctl", f"--db=unix:{node.ovs_dir}/db.sock", "--timeout=10",
                           "list-ports", "br-int"], capture_output=True, text=True, check=True)
    return set(done.stdout.split())


def port_devices(conn, server_id: str) -> set[str]:
    """The names os-vif gives the server's ports on br-int (tap or qvo)."""
    names = set()
    for port in conn.network.ports(device_id=server_id):
        names |= {f"tap{port.id}"[:14], f"qvo{port.id}"[:14]}
    return names


# -- nova's side ---------------------------------------------------------------------
def server(server_id: str):
    return admin().compute.get_server(server_id)


def wait_for(what, predicate, timeout: float = 120, interval: float = 1.0):
    """Poll *predicate* (returns a truthy value when done) for *timeout* s."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


def wait_status(server_id: str, *wanted: str, timeout: float = 180, settle: bool = False):
    """Wait for one of the *wanted* statuses with no task; ERROR on the way
    fails at once unless *settle* (an action on a server in ERROR)."""
    def done():
        s = server(server_id)
        if s.status in wanted and not s.task_state:
            return s
        assert settle or s.status != "ERROR" or "ERROR" in wanted, s.fault
        return None
    return wait_for(f"{server_id} to be {wanted}", done, timeout)


def ping(address: str, timeout: float = 90) -> float:
    """Seconds until *address* answers a ping from this machine."""
    started = time.monotonic()
    wait_for(f"ping {address}", lambda: subprocess.run(
        ["ping", "-c", "1", "-W", "1", address], capture_output=True).returncode == 0,
        timeout, interval=0.2)
    return time.monotonic() - started


def assert_agree(conn, server_id: str, survivor: str | None = None) -> None:
    """nova and the runtimes tell the same story about one server."""
    s = server(server_id)
    host, name = s.compute_host, s.instance_name
    expected = {"ACTIVE": "Running", "SHUTOFF": "Stopped"}[s.status]
    assert status(host, name) == expected, (s.status, containers(host).get(name))
    if survivor and survivor != host:
        assert name not in containers(survivor)
    devices = port_devices(conn, server_id)
    assert devices & ovs_ports(host), (devices, ovs_ports(host))


# -- the servers the steps share ------------------------------------------------------
class World:
    """The member's servers and the two hosts' roles."""

    def __init__(self):
        self.conn = resources.member()
        self.image = self.conn.image.find_image("busybox").id
        self.flavor = self.conn.compute.find_flavor("c1.tiny").id
        self.net = self.conn.network.find_network("private").id
        self.public = self.conn.network.find_network("public").id
        self.servers: dict[str, str] = {}
        self.fips: dict[str, str] = {}
        self.victim = self.survivor = ""

    def boot(self, name: str, hints: dict | None = None):
        s = self.conn.compute.create_server(
            name=PREFIX + name, image_id=self.image, flavor_id=self.flavor,
            networks=[{"uuid": self.net}], scheduler_hints=hints or {})
        self.servers[name] = s.id
        return s

    def floating_ip(self, name: str) -> str:
        sid = self.servers[name]
        port = next(self.conn.network.ports(device_id=sid))
        fip = self.conn.network.create_ip(floating_network_id=self.public, port_id=port.id)
        self.fips[name] = fip.floating_ip_address
        return fip.floating_ip_address

    def cleanup(self) -> None:
        for s in self.conn.compute.servers():
            if s.name.startswith(PREFIX):
                self.servers.setdefault(s.name.removeprefix(PREFIX), s.id)
        for sid in self.servers.values():
            try:
                self.conn.compute.delete_server(sid, ignore_missing=True)
            except Exception:  # noqa: BLE001 - best effort, then wait for all
                pass
        for sid in self.servers.values():
            try:
                self.conn.compute.wait_for_delete(self.conn.compute.get_server(sid), wait=120)
            except Exception:  # noqa: BLE001 - already gone
                pass
        for fip in self.conn.network.ips(project_id=self.conn.current_project_id):
            self.conn.network.delete_ip(fip)


def _heal(world: World) -> None:
    """Every host's services running, none forced down, no options of their own."""
    adm = admin()
    for host in (world.victim, world.survivor):
        if not host:
            continue
        node = hostctl.node(host)
        for program in (hostctl.runtime(node), hostctl.compute(node)):
            if hostctl.state(program) != "RUNNING":
                hostctl.start(program)
        # from its next start on (a running one keeps harmless test options)
        hostctl.write_compute_options(node, {})
    for service in adm.compute.services(binary="nova-compute"):
        if service.is_forced_down:
            adm.compute.update_service_forced_down(None, service.host, "nova-compute", False)


@pytest.fixture(scope="module")
def world(cloud):
    w = World()
    w.cleanup()  # what an interrupted run left
    a = w.boot("a")
    a = w.conn.compute.wait_for_server(a, wait=180)
    w.victim = server(a.id).compute_host
    # no hint (a cold migration would keep it): the scheduler spreads by free RAM
    b = w.boot("b")
    b = w.conn.compute.wait_for_server(b, wait=180)
    w.survivor = server(b.id).compute_host
    assert w.survivor != w.victim
    w.floating_ip("a")
    w.floating_ip("b")
    try:
        yield w
    finally:
        _heal(w)
        w.cleanup()


# -- the steps -----------------------------------------------------------------------
def test_compute_killed_mid_spawn(world):
    """nova-compute dies while the container exists but has not started: at
    start nova sets the server to ERROR and the driver removes the half-made
    container and its port; the server deletes cleanly."""
    w = world
    node = hostctl.node(w.victim)
    s = w.boot("spawn", {"same_host": [w.servers["a"]]})
    name = wait_for("the instance name", lambda: server(s.id).instance_name, 60, 0.2)
    wait_for("the container", lambda: name in containers(w.victim), 120, 0.05)
    hostctl.crash(hostctl.compute(node))
    cut_at = status(w.victim, name)
    assert server(s.id).status == "BUILD"
    devices = port_devices(w.conn, s.id)
    hostctl.start(hostctl.compute(node))
    print(f"spawn cut with the container {cut_at}; after the restart: "
          f"{server(s.id).status}, container {status(w.victim, name)}")
    assert server(s.id).status == "ERROR"
    assert name not in containers(w.victim)
    assert not devices & ovs_ports(w.victim)
    w.conn.compute.delete_server(s.id)
    w.conn.compute.wait_for_delete(s, wait=120)
    # the rest of the host went on as it was
    assert_agree(w.conn, w.servers["a"])


def test_compute_killed_mid_cold_migration_on_the_source(world):
    """The source's nova-compute dies while it stops the server for a cold
    migration: at start nova reverts (finish_revert_migration) and the server
    is ACTIVE on its host again, the destination holds nothing of it."""
    w = world
    sid = w.servers["b"]
    source, dest = w.survivor, w.victim
    name = server(sid).instance_name
    admin().compute.migrate_server(sid)
    wait_for("the migration to start", lambda: server(sid).task_state in (
        "resize_prep", "resize_migrating", "resize_migrated", "resize_finish"), 60, 0.05)
    wait_for("the source to stop the server", lambda: (
        server(sid).task_state != "resize_prep" or status(source, name) != "Running"),
        60, 0.05)
    task = server(sid).task_state
    hostctl.crash(hostctl.compute(hostctl.node(source)))
    hostctl.start(hostctl.compute(hostctl.node(source)))
    s = wait_status(sid, "ACTIVE", "VERIFY_RESIZE", timeout=180)
    print(f"migration cut at {task}; after the restart: {s.status} on {s.compute_host}")
    if s.status == "VERIFY_RESIZE":  # the cut came after the source's part
        _confirm(sid, dest, source)
        # back where the steps below expect it
        admin().compute.migrate_server(sid, host=source)
        wait_status(sid, "VERIFY_RESIZE")
        _confirm(sid, source, dest)
    else:
        assert s.compute_host == source
        assert_agree(w.conn, sid, survivor=dest)
    ping(w.fips["b"])


def test_compute_killed_mid_cold_migration_on_the_destination(world):
    """The destination's nova-compute dies while it receives the container
    (finish_migration): at start the driver fails the migration as nova fails
    a finish_migration that raised (server ERROR, migration error) rather than
    leave it in RESIZE for ever. A hard reboot starts the received container;
    the source's stopped copy goes once the server is deleted, at the
    source's next start."""
    w = world
    sid = w.servers.pop("b")
    source, dest = w.survivor, w.victim
    name = server(sid).instance_name
    admin().compute.migrate_server(sid)
    wait_for("the container on the destination", lambda: name in containers(dest), 120, 0.02)
    task = server(sid).task_state
    hostctl.crash(hostctl.compute(hostctl.node(dest)))
    hostctl.start(hostctl.compute(hostctl.node(dest)))
    s = wait_status(sid, "ERROR", timeout=60)
    print(f"migration cut at {task} on the destination; after the restart: {s.status}, "
          f"destination {status(dest, name)}, source {status(source, name)}")
    assert s.compute_host == dest
    assert _last_migration(sid).status == "error"
    # The kill lands before or after finish_migration started the received
    # container (the window is short); the source's copy stays stopped either way.
    assert status(dest, name) in ("Stopped", "Running")
    assert status(source, name) == "Stopped"
    admin().compute.reboot_server(sid, "HARD")
    s = wait_status(sid, "ACTIVE", settle=True)
    assert s.compute_host == dest
    assert_agree(w.conn, sid)
    ping(w.fips["b"])
    w.conn.compute.delete_server(sid)
    w.conn.compute.wait_for_delete(s, wait=120)
    assert name not in containers(dest)
    assert status(source, name) == "Stopped"  # nova knows nothing of it any more
    hostctl.stop(hostctl.compute(hostctl.node(source)))
    hostctl.start(hostctl.compute(hostctl.node(source)))
    assert name not in containers(source)


def _last_migration(sid: str):
    return max(admin().compute.migrations(instance_uuid=sid), key=lambda m: m.id)


def _confirm(sid: str, dest: str, source: str) -> None:
    admin().compute.confirm_server_resize(sid)
    s = wait_status(sid, "ACTIVE")
    assert s.compute_host == dest
    wait_for("the source container to go",
             lambda: s.instance_name not in containers(source))
    assert_agree(admin(), sid, survivor=source)


def _reboot(world: World, options: dict) -> None:
    node = hostctl.node(world.victim)
    hostctl.crash_host(node)
    assert hostctl.container_processes(node) == []
    hostctl.write_compute_options(node, options)
    hostctl.start(hostctl.runtime(node))
    stopped = containers(world.victim)
    assert all(c["status"] == "Stopped" for c in stopped.values()), stopped
    hostctl.start(hostctl.compute(node))


def test_host_reboot_without_resume_stays_shutoff(world):
    """resume_guests_state_on_host_boot = False: the servers of a host that
    lost power stay down; nova's power-state sync shows them SHUTOFF, and a
    start brings one back with its port."""
    w = world
    sid = w.servers["a"]
    name = server(sid).instance_name
    _reboot(w, {"DEFAULT": {"resume_guests_state_on_host_boot": False,
                            "sync_power_state_interval": 5}})
    s = wait_status(sid, "SHUTOFF", timeout=90)
    assert status(w.victim, name) == "Stopped"
    assert s.power_state == 4  # SHUTDOWN
    w.conn.compute.start_server(sid)
    wait_status(sid, "ACTIVE")
    assert_agree(w.conn, sid)
    ping(w.fips["a"])


def test_host_reboot_with_resume_comes_back_active(world):
    """resume_guests_state_on_host_boot = True: nova-compute starts the
    host's servers at its start, ports plugged again: reachable."""
    w = world
    sid = w.servers["a"]
    _reboot(w, {"DEFAULT": {"resume_guests_state_on_host_boot": True}})
    s = wait_status(sid, "ACTIVE")
    assert s.power_state == 1
    assert_agree(w.conn, sid)
    print(f"reachable again {ping(w.fips['a']):.1f} s after nova-compute was up")


def test_evacuate_with_ports_and_cleanup_on_return(world):
    """The victim goes down for good (forced down in nova): its server is
    evacuated, rebuilt on the survivor, reachable on its floating IP. A server
    deleted while the host was down is deleted by nova alone. When the host
    comes back, nothing of either is left on it: containers, OVS ports, image
    aliases (the host's image cache, pruned at start)."""
    w = world
    adm = admin()
    node = hostctl.node(w.victim)
    c = w.boot("c", {"same_host": [w.servers["a"]]})
    wait_status(c.id, "ACTIVE")
    gone = {sid: port_devices(w.conn, sid) for sid in (w.servers["a"], c.id)}
    names = {server(sid).instance_name for sid in gone}
    assert names <= set(containers(w.victim))
    hostctl.crash_host(node)
    adm.compute.update_service_forced_down(None, w.victim, "nova-compute", True)
    w.conn.compute.delete_server(c.id)  # nova deletes it alone: its host is down
    w.conn.compute.wait_for_delete(c, wait=60)
    adm.compute.evacuate_server(w.servers["a"])
    s = wait_status(w.servers["a"], "ACTIVE", "SHUTOFF")
    assert s.compute_host == w.survivor
    if s.status == "SHUTOFF":  # compute API 2.95+: an evacuated server arrives stopped
        w.conn.compute.start_server(s.id)
        s = wait_status(s.id, "ACTIVE")
    assert_agree(w.conn, s.id)
    ping(w.fips["a"])
    # the failed host comes back (fenced, repaired): its leftovers go
    hostctl.write_compute_options(node, {"image_cache": {
        "remove_unused_original_minimum_age_seconds": 0}})
    hostctl.boot_host(node)
    # nova lets a host be forced up once its compute has cleaned up (init_host)
    adm.compute.update_service_forced_down(None, w.victim, "nova-compute", False)
    assert containers(w.victim) == {}
    left = ovs_ports(w.victim)
    for devices in gone.values():
        assert not devices & left, (devices, left)
    assert w.image not in aliases(w.victim)
    migration = _last_migration(s.id)
    assert (migration.migration_type, migration.status) == ("evacuation", "completed")
    assert_agree(w.conn, s.id)
