"""nic `limits.ingress` / `limits.egress` with tc on the host end of the link.

What the container receives leaves the host end, so ingress is a token bucket
(tbf) on the host end's root qdisc; what the container sends arrives on the
host end, so egress is a policer on its ingress qdisc (the way LXD does it).
"""
from __future__ import annotations

import re

from runtime import proc

_UNITS = {"bit": 1, "kbit": 10**3, "mbit": 10**6, "gbit": 10**9, "tbit": 10**12}


def parse_rate(value: str) -> int:
    """Bits per second from an LXD rate ("100Mbit", "1Gbit", "500kbit")."""
    m = re.fullmatch(r"\s*(\d+)\s*([kKmMgGtT]?bit)(?:/s)?\s*", value or "")
    if not m:
        raise ValueError(f"invalid rate {value!r} (use e.g. 10Mbit)")
    return int(m.group(1)) * _UNITS[m.group(2).lower()]


def _burst(bits: int) -> int:
    # At least one MTU-sized packet plus headroom; a tenth of a second of traffic otherwise.
    return max(bits // 80, 16 * 1024)


def ifb_name(host_if: str) -> str:
    """The ifb device that carries a link's egress shaping (15 chars max)."""
    return "ifb" + host_if[-12:]


async def apply(host_if: str, ingress: str | None, egress: str | None) -> None:
    """Replace whatever shaping the link had with the requested limits.

    Egress (traffic the container sends) arrives on the host end's ingress,
    which cannot be queued: it is redirected to an ifb device whose root tbf
    does the shaping. (A policer would do without ifb, but kernels built
    without act_police, like this host's, refuse it; ifb + mirred is common.)
    """
    ifb = ifb_name(host_if)
    await proc.run(["tc", "qdisc", "del", "dev", host_if, "root"], check=False)
    await proc.run(["tc", "qdisc", "del", "dev", host_if, "ingress"], check=False)
    await proc.run(["ip", "link", "del", ifb], check=False)
    if ingress:
        bits = parse_rate(ingress)
        await proc.run(["tc", "qdisc", "add", "dev", host_if, "root", "handle", "1:0", "tbf",
                        "rate", f"{bits}bit", "burst", str(_burst(bits)),
                        "latency", "50ms"])
    if egress:
        bits = parse_rate(egress)
        await proc.run(["ip", "link", "add", ifb, "type", "ifb"])
        await proc.run(["ip", "link", "set", ifb, "up"])
        await proc.run(["tc", "qdisc", "add", "dev", ifb, "root", "handle", "1:0", "tbf",
                        "rate", f"{bits}bit", "burst", str(_burst(bits)), "latency", "50ms"])
        await proc.run(["tc", "qdisc", "add", "dev", host_if, "handle", "ffff:0", "ingress"])
        await proc.run(["tc", "filter", "add", "dev", host_if, "parent", "ffff:0",
                        "protocol", "all", "u32", "match", "u32", "0", "0", "action",
                        "mirred", "egress", "redirect", "dev", ifb])


async def remove(host_if: str) -> None:
    """Drop the ifb left behind when the container (and so its veth) went away."""
    await proc.run(["ip", "link", "del", ifb_name(host_if)], check=False)


async def show(host_if: str) -> str:
    _rc, out, _ = await proc.run(["tc", "qdisc", "show", "dev", host_if], check=False)
    _rc2, out2, _ = await proc.run(["tc", "qdisc", "show", "dev", ifb_name(host_if)],
                                   check=False)
    return out + out2
