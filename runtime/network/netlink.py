"""pyroute2 helpers (bridges, veth pairs, moving links between namespaces), run
in a short-lived helper process; read-only queries use sysfs, `ip -j`, and (for
an instance's interfaces, read on every state and listing) a small rtnetlink
reader of our own, in the daemon.

pyroute2 costs ~22 MB of resident memory once imported (measured here: 10 ->
33 MB), which the daemon would then carry forever, idle or not. Link changes
are rare (network create/update, nic hotplug), so they run batched in one
`python -m runtime.network.netlink` process (~0.2 s) and the daemon itself
never imports pyroute2. Instance start/stop never needs it: liblxc makes the
veths, and an instance's state comes from `netns_interfaces` below.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import ctypes
import ipaddress
import json
import os
import socket
import struct
import subprocess
import sys
import threading
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


def _links() -> list[str]:
    """Interfaces of this process's network namespace.

    From /proc/self/net, not /sys/class/net: sysfs shows the namespace of
    whoever mounted it, so a daemon moved into a namespace of its own with
    ``nsenter --net`` (mounts shared with the machine) would see the machine's
    interfaces there and none of its own."""
    try:
        with open("/proc/self/net/dev") as f:
            lines = f.read().splitlines()[2:]
    except OSError:
        return []
    return [line.split(":", 1)[0].strip() for line in lines if ":" in line]


def exists(name: str) -> bool:
    return name in _links()


def kind(name: str) -> str:
    """LXD's interface type for a host link: bridge, bond, vlan, loopback, physical..."""
    if name == "lo":
        return "loopback"
    p = subprocess.run(["ip", "-d", "-j", "link", "show", "dev", name], capture_output=True,
                       text=True)
    try:
        link = json.loads(p.stdout)[0] if p.returncode == 0 else {}
    except (json.JSONDecodeError, IndexError):
        link = {}
    info_kind = (link.get("linkinfo") or {}).get("info_kind")
    if info_kind in ("bridge", "bond", "vlan"):
        return info_kind
    if info_kind is None and link.get("parentbus"):
        return "physical"
    return "unknown"


def host_links() -> list[str]:
    return sorted(_links())


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


