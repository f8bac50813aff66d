"""Managed bridge networks through pylxd: host bridge, addresses, DHCP, NAT off,
rename/delete rules, unmanaged interfaces, the opt-in default bridge, and a
killed dnsmasq started again by the daemon (leases kept, back-off while it
cannot start)."""
import os
import re
import signal
import subprocess
import time

import pylxd
import pytest

from tests.functional.runtime import nethelpers as nh
from tests.functional.runtime.nethelpers import host_links_restored  # noqa: F401 - fixture
from tests.functional.runtime.harness import RuntimeDaemon


pytestmark = pytest.mark.usefixtures("host_links_restored")


@pytest.fixture
def network(client):
    made = []

    def make(config=None, **kw):
        net = client.networks.create(nh.name("br"), config=config or {}, **kw)
        made.append(net.name)
        return net
    yield make
    for name in made:
        try:
            client.networks.get(name).delete()
        except pylxd.exceptions.LXDAPIException:
            pass
        nh.delete_links([name])


def test_bridge_lifecycle(client, network):
    net = network({"ipv4.address": "10.231.41.1/24", "ipv4.dhcp": "false"},
                  description="nt bridge")
    assert nh.exists(net.name) and os.path.isdir(f"/sys/class/net/{net.name}/bridge")
    assert "10.231.41.1/24" in nh.addresses(net.name)
    got = client.networks.get(net.name)
    assert got.managed is True and got.type == "bridge" and got.description == "nt bridge"
    assert got.config["ipv4.nat"] == "false", "NAT is off unless asked for"
    assert subprocess.run(["nft", "list", "table", "ip", "nlr_" + net.name],
                          capture_output=True).returncode != 0
    state = got.state()
    assert state.state == "up" and any(a["address"] == "10.231.41.1"
                                       for a in state.addresses)
    # Change the address live.
    got.config["ipv4.address"] = "10.231.42.1/24"
    got.save()
    assert nh.addresses(net.name) == ["10.231.42.1/24"] or \
        "10.231.42.1/24" in nh.addresses(net.name)
    assert "10.231.41.1/24" not in nh.addresses(net.name)
    # Rename moves the host bridge too.
    new = nh.name("br")
    got.rename(new)
    assert nh.exists(new) and not nh.exists(net.name)
    client.networks.get(new).delete()
    assert not nh.exists(new)
    with pytest.raises(pylxd.exceptions.NotFound):
        client.networks.get(new)


def test_invalid_config_is_refused_with_the_key_named(client):
    with pytest.raises(pylxd.exceptions.LXDAPIException, match="ipv4.address"):
        client.networks.create(nh.name("br"), config={"ipv4.address": "10.0.0.300/24"})
    with pytest.raises(pylxd.exceptions.LXDAPIException, match="bogus.key"):
        client.networks.create(nh.name("br"), config={"bogus.key": "1"})


def test_unmanaged_interfaces_listed(client):
    names = [n.name for n in client.networks.all()]
    assert "lo" in names
    lo = client.networks.get("lo")
    assert lo.managed is False and lo.type == "loopback"


def test_dhcp_lease_ping_and_instance_state(client, network, make_instance):
    net = network({"ipv4.address": "10.231.43.1/24"})
    inst = make_instance(devices={"eth0": {"type": "nic", "network": net.name,
                                           "name": "eth0"}})
    res = inst.execute(["udhcpc", "-i", "eth0", "-n", "-q", "-t", "5",
                        "-s", "/usr/share/udhcpc/default.script"])
    assert res.exit_code == 0, res.stdout + res.stderr
    assert inst.execute(["ping", "-c", "1", "-W", "3", "10.231.43.1"]).exit_code == 0
    eth0 = inst.state().network["eth0"]
    addrs = [a["address"] for a in eth0["addresses"] if a["family"] == "inet"]
    assert addrs and addrs[0].startswith("10.231.43.")
    assert eth0["hwaddr"] == inst.config["volatile.eth0.hwaddr"]
    assert nh.master(eth0["host_name"]) == net.name
    leases = client.api.networks[net.name].leases.get().json()["metadata"]
    assert any(lease["address"] == addrs[0] for lease in leases)
    # In use: the network can't go away under the instance.
    assert f"/1.0/instances/{inst.name}" in client.networks.get(net.name).used_by
    with pytest.raises(pylxd.exceptions.LXDAPIException, match="in use"):
        client.networks.get(net.name).delete()


def test_instance_with_missing_network_fails_clearly(make_instance):
    inst = make_instance(start=False, devices={"eth0": {"type": "nic", "network": "ntnope",
                                                        "name": "eth0"}})
    with pytest.raises(pylxd.exceptions.LXDAPIException, match="ntnope"):
        inst.start(wait=True)


def test_no_default_bridge_unless_configured(client):
    profile = client.profiles.get("default")
    assert not any(d["type"] == "nic" for d in profile.devices.values())


def test_default_bridge_opt_in():
    """NOVA_LXD_RUNTIME_BRIDGE creates the bridge once and puts eth0 in `default`."""
    bridge = nh.name("def")
    d = RuntimeDaemon(prefix="nt-net-")
    old = os.environ.get("NOVA_LXD_RUNTIME_BRIDGE")
    os.environ["NOVA_LXD_RUNTIME_BRIDGE"] = f"{bridge}=10.231.44.1/24"
    try:
        d.start()
        c = d.client()
        for _ in range(50):
            if any(n.name == bridge and n.managed for n in c.networks.all()):
                break
            import time
            time.sleep(0.1)
        assert "10.231.44.1/24" in nh.addresses(bridge)
        profile = c.profiles.get("default")
        assert profile.devices["eth0"] == {"type": "nic", "name": "eth0", "network": bridge}
        profile.devices.pop("eth0")
        profile.save()
        c.networks.get(bridge).delete()
        assert not nh.exists(bridge)
    finally:
        if old is None:
            os.environ.pop("NOVA_LXD_RUNTIME_BRIDGE", None)
        else:
            os.environ["NOVA_LXD_RUNTIME_BRIDGE"] = old
        nh.kill_dnsmasq(d.lxd_dir)
        nh.delete_links([bridge])
        d.destroy()


def test_static_dhcp_address_from_nic_config(network, make_instance):
    net = network({"ipv4.address": "10.231.45.1/24"})
    inst = make_instance(devices={"eth0": {"type": "nic", "network": net.name,
                                           "name": "eth0", "ipv4.address": "10.231.45.77"}})
    res = inst.execute(["udhcpc", "-i", "eth0", "-n", "-q", "-t", "5",
                        "-s", "/usr/share/udhcpc/default.script"])
    assert res.exit_code == 0, res.stdout + res.stderr
    assert "10.231.45.77" in inst.execute(["ip", "-4", "addr", "show", "eth0"]).stdout


def test_networks_restored_when_the_daemon_starts(daemon, client, network):
    """After a host reboot the bridge and its dnsmasq are gone: the daemon's next
    start brings both back, with the configured address."""
    net = network({"ipv4.address": "10.231.46.1/24"})
    daemon.stop()
    nh.kill_dnsmasq(daemon.lxd_dir)
    nh.delete_links([net.name])
    assert not nh.exists(net.name)
    daemon.start()
    assert "10.231.46.1/24" in nh.addresses(net.name)
    pidfile = os.path.join(daemon.lxd_dir, "networks", net.name, "dnsmasq.pid")
    with open(pidfile) as f:
        pid = int(f.read())
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        assert f"--interface={net.name}".encode() in f.read()


# A killed dnsmasq -------------------------------------------------------------
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
