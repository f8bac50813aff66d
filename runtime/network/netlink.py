"""Thin pyroute2 helpers: bridges, veth pairs, moving links between namespaces.

pyroute2 is imported inside each function (it adds several MB of RSS) and one
short-lived IPRoute socket is used per call, so nothing stays open in the daemon.
"""
from __future__ import annotations

import contextlib
import ipaddress
import os
from collections.abc import Iterator

from runtime.errors import BadRequest


@contextlib.contextmanager
def _ipr() -> Iterator:
    from pyroute2 import IPRoute
    ipr = IPRoute()
    try:
        yield ipr
    finally:
        ipr.close()


def _index(ipr, name: str) -> int | None:
    found = ipr.link_lookup(ifname=name)
    return found[0] if found else None


def exists(name: str) -> bool:
    return os.path.exists(f"/sys/class/net/{name}")


def kind(name: str) -> str:
    """LXD's interface type for a host link: bridge, bond, vlan, loopback, physical..."""
    base = f"/sys/class/net/{name}"
    if name == "lo":
        return "loopback"
    if os.path.isdir(f"{base}/bridge"):
        return "bridge"
    if os.path.isdir(f"{base}/bonding"):
        return "bond"
    if os.path.exists(f"/proc/net/vlan/{name}"):
        return "vlan"
    if os.path.exists(f"{base}/device"):
        return "physical"
    return "unknown"


def host_links() -> list[str]:
    try:
        return sorted(os.listdir("/sys/class/net"))
    except OSError:
        return []


def ensure_bridge(name: str, mtu: int | None = None, hwaddr: str | None = None) -> None:
    """Create the bridge if missing and bring it up (idempotent)."""
    with _ipr() as ipr:
        idx = _index(ipr, name)
        if idx is None:
            ipr.link("add", ifname=name, kind="bridge")
            idx = _index(ipr, name)
        elif kind(name) != "bridge":
            raise BadRequest(f"Interface {name!r} exists on the host and is not a bridge")
        attrs: dict = {}
        if mtu:
            attrs["mtu"] = mtu
        if hwaddr:
            attrs["address"] = hwaddr
        if attrs:
            ipr.link("set", index=idx, **attrs)
        ipr.link("set", index=idx, state="up")


def set_addresses(name: str, wanted: list[str]) -> None:
    """Make the link's global addresses exactly `wanted` (CIDR strings)."""
    with _ipr() as ipr:
        idx = _index(ipr, name)
        if idx is None:
            return
        current = set()
        for msg in ipr.get_addr(index=idx):
            addr = msg.get_attr("IFA_ADDRESS")
            if addr and not addr.startswith("fe80"):
                current.add(f"{addr}/{msg['prefixlen']}")
        want = {str(ipaddress.ip_interface(w)) for w in wanted}
        for cidr in current - want:
            a, p = cidr.split("/")
            ipr.addr("del", index=idx, address=a, prefixlen=int(p))
        for cidr in want - current:
            a, p = cidr.split("/")
            ipr.addr("add", index=idx, address=a, prefixlen=int(p))


def delete(name: str) -> None:
    with _ipr() as ipr:
        idx = _index(ipr, name)
        if idx is not None:
            ipr.link("del", index=idx)


def rename(old: str, new: str) -> None:
    with _ipr() as ipr:
        idx = _index(ipr, old)
        if idx is None:
            return
        ipr.link("set", index=idx, state="down")
        ipr.link("set", index=idx, ifname=new)
        ipr.link("set", index=idx, state="up")


def create_veth(host: str, peer: str, *, bridge: str | None = None, hwaddr: str | None = None,
                mtu: int | None = None) -> None:
    """A veth pair with its host end up (and enslaved to `bridge` when given)."""
    with _ipr() as ipr:
        ipr.link("add", ifname=host, kind="veth", peer=peer)
        hidx, pidx = _index(ipr, host), _index(ipr, peer)
        if hwaddr:
            ipr.link("set", index=pidx, address=hwaddr)
        if mtu:
            ipr.link("set", index=hidx, mtu=mtu)
            ipr.link("set", index=pidx, mtu=mtu)
        if bridge:
            bidx = _index(ipr, bridge)
            if bidx is None:
                ipr.link("del", index=hidx)
                raise BadRequest(f"Bridge {bridge!r} does not exist on the host")
            ipr.link("set", index=hidx, master=bidx)
        ipr.link("set", index=hidx, state="up")


def create_macvlan(name: str, parent: str, mode: str = "bridge",
                   hwaddr: str | None = None, mtu: int | None = None) -> None:
    with _ipr() as ipr:
        pidx = _index(ipr, parent)
        if pidx is None:
            raise BadRequest(f"Parent interface {parent!r} does not exist on the host")
        ipr.link("add", ifname=name, kind="macvlan", link=pidx, macvlan_mode=mode)
        idx = _index(ipr, name)
        if hwaddr:
            ipr.link("set", index=idx, address=hwaddr)
        if mtu:
            ipr.link("set", index=idx, mtu=mtu)


def move_to_pid(name: str, pid: int, new_name: str) -> None:
    """Move a host link into the network namespace of `pid`, renamed on the way."""
    with _ipr() as ipr:
        idx = _index(ipr, name)
        if idx is None:
            raise BadRequest(f"Interface {name!r} does not exist on the host")
        ipr.link("set", index=idx, state="down")
        ipr.link("set", index=idx, net_ns_pid=pid, ifname=new_name)


def set_master(name: str, bridge: str) -> None:
    with _ipr() as ipr:
        idx, bidx = _index(ipr, name), _index(ipr, bridge)
        if idx is not None and bidx is not None:
            ipr.link("set", index=idx, master=bidx)


def link_info(name: str) -> dict:
    """Addresses, counters, hwaddr and mtu of a host link, in LXD's network state shape."""
    with _ipr() as ipr:
        idx = _index(ipr, name)
        if idx is None:
            return {}
        link = ipr.get_links(idx)[0]
        addrs = []
        for msg in ipr.get_addr(index=idx):
            fam = "inet" if msg["family"] == 2 else "inet6"
            scope = {0: "global", 253: "link", 254: "local"}.get(msg["scope"], "global")
            addrs.append({"family": fam, "address": msg.get_attr("IFA_ADDRESS"),
                          "netmask": str(msg["prefixlen"]), "scope": scope})
        stats = link.get_attr("IFLA_STATS64") or {}
        flags = link["flags"]
        return {
            "addresses": addrs,
            "counters": {"bytes_received": stats.get("rx_bytes", 0),
                         "bytes_sent": stats.get("tx_bytes", 0),
                         "packets_received": stats.get("rx_packets", 0),
                         "packets_sent": stats.get("tx_packets", 0)},
            "hwaddr": link.get_attr("IFLA_ADDRESS") or "",
            "mtu": link.get_attr("IFLA_MTU") or 0,
            "state": "up" if flags & 1 else "down",
            "type": "loopback" if name == "lo" else "broadcast",
        }