def create_veth(host: str, peer: str, bridge: str | None = None, hwaddr: str | None = None,
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
    p = subprocess.run(["ip", "-j", "-s", "addr", "show", "dev", name], capture_output=True,
                       text=True)
    try:
        link = json.loads(p.stdout)[0] if p.returncode == 0 else None
    except (json.JSONDecodeError, IndexError):
        link = None
    if not link:
        return {}
    stats = link.get("stats64") or {}
    rx, tx = stats.get("rx", {}), stats.get("tx", {})
    return {
        "addresses": [{"family": "inet" if a.get("family") == "inet" else "inet6",
                       "address": a.get("local"), "netmask": str(a.get("prefixlen")),
                       "scope": a.get("scope")} for a in link.get("addr_info", [])],
        "counters": {"bytes_received": rx.get("bytes", 0), "bytes_sent": tx.get("bytes", 0),
                     "packets_received": rx.get("packets", 0),
                     "packets_sent": tx.get("packets", 0)},
        "hwaddr": link.get("address", ""), "mtu": link.get("mtu", 0),
        "state": "up" if "UP" in link.get("flags", []) else "down",
        "type": "loopback" if name == "lo" else "broadcast",
    }


def all_addresses() -> list[str]:
    """Every address on the host, CIDR form (to find a free subnet)."""
    p = subprocess.run(["ip", "-j", "addr"], capture_output=True, text=True)
    try:
        links = json.loads(p.stdout or "[]")
    except json.JSONDecodeError:
        return []
    return [f"{a['local']}/{a['prefixlen']}" for link in links
            for a in link.get("addr_info", []) if a.get("local")]


# Reading an instance's interfaces (in the daemon) -----------------------------------
# Every GET .../state and every `lxc list` row needs the addresses, counters, MAC
# and MTU of each interface in the instance's network namespace. A helper process
# per instance (`nsenter ... ip -j -s addr`, with `du` beside it) made a listing
# of 200 running containers take 4.6 s here. Instead a worker thread enters the
# namespace with setns(2) just long enough to open a NETLINK_ROUTE socket (a
# socket belongs to the namespace it was made in, for life), returns home, and
# dumps links and addresses over it: two netlink round trips, no process. The
# netlink messages are parsed here (a few struct layouts from linux/rtnetlink.h)
# so the daemon still never imports pyroute2. setns(CLONE_NEWNET) changes only
# the calling thread, so the event loop and every other thread stay where they are.
NLMSG_HDR = struct.Struct("=IHHII")        # nlmsghdr: len, type, flags, seq, pid
IFINFOMSG = struct.Struct("=BxHiII")       # family, type, index, flags, change
IFADDRMSG = struct.Struct("=BBBBI")        # family, prefixlen, flags, scope, index
RTATTR = struct.Struct("=HH")              # len, type
STATS64 = struct.Struct("=8Q")             # first 8 fields of rtnl_link_stats64
NLMSG_ERROR, NLMSG_DONE = 2, 3
RTM_NEWLINK, RTM_GETLINK, RTM_NEWADDR, RTM_GETADDR = 16, 18, 20, 22
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
IFLA_ADDRESS, IFLA_IFNAME, IFLA_MTU, IFLA_STATS64 = 1, 3, 4, 23
IFA_ADDRESS, IFA_LOCAL = 1, 2
IFF_UP, IFF_BROADCAST, IFF_LOOPBACK, IFF_POINTOPOINT = 0x1, 0x2, 0x8, 0x10
_CLONE_NEWNET = 0x40000000
# rtnl_link_stats64 begins rx/tx packets, rx/tx bytes, rx/tx errors, rx/tx dropped.
_STATS64_NAMES = ("packets_received", "packets_sent", "bytes_received", "bytes_sent",
                  "errors_received", "errors_sent", "packets_dropped_inbound",
                  "packets_dropped_outbound")
_COUNTERS = ("bytes_received", "bytes_sent", "packets_received", "packets_sent",
             "errors_received", "errors_sent", "packets_dropped_outbound",
             "packets_dropped_inbound")  # LXD's order


def _attrs(data: bytes, offset: int, end: int) -> Iterator[tuple[int, bytes]]:
    """(type, payload) of each rtattr in data[offset:end]."""
    while offset + RTATTR.size <= end:
        length, kind = RTATTR.unpack_from(data, offset)
        if length < RTATTR.size or offset + length > end:
            break
        yield kind & 0x3FFF, data[offset + RTATTR.size:offset + length]
        offset += (length + 3) & ~3


def _messages(data: bytes) -> Iterator[tuple[int, int, int]]:
    """(type, payload offset, message end) of each netlink message in a datagram."""
    offset = 0
    while offset + NLMSG_HDR.size <= len(data):
        length, kind, _flags, _seq, _pid = NLMSG_HDR.unpack_from(data, offset)
        if length < NLMSG_HDR.size or offset + length > len(data):
            break
        yield kind, offset + NLMSG_HDR.size, offset + length
        offset += (length + 3) & ~3


def _link_type(flags: int) -> str:
    # LXD's order (shared/netutils): point-to-point over loopback over broadcast.
    if flags & IFF_POINTOPOINT:
        return "point-to-point"
    if flags & IFF_LOOPBACK:
        return "loopback"
    return "broadcast" if flags & IFF_BROADCAST else "unknown"


def parse_links(data: bytes) -> dict[int, dict]:
    """RTM_NEWLINK messages -> {ifindex: interface in LXD's state shape, plus its
    "name"}; counters from IFLA_STATS64 (what `ip -s` and LXD show)."""
    links: dict[int, dict] = {}
    for kind, off, end in _messages(data):
        if kind != RTM_NEWLINK or off + IFINFOMSG.size > end:
            continue
        _family, _type, index, flags, _change = IFINFOMSG.unpack_from(data, off)
        link = {"name": "", "addresses": [], "counters": dict.fromkeys(_COUNTERS, 0),
                "hwaddr": "", "host_name": "", "mtu": 0,
                "state": "up" if flags & IFF_UP else "down", "type": _link_type(flags)}
        for atype, payload in _attrs(data, off + IFINFOMSG.size, end):
            if atype == IFLA_IFNAME:
                link["name"] = payload.split(b"\0", 1)[0].decode(errors="replace")
            elif atype == IFLA_MTU and len(payload) >= 4:
                link["mtu"] = struct.unpack_from("=I", payload)[0]
            elif atype == IFLA_ADDRESS and not flags & IFF_LOOPBACK:
                link["hwaddr"] = ":".join(f"{b:02x}" for b in payload)
            elif atype == IFLA_STATS64 and len(payload) >= STATS64.size:
                stats = dict(zip(_STATS64_NAMES, STATS64.unpack_from(payload), strict=True))
                link["counters"] = {k: stats[k] for k in _COUNTERS}
        links[index] = link
    return links


def _scope(address: str) -> str:
    # As LXD 5.0 reports it (by prefix, not the kernel's scope number), so clients
    # that filter on "global" see the same addresses from either daemon.
    if address.startswith("127") or address == "::1":
        return "local"
    if address.startswith(("169.254", "fe80:")):
        return "link"
    return "global"


def parse_addresses(data: bytes) -> list[tuple[int, dict]]:
    """RTM_NEWADDR messages -> [(ifindex, address in LXD's shape)]. The address is
    IFA_LOCAL when present (IFA_ADDRESS is the peer on point-to-point links)."""
    out = []
    for kind, off, end in _messages(data):
        if kind != RTM_NEWADDR or off + IFADDRMSG.size > end:
            continue
        family, prefixlen, _flags, _scope_id, index = IFADDRMSG.unpack_from(data, off)
        if family not in (socket.AF_INET, socket.AF_INET6):
            continue
        found: dict[int, bytes] = dict(_attrs(data, off + IFADDRMSG.size, end))
        raw = found.get(IFA_LOCAL) or found.get(IFA_ADDRESS)
        if not raw:
            continue
        try:
            text = socket.inet_ntop(family, raw)
        except ValueError:
            continue
        out.append((index, {"family": "inet" if family == socket.AF_INET else "inet6",
                            "address": text, "netmask": str(prefixlen),
                            "scope": _scope(text)}))
    return out


def _dump(sock: socket.socket, msg_type: int, body: bytes, seq: int) -> bytes:
    """Send one dump request; every answer datagram until NLMSG_DONE, joined."""
    sock.send(NLMSG_HDR.pack(NLMSG_HDR.size + len(body), msg_type,
                             NLM_F_REQUEST | NLM_F_DUMP, seq, 0) + body)
    chunks = []
    while True:
        data = sock.recv(65536)
        if not data:
            raise OSError("netlink socket closed")
        for kind, off, _end in _messages(data):
            if kind == NLMSG_ERROR:
                err = -struct.unpack_from("=i", data, off)[0]
                if err:
                    raise OSError(err, os.strerror(err))
            if kind in (NLMSG_DONE, NLMSG_ERROR):
                chunks.append(data)
                return b"".join(chunks)
        chunks.append(data)


def read_interfaces(sock: socket.socket) -> dict[str, dict]:
    """Every interface the socket's namespace has, with its addresses, by name."""
    links = parse_links(_dump(sock, RTM_GETLINK, IFINFOMSG.pack(0, 0, 0, 0, 0), 1))
    for index, address in parse_addresses(_dump(sock, RTM_GETADDR,
                                                 IFADDRMSG.pack(0, 0, 0, 0, 0), 2)):
        if index in links:
            links[index]["addresses"].append(address)
    return {link.pop("name"): link for link in links.values()}


_libc = ctypes.CDLL(None, use_errno=True)
_home = threading.local()


def _setns(fd: int) -> None:
    if _libc.setns(fd, _CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


def _remember_home() -> None:
    """Each reader thread keeps a handle on the namespace it started in (the
    daemon's), so it always goes back there, whatever happened in between."""
    _home.fd = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)


def _route_socket_of(pid: int) -> socket.socket:
    target = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        _setns(target)
        try:
            sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                                 socket.NETLINK_ROUTE)
        finally:
            _setns(_home.fd)
    finally:
        os.close(target)
    return sock


