"""The cloud's network namespaces and the links between them.

Why namespaces: each compute host (and the network node) needs a network of
its own, as on separate machines: its own Open vSwitch, its own tunnel
endpoint, and the veths the driver makes for containers. Services enter
their namespace with ``cloud/ns-exec`` (services.py); the short helpers here
(ethtool, sysctl) with ``nsenter --net``.

Every step checks before it makes, so ``up`` repairs a half-made network.
"""
from __future__ import annotations

import os
import subprocess

from cloud import layout
from cloud.layout import Node


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


def in_ns(namespace: str | None, argv: list[str]) -> list[str]:
    """*argv* run in *namespace*'s network (or as it is, for None)."""
    if not namespace:
        return argv
    return ["nsenter", f"--net=/run/netns/{namespace}", "--", *argv]


def run_in(namespace: str | None, *argv: str, check: bool = True
           ) -> subprocess.CompletedProcess:
    return subprocess.run(in_ns(namespace, list(argv)), capture_output=True, text=True,
                          check=check)


def link_exists(name: str, namespace: str | None = None) -> bool:
    args = ["-n", namespace] if namespace else []
    return ip(*args, "link", "show", name, check=False).returncode == 0


def namespaces() -> list[str]:
    return sorted(os.listdir("/run/netns")) if os.path.isdir("/run/netns") else []


def no_tx_checksum(name: str, namespace: str | None = None) -> None:
    """Compute checksums in the kernel before a frame leaves *name*.

    Why: Open vSwitch's userspace datapath reads veths through AF_PACKET and
    forwards frames as they are; a frame whose TCP/UDP checksum the sender
    left to the NIC (checksum offload) arrives elsewhere with a wrong
    checksum, so ping works and TCP does not."""
    run_in(namespace, "ethtool", "-K", name, "tx", "off", check=False)


def _bridge(name: str, address: str | None) -> None:
    if not link_exists(name):
        ip("link", "add", name, "type", "bridge")
    if address and address.split("/")[0] not in ip("-br", "addr", "show", name).stdout:
        ip("addr", "add", address, "dev", name)
    ip("link", "set", name, "up")


def _veth(node: Node, outer: str, inner: str, bridge: str,
          address: str | None) -> None:
    """A veth from *bridge* (machine side *outer*) into *node* as *inner*."""
    ns = node.name
    if not link_exists(inner, ns):
        if link_exists(outer):
            ip("link", "del", outer)
        ip("link", "add", outer, "type", "veth", "peer", "name", inner + "x")
        ip("link", "set", inner + "x", "netns", ns)
        ip("-n", ns, "link", "set", inner + "x", "name", inner)
    ip("link", "set", outer, "master", bridge, "up")
    for end, where in ((outer, None), (inner, ns)):
        no_tx_checksum(end, where)
    if address and address.split("/")[0] not in ip("-n", ns, "-br", "addr", "show",
                                                   inner).stdout:
        ip("-n", ns, "addr", "add", address, "dev", inner)
    ip("-n", ns, "link", "set", inner, "up")


def create(nodes: list[Node]) -> None:
    """Bridges, namespaces and veths for *nodes* and the external network."""
    _bridge(layout.MGMT_BRIDGE, f"{layout.MGMT_IP}/24")
    _bridge(layout.TUN_BRIDGE, None)
    for node in nodes:
        if node.name not in namespaces():
            ip("netns", "add", node.name)
        ip("-n", node.name, "link", "set", "lo", "up")
        _veth(node, node.mgmt_veth, "mgmt0", layout.MGMT_BRIDGE, f"{node.mgmt_ip}/24")
        # The underlay end carries no address here: it becomes a port of the
        # namespace's br-phy, which holds the tunnel endpoint address (ovs.py).
        _veth(node, node.tun_veth, "tun0", layout.TUN_BRIDGE, None)
        # IPv6 autoconfiguration would only add noise on the cloud's links.
        run_in(node.name, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", check=False)
    # The external network: the machine's end has the address floating IPs
    # answer to; the network node's end becomes a port of br-ex.
    net = layout.NETWORK_NODE.name
    if not link_exists(layout.EXT_PEER, net):
        if link_exists(layout.EXT_VETH):
            ip("link", "del", layout.EXT_VETH)
        ip("link", "add", layout.EXT_VETH, "type", "veth", "peer", "name", layout.EXT_PEER)
        ip("link", "set", layout.EXT_PEER, "netns", net)
    if f"{layout.EXT_IP}/" not in ip("-br", "addr", "show", layout.EXT_VETH).stdout:
        ip("addr", "add", f"{layout.EXT_IP}/24", "dev", layout.EXT_VETH)
    ip("link", "set", layout.EXT_VETH, "up")
    ip("-n", net, "link", "set", layout.EXT_PEER, "up")
    no_tx_checksum(layout.EXT_VETH)
    no_tx_checksum(layout.EXT_PEER, net)


def destroy() -> list[str]:
    """Remove every namespace and link of the cloud; return what was removed.

    Router and DHCP namespaces of Neutron's agents go too: the cloud is the
    only Neutron on this machine."""
    removed = []
    for ns in namespaces():
        if ns.startswith(layout.PREFIX + "-") or ns.startswith(("qrouter-", "qdhcp-")):
            ip("netns", "del", ns, check=False)
            removed.append(f"netns {ns}")
    links = ip("-o", "link", "show").stdout.splitlines()
    for line in links:
        name = line.split(":")[1].strip().split("@")[0]
        if name.startswith(layout.PREFIX):
            ip("link", "del", name, check=False)
            removed.append(f"link {name}")
    return removed
