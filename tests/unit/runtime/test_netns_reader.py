"""The rtnetlink reader behind every instance state (runtime.network.netlink):
the parsers on hand-built messages, and the reader on this process's own
namespace against what `ip -j -s addr` says about it."""
import json
import socket
import struct
import subprocess

import pytest

from runtime.network import netlink as nl


def _attr(kind: int, payload: bytes) -> bytes:
    raw = nl.RTATTR.pack(nl.RTATTR.size + len(payload), kind) + payload
    return raw + b"\0" * (-len(raw) % 4)


def _msg(kind: int, body: bytes) -> bytes:
    raw = nl.NLMSG_HDR.pack(nl.NLMSG_HDR.size + len(body), kind, 2, 1, 0) + body
    return raw + b"\0" * (-len(raw) % 4)


def _link(index: int, name: str, flags: int, mtu: int, mac: bytes | None,
          stats: tuple[int, ...] | None) -> bytes:
    body = nl.IFINFOMSG.pack(0, 1, index, flags, 0)
    body += _attr(nl.IFLA_IFNAME, name.encode() + b"\0")
    body += _attr(nl.IFLA_MTU, struct.pack("=I", mtu))
    if mac is not None:
        body += _attr(nl.IFLA_ADDRESS, mac)
    body += _attr(99, b"\1\2\3")  # an attribute the parser does not know: skipped
    if stats is not None:
        body += _attr(nl.IFLA_STATS64, struct.pack("=23Q", *stats, *[0] * (23 - len(stats))))
    return _msg(nl.RTM_NEWLINK, body)


def _addr(index: int, family: int, prefix: int, local: str | None, address: str) -> bytes:
    body = nl.IFADDRMSG.pack(family, prefix, 0, 0, index)
    body += _attr(nl.IFA_ADDRESS, socket.inet_pton(family, address))
    if local:
        body += _attr(nl.IFA_LOCAL, socket.inet_pton(family, local))
    return _msg(nl.RTM_NEWADDR, body)


def test_links_in_lxd_shape():
    up_bcast = nl.IFF_UP | nl.IFF_BROADCAST
    data = (_link(1, "lo", nl.IFF_UP | nl.IFF_LOOPBACK, 65536, b"\0" * 6, (5, 5, 300, 300))
            + _link(7, "eth0", up_bcast, 1450, bytes.fromhex("00163e0a0b0c"),
                    (10, 20, 1000, 2000, 1, 2, 3, 4))
            + _link(9, "tun0", nl.IFF_POINTOPOINT, 1400, None, None)
            + _msg(nl.NLMSG_DONE, b"\0\0\0\0"))
    links = nl.parse_links(data)
    assert sorted(links) == [1, 7, 9]
    eth0 = links[7]
    assert eth0["name"] == "eth0" and eth0["mtu"] == 1450
    assert eth0["hwaddr"] == "00:16:3e:0a:0b:0c"
    assert eth0["state"] == "up" and eth0["type"] == "broadcast"
    assert eth0["counters"] == {"bytes_received": 1000, "bytes_sent": 2000,
                                "packets_received": 10, "packets_sent": 20,
                                "errors_received": 1, "errors_sent": 2,
                                "packets_dropped_outbound": 4, "packets_dropped_inbound": 3}
    assert list(eth0) == ["name", "addresses", "counters", "hwaddr", "host_name", "mtu",
                          "state", "type"]
    # LXD reports no hardware address for loopback, and its type by flags
    assert links[1]["hwaddr"] == "" and links[1]["type"] == "loopback"
    assert links[9]["type"] == "point-to-point" and links[9]["state"] == "down"
    assert links[9]["hwaddr"] == "" and links[9]["counters"]["bytes_sent"] == 0


def test_addresses_local_over_peer_and_lxd_scopes():
    data = (_addr(7, socket.AF_INET, 24, "10.1.2.3", "10.1.2.3")
            + _addr(9, socket.AF_INET, 32, "10.9.0.1", "10.9.0.2")    # p2p: local is ours
            + _addr(1, socket.AF_INET, 8, None, "127.0.0.1")
            + _addr(1, socket.AF_INET6, 128, None, "::1")
            + _addr(7, socket.AF_INET6, 64, None, "fe80::216:3eff:fe0a:b0c")
            + _addr(7, socket.AF_INET6, 64, None, "fd42::5")
            + _addr(7, socket.AF_INET, 16, None, "169.254.3.4")
            + _msg(nl.RTM_NEWLINK, b"\0" * 16))   # not an address: ignored
    got = nl.parse_addresses(data)
    assert got == [
        (7, {"family": "inet", "address": "10.1.2.3", "netmask": "24", "scope": "global"}),
        (9, {"family": "inet", "address": "10.9.0.1", "netmask": "32", "scope": "global"}),
        (1, {"family": "inet", "address": "127.0.0.1", "netmask": "8", "scope": "local"}),
        (1, {"family": "inet6", "address": "::1", "netmask": "128", "scope": "local"}),
        (7, {"family": "inet6", "address": "fe80::216:3eff:fe0a:b0c", "netmask": "64",
             "scope": "link"}),
        (7, {"family": "inet6", "address": "fd42::5", "netmask": "64", "scope": "global"}),
        (7, {"family": "inet", "address": "169.254.3.4", "netmask": "16", "scope": "link"}),
    ]


def test_truncated_and_garbage_input_is_ignored():
    good = _link(3, "eth1", nl.IFF_UP | nl.IFF_BROADCAST, 1500, b"\1" * 6, None)
    assert nl.parse_links(good[:-5]) == {}          # message longer than the data
    assert nl.parse_links(b"\xff" * 7) == {}
    bad_attr = bytearray(good)
    struct.pack_into("=H", bad_attr, nl.NLMSG_HDR.size + nl.IFINFOMSG.size, 2)  # len < 4
    assert nl.parse_links(bytes(bad_attr))[3]["name"] == ""
    assert nl.parse_addresses(_msg(nl.RTM_NEWADDR, b"\0" * 3)) == []


def test_reader_matches_ip_on_this_namespace():
    """The real kernel: this process's namespace read both ways."""
    try:
        p = subprocess.run(["ip", "-j", "-s", "addr"], capture_output=True, text=True,
                           check=True)
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("iproute2 not available")
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE) as s:
        mine = nl.read_interfaces(s)
    theirs = {link["ifname"]: link for link in json.loads(p.stdout)}
    assert set(mine) == set(theirs)
    for name, link in theirs.items():
        got = mine[name]
        assert got["mtu"] == link["mtu"]
        assert got["state"] == ("up" if "UP" in link["flags"] else "down")
        if link.get("link_type") != "loopback" and link.get("address"):
            assert got["hwaddr"] == link["address"]
        assert sorted((a["address"], a["netmask"]) for a in got["addresses"]) == sorted(
            (a["local"], str(a["prefixlen"])) for a in link.get("addr_info", []))
        # counters only grow: ip ran first
        assert got["counters"]["bytes_received"] >= link["stats64"]["rx"]["bytes"]
        assert got["counters"]["packets_sent"] >= link["stats64"]["tx"]["packets"]