def netns_interfaces_sync(pid: int) -> dict[str, dict]:
    """The interfaces of pid's network namespace (run in a reader thread)."""
    with _route_socket_of(pid) as sock:
        sock.settimeout(5)
        return read_interfaces(sock)


# Two threads: the work is a few system calls and a little parsing per instance,
# and two cores; more would only queue on the GIL.
_readers = concurrent.futures.ThreadPoolExecutor(
    max_workers=2, thread_name_prefix="netns-reader", initializer=_remember_home)


async def netns_interfaces(pid: int) -> dict[str, dict]:
    """The interfaces of pid's network namespace, from the event loop."""
    return await asyncio.get_running_loop().run_in_executor(
        _readers, netns_interfaces_sync, pid)


# The helper process ---------------------------------------------------------------
OPS = {"ensure_bridge", "set_addresses", "delete", "rename", "create_veth",
       "create_macvlan", "move_to_pid", "set_master"}


def _helper_argv() -> tuple[list[str], dict]:
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
           "PYTHONPATH": root}
    return [sys.executable, "-m", "runtime.network.netlink"], env


def _result(out: str, err: str, rc: int) -> None:
    try:
        res = json.loads(out)
    except json.JSONDecodeError:
        raise RuntimeError(f"netlink helper failed (exit {rc}): {err.strip()[-500:]}")
    if res.get("error"):
        if res.get("bad_request"):
            raise BadRequest(res["error"])
        raise RuntimeError(res["error"])


def call_sync(calls: list[tuple[str, list]]) -> None:
    """Run netlink operations, in order, in one helper process (blocking)."""
    argv, env = _helper_argv()
    p = subprocess.run(argv, input=json.dumps(calls), capture_output=True, text=True,
                       env=env, timeout=60)
    _result(p.stdout, p.stderr, p.returncode)


async def call(calls: list[tuple[str, list]]) -> None:
    """Same as call_sync, from the event loop."""
    from runtime import proc
    argv, env = _helper_argv()
    rc, out, err = await proc.run(argv, input=json.dumps(calls).encode(), check=False,
                                  env=env, timeout=60)
    _result(out, err, rc)


def main() -> int:
    calls = json.load(sys.stdin)
    for op, args in calls:
        if op not in OPS:
            print(json.dumps({"error": f"unknown netlink op {op!r}"}))
            return 1
        try:
            globals()[op](*args)
        except BadRequest as exc:
            print(json.dumps({"error": str(exc), "bad_request": True}))
            return 1
        except Exception as exc:  # noqa: BLE001 - reported to the daemon as text
            print(json.dumps({"error": f"{op} {args}: {type(exc).__name__}: {exc}"}))
            return 1
    print(json.dumps({"ok": True}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
