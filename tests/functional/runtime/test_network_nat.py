"""Outbound NAT of managed bridges, for real, without touching the machine's network.

The daemon runs in a network namespace of its own (its "host"), which has one
more namespace upstream of it over a veth. The upstream side has no route back
to the bridge's subnets, so a container reaches it only when the host rewrites
the source; nft counters upstream tell which source address arrived. Forwarding
and the NAT tables live and die with the namespaces: the machine's own sysctls
and ruleset are never changed. LXD turns NAT on by default for new bridges; the
first cut emitted a ruleset Debian 12's nft refused, and tests only used NAT off.
"""
import subprocess
import time
import uuid

import pylxd
import pytest

from tests.functional.runtime.harness import import_busybox
from tests.functional.runtime.remote_hosts import Daemon

V4_NET, V6_NET = "10.231.61", "fd42:61::"
UP4, UP6 = "198.51.100", "fd99:61::"


def _ip(*args: str, ns: str | None = None) -> str:
    argv = (["ip", "netns", "exec", ns] if ns else []) + list(args)
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout


class Site:
    """host namespace (the daemon's) <-veth-> upstream namespace."""

    def __init__(self) -> None:
        tag = uuid.uuid4().hex[:6]
        self.host, self.up = f"ntnath{tag}", f"ntnatu{tag}"
        for ns in (self.host, self.up):
            _ip("ip", "netns", "add", ns)
            _ip("ip", "link", "set", "lo", "up", ns=ns)
        _ip("ip", "link", "add", "hv0", "netns", self.host, "type", "veth",
            "peer", "name", "up0", "netns", self.up)
        for ns, dev, last in ((self.host, "hv0", ("2", "3")), (self.up, "up0", ("1",))):
            for n in last:
                _ip("ip", "addr", "add", f"{UP4}.{n}/24", "dev", dev, ns=ns)
                _ip("ip", "-6", "addr", "add", f"{UP6}{n}/64", "dev", dev, "nodad", ns=ns)
            _ip("ip", "link", "set", dev, "up", ns=ns)
        # Count what arrives upstream, per source address.
        counters = "\n".join(
            f"    {fam} saddr {addr} counter" for fam, addr in
            (("ip", f"{UP4}.2"), ("ip", f"{UP4}.3"), ("ip6", f"{UP6}2"), ("ip6", f"{UP6}3")))
        script = ("table inet seen {\n  chain input {\n"
                  "    type filter hook input priority 0; policy accept;\n"
                  f"{counters}\n  }}\n}}\n")
        subprocess.run(["ip", "netns", "exec", self.up, "nft", "-f", "-"], input=script,
                       text=True, check=True)
        self.daemon = Daemon(self.host, "127.0.0.1", 8443, own_sysfs=True)

    def seen(self) -> dict[str, int]:
        out = _ip("nft", "list", "table", "inet", "seen", ns=self.up)
        counts = {}
        for line in out.splitlines():
            words = line.split()
            if "saddr" in words and "packets" in words:
                counts[words[words.index("saddr") + 1]] = int(words[words.index("packets") + 1])
        return counts

    def destroy(self) -> None:
        try:
            self.daemon.destroy()
        finally:
            for ns in (self.host, self.up):
                subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)


@pytest.fixture(scope="module")
def site():
    s = Site()
    try:
        s.daemon.start()
        yield s
    finally:
        s.destroy()


@pytest.fixture(scope="module")
def net_and_instance(site):
    client = site.daemon.client()
    import_busybox(client)
    net = client.networks.create("ntnatbr", config={
        "ipv4.address": f"{V4_NET}.1/24", "ipv4.nat": "true", "ipv4.dhcp": "false",
        "ipv6.address": f"{V6_NET}1/64", "ipv6.nat": "true"})
    inst = client.instances.create({
        "name": "nat1", "source": {"type": "image", "alias": "busybox"},
        "devices": {"eth0": {"type": "nic", "network": net.name, "name": "eth0"}}}, wait=True)
    inst.start(wait=True)
    setup = (f"ip addr add {V4_NET}.10/24 dev eth0 && ip route add default via {V4_NET}.1 && "
             f"ip -6 addr add {V6_NET}10/64 dev eth0 && "
             f"ip -6 route add default via {V6_NET}1")
    res = inst.execute(["sh", "-c", setup])
    assert res.exit_code == 0, res.stderr
    _wait_no_tentative(inst)
    yield client, net, inst
    inst.stop(force=True, wait=True)
    inst.delete(wait=True)
    net.delete()


