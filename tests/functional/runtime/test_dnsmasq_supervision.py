"""A managed network's dnsmasq killed (kill -9) is started again by the daemon on
its lease file: containers keep their leases, renew the same address and new
ones get addresses; a dnsmasq that cannot start is retried with growing delays,
and comes back once the cause is gone."""
import os
import re
import signal
import subprocess
import time

import pylxd
import pytest

from tests.functional.runtime import nethelpers as nh


@pytest.fixture(scope="module", autouse=True)
def host_cleanup(daemon):
    before = set(os.listdir("/sys/class/net"))
    yield
    nh.cleanup(daemon.lxd_dir, before)


@pytest.fixture
def network(client):
    made = []

    def make(config):
        net = client.networks.create(nh.name("ds"), config=config)
        made.append(net.name)
        return net
    yield make
    for name in made:
        try:
            client.networks.get(name).delete()
        except pylxd.exceptions.LXDAPIException:
            pass
        nh.delete_links([name])


def _pid(daemon, net: str) -> int | None:
    try:
        with open(os.path.join(daemon.lxd_dir, "networks", net, "dnsmasq.pid")) as f:
            pid = int(f.read())
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return pid if f"--interface={net}".encode() in f.read() else None
    except (OSError, ValueError):
        return None


def _wait_new_pid(daemon, net: str, old: int, timeout: float = 10.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pid = _pid(daemon, net)
        if pid and pid != old:
            return pid
        time.sleep(0.1)
    raise AssertionError(f"dnsmasq of {net} not restarted in {timeout}s:\n{daemon.tail()}")


def _dhcp(inst, request: str | None = None) -> str:
    argv = ["udhcpc", "-i", "eth0", "-n", "-q", "-t", "5",
            "-s", "/usr/share/udhcpc/default.script"]
    if request:
        argv += ["-r", request]
    res = inst.execute(argv)
    assert res.exit_code == 0, res.stdout + res.stderr
    eth0 = inst.state().network["eth0"]
    addrs = [a["address"] for a in eth0["addresses"] if a["family"] == "inet"]
    assert addrs, eth0
    return addrs[0]


def _nic(net) -> dict:
    return {"eth0": {"type": "nic", "network": net.name, "name": "eth0"}}


def test_killed_dnsmasq_restarts_and_keeps_leases(daemon, client, network, make_instance):
    net = network({"ipv4.address": "10.231.51.1/24"})
    first = make_instance(devices=_nic(net))
    addr = _dhcp(first)
    assert addr.startswith("10.231.51.")
    old = _pid(daemon, net.name)
    assert old
    t0 = time.monotonic()
    os.kill(old, signal.SIGKILL)
    new = _wait_new_pid(daemon, net.name, old)
    took = time.monotonic() - t0
    print(f"dnsmasq back after {took:.2f}s")
    assert took < 5
    assert re.search(rf"network {net.name}: dnsmasq restarted \(pid {new}\)", daemon.tail(200))
    # The lease survived, and the same address is renewed from the new dnsmasq.
    leases = client.api.networks[net.name].leases.get().json()["metadata"]
    assert any(lease["address"] == addr for lease in leases), leases
    assert _dhcp(first, request=addr) == addr
    assert first.execute(["ping", "-c", "1", "-W", "3", "10.231.51.1"]).exit_code == 0
    # A new container gets a new address from the restarted server.
    second = make_instance(devices=_nic(net))
    other = _dhcp(second)
    assert other.startswith("10.231.51.") and other != addr


def test_failing_restart_backs_off_then_recovers(daemon, client, network, make_instance):
    """Without its listen address dnsmasq cannot start: retried after 1, 2, 4 s...,
    not in a tight loop; with the address back the next try brings it up."""
    net = network({"ipv4.address": "10.231.52.1/24"})
    old = _pid(daemon, net.name)
    mark = len(daemon.tail(100000).splitlines())
    subprocess.run(["ip", "addr", "flush", "dev", net.name], check=True)
    os.kill(old, signal.SIGKILL)
    time.sleep(8)
    lines = daemon.tail(100000).splitlines()[mark:]
    delays = [float(m.group(1)) for line in lines for m in
              [re.search(rf"network {net.name}: dnsmasq did not restart .*next try in (\d+)s",
                         line)] if m]
    assert delays[:3] == [1, 2, 4], "\n".join(lines)
    assert _pid(daemon, net.name) is None
    subprocess.run(["ip", "addr", "add", "10.231.52.1/24", "dev", net.name], check=True)
    new = _wait_new_pid(daemon, net.name, old, timeout=20)
    assert new != old
    inst = make_instance(devices=_nic(net))
    assert _dhcp(inst).startswith("10.231.52.")
