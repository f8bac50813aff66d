"""pyroute2 helpers (bridges, veth pairs, moving links between namespaces), run
in a short-lived helper process; read-only queries use sysfs and `ip -j`.

pyroute2 costs ~22 MB of resident memory once imported (measured here: 10 ->
33 MB), which the daemon would then carry forever, idle or not. Link changes
are rare (network create/update, nic hotplug), so they run batched in one
`python -m runtime.network.netlink` process (~0.2 s) and the daemon itself
never imports pyroute2. Instance start/stop never needs it: liblxc makes the
veths, and state comes from sysfs and `ip -j`.
"""
from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import subprocess
import sys
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
