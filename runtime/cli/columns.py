"""`list -c`: the lxc CLI's column shorthands and custom config/device columns.

Users of LXD type ``lxc list -c ns4 --format csv`` in scripts; the same
string must work here. A comma-separated entry holding ``:`` or ``.`` is a
custom column ``[config:|devices:]key[:name]`` (a config key, or a device
key written ``devices:eth0.hwaddr``); any other entry is a run of shorthand
letters.
"""
from __future__ import annotations

from collections.abc import Callable

DEFAULT = "ns46tS"


def _addresses(family: str) -> Callable[[dict], list[str]]:
    def get(inst: dict) -> list[str]:
        out = []
        for dev, net in ((inst.get("state") or {}).get("network") or {}).items():
            if dev == "lo":
                continue
            out += [f"{a['address']} ({dev})" for a in net.get("addresses", [])
                    if a.get("family") == family and a.get("scope") == "global"]
        return out
    return get


def _bytes(n: int | None) -> str:
    if not n:
        return ""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.2f}{unit}" if unit != "B" else f"{n}B"
        n /= 1024
    return ""


def _state(inst: dict, *path: str):
    value = inst.get("state") or {}
    for key in path:
        value = (value or {}).get(key)
    return value


def _memory_percent(inst: dict) -> str:
    usage = _state(inst, "memory", "usage")
    limit = (inst.get("expanded_config") or inst.get("config") or {}).get("limits.memory")
    total = _state(inst, "memory", "total") or 0
    if not usage or not (limit or total):
        return ""
    from runtime.base.values import parse_size
    cap = parse_size(limit) if limit and not limit.endswith("%") else total
    return f"{usage * 100 / cap:.0f}%" if cap else ""


def _type(inst: dict) -> str:
    kind = inst.get("type", "container").upper()
    return f"{kind} (EPHEMERAL)" if inst.get("ephemeral") else kind


def _root_pool(inst: dict) -> str:
    for dev in (inst.get("expanded_devices") or {}).values():
        if dev.get("type") == "disk" and dev.get("path") == "/":
            return dev.get("pool", "")
    return ""


SHORTHAND: dict[str, tuple[str, Callable[[dict], object]]] = {
    "4": ("IPV4", _addresses("inet")),
    "6": ("IPV6", _addresses("inet6")),
    "a": ("ARCHITECTURE", lambda i: i.get("architecture", "")),
    "b": ("STORAGE POOL", _root_pool),
    "c": ("CREATED AT", lambda i: i.get("created_at", "")),
    "d": ("DESCRIPTION", lambda i: i.get("description", "")),
    "D": ("DISK USAGE", lambda i: _bytes(_state(i, "disk", "root", "usage"))),
    "e": ("PROJECT", lambda i: i.get("project", "default")),
    "f": ("BASE IMAGE", lambda i: (i.get("config") or {}).get("volatile.base_image", "")[:12]),
    "F": ("BASE IMAGE", lambda i: (i.get("config") or {}).get("volatile.base_image", "")),
    "l": ("LAST USED AT", lambda i: i.get("last_used_at", "")),
    "L": ("LOCATION", lambda i: i.get("location", "")),
    "m": ("MEMORY USAGE", lambda i: _bytes(_state(i, "memory", "usage"))),
    "M": ("MEMORY USAGE%", _memory_percent),
    "n": ("NAME", lambda i: i["name"]),
    "N": ("PROCESSES", lambda i: _state(i, "processes") or ""),
    "p": ("PID", lambda i: _state(i, "pid") or ""),
    "P": ("PROFILES", lambda i: list(i.get("profiles") or [])),
    "s": ("STATE", lambda i: i.get("status", "").upper()),
    "S": ("SNAPSHOTS", lambda i: len(i.get("snapshots") or [])),
    "t": ("TYPE", _type),
    "u": ("CPU USAGE", lambda i: f"{(_state(i, 'cpu', 'usage') or 0) / 1e9:.0f}s"
          if _state(i, "cpu", "usage") else ""),
}


class ColumnError(ValueError):
    pass


def _custom(entry: str) -> tuple[str, Callable[[dict], object]]:
    parts = entry.split(":")
    source = "config"
    if parts[0] in ("config", "devices"):
        source, parts = parts[0], parts[1:]
    if not parts or not parts[0] or len(parts) > 3:
        raise ColumnError(f"Invalid column {entry!r}: expected [config:|devices:]key[:name]")
    key = parts[0]
    header = parts[1] if len(parts) > 1 and parts[1] else key.upper()
    if source == "config":
        return header, lambda i: (i.get("expanded_config") or i.get("config") or {}).get(key, "")
    device, _, dkey = key.partition(".")
    if not dkey:
        raise ColumnError(f"Invalid device column {entry!r}: expected devices:<device>.<key>")
    return header, lambda i: ((i.get("expanded_devices") or i.get("devices") or {})
                              .get(device) or {}).get(dkey, "")


def parse(spec: str | None) -> list[tuple[str, Callable[[dict], object]]]:
    """(header, getter) per column of a -c value."""
    out = []
    for entry in (spec or DEFAULT).split(","):
        if not entry:
            raise ColumnError(f"Empty column entry in {spec!r}")
        if ":" in entry or "." in entry:
            out.append(_custom(entry))
            continue
        for letter in entry:
            if letter not in SHORTHAND:
                raise ColumnError(f"Unknown column shorthand char {letter!r} in {entry!r} "
                                  f"(known: {''.join(SHORTHAND)})")
            out.append(SHORTHAND[letter])
    return out


def rows(instances: list[dict], spec: str | None) -> tuple[list[dict], list[tuple[str, str]]]:
    """Rows keyed by column position and the (header, key) list output.render takes."""
    cols = parse(spec)
    keys = [(header, f"c{n}") for n, (header, _get) in enumerate(cols)]
    return ([{f"c{n}": get(inst) for n, (_h, get) in enumerate(cols)} for inst in instances],
            keys)