def _wait_no_tentative(inst) -> None:
    for _ in range(60):
        if "tentative" not in inst.execute(["ip", "-6", "addr", "show", "eth0"]).stdout:
            return
        time.sleep(0.1)


def _ping(inst, address: str) -> bool:
    argv = ["ping", "-c", "1", "-W", "2", address]
    if ":" in address:
        argv = ["ping6", "-c", "1", "-W", "2", address]
    return inst.execute(argv).exit_code == 0


def _set(net, **config) -> None:
    net.config.update({k.replace("_", "."): v for k, v in config.items()})
    net.save()


def test_nat_on_masquerades_both_families(site, net_and_instance):
    client, net, inst = net_and_instance
    rules = _ip("nft", "list", "table", "inet", "nlr_ntnatbr", ns=site.host)
    assert f"ip saddr {V4_NET}.0/24 ip daddr != {V4_NET}.0/24 masquerade" in rules
    assert f"ip6 saddr {V6_NET}/64 ip6 daddr != {V6_NET}/64 masquerade" in rules
    assert _ip("sysctl", "-n", "net.ipv4.ip_forward", ns=site.host).strip() == "1"
    before = site.seen()
    assert _ping(inst, f"{UP4}.1"), "IPv4 NAT: upstream unreachable"
    assert _ping(inst, f"{UP6}1"), "IPv6 NAT: upstream unreachable"
    after = site.seen()
    # masquerade: the source becomes an address of the outgoing link (the host's
    # primary IPv4 one; for IPv6 the kernel's source selection picks among both).
    assert after[f"{UP4}.2"] > before[f"{UP4}.2"], "IPv4 source was not the host's address"
    assert sum(after[f"{UP6}{n}"] - before[f"{UP6}{n}"] for n in "23") > 0, \
        "IPv6 source was not the host's address"


def test_nat_address_sets_the_source(site, net_and_instance):
    client, net, inst = net_and_instance
    _set(net, ipv4_nat_address=f"{UP4}.3", ipv6_nat_address=f"{UP6}3")
    try:
        before = site.seen()
        assert _ping(inst, f"{UP4}.1") and _ping(inst, f"{UP6}1")
        after = site.seen()
        assert after[f"{UP4}.3"] > before[f"{UP4}.3"]
        assert after[f"{UP6}3"] > before[f"{UP6}3"]
        assert after[f"{UP4}.2"] == before[f"{UP4}.2"]
        assert after[f"{UP6}2"] == before[f"{UP6}2"]
    finally:
        net.config.pop("ipv4.nat.address")
        net.config.pop("ipv6.nat.address")
        net.save()


def test_nat_off_leaves_the_subnet_unrewritten(site, net_and_instance):
    client, net, inst = net_and_instance
    _set(net, ipv4_nat="false", ipv6_nat="false")
    try:
        assert "nlr_ntnatbr" not in _ip("nft", "list", "tables", ns=site.host)
        assert not _ping(inst, f"{UP4}.1"), "reached upstream without NAT: no route back"
    finally:
        _set(net, ipv4_nat="true", ipv6_nat="true")
    assert _ping(inst, f"{UP4}.1")


def test_nat_rules_come_back_after_a_flush_and_daemon_restart(site, net_and_instance):
    """Rules are lost on a host reboot; the daemon re-applies them at start."""
    client, net, inst = net_and_instance
    _ip("nft", "delete", "table", "inet", "nlr_ntnatbr", ns=site.host)
    site.daemon.stop()
    site.daemon.start()
    assert "nlr_ntnatbr" in _ip("nft", "list", "tables", ns=site.host)
    assert _ping(inst, f"{UP4}.1")


def test_nat_table_goes_with_the_network(site):
    client = site.daemon.client()
    net = client.networks.create("ntnatgone", config={"ipv4.address": "10.231.62.1/24",
                                                      "ipv4.nat": "true"})
    assert "nlr_ntnatgone" in _ip("nft", "list", "tables", ns=site.host)
    net.delete()
    assert "nlr_ntnatgone" not in _ip("nft", "list", "tables", ns=site.host)
    with pytest.raises(pylxd.exceptions.LXDAPIException, match="ipv4.nat.address"):
        client.networks.create("ntnatbad", config={"ipv4.address": "10.231.63.1/24",
                                                   "ipv4.nat.address": "fd00::1"})
