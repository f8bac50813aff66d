"""GET .../state: status, processes, memory, cpu, disk and network of an instance.

Read straight from the instance's cgroups and network namespace, so the numbers
are what the kernel accounts, not estimates.
"""
import json

from runtime import proc
from runtime.instances import cgroups
from runtime.instances.model import STATUS_CODES, root_disk
from runtime.storage import volume_name


def first_int(value: str | None) -> int:
    """The leading integer of a cgroup file's content (0 when absent or odd)."""
    try:
        return int((value or "0").split()[0])
    except ValueError:
        return 0


def _memory(cg: str) -> dict:
    if cgroups.unified_only():
        return {"usage": first_int(cgroups.read("", cg, "memory.current")),
                "usage_peak": first_int(cgroups.read("", cg, "memory.peak")),
                "swap_usage": first_int(cgroups.read("", cg, "memory.swap.current")),
                "swap_usage_peak": 0}
    usage = first_int(cgroups.read("memory", cg, "memory.usage_in_bytes"))
    memsw = cgroups.read("memory", cg, "memory.memsw.usage_in_bytes")
    return {"usage": usage,
            "usage_peak": first_int(cgroups.read("memory", cg, "memory.max_usage_in_bytes")),
            "swap_usage": max(0, first_int(memsw) - usage) if memsw else 0,
            "swap_usage_peak": 0}


def _cpu(cg: str) -> dict:
    if cgroups.unified_only():
        stat = cgroups.read("", cg, "cpu.stat") or ""
        for line in stat.splitlines():
            if line.startswith("usage_usec"):
                return {"usage": first_int(line.split()[1]) * 1000}
        return {"usage": 0}
    return {"usage": first_int(cgroups.read("cpuacct", cg, "cpuacct.usage"))}


def processes(cg: str) -> int:
    ctrl = "" if cgroups.unified_only() else "pids"
    value = cgroups.read(ctrl, cg, "pids.current")
    if value is not None:
        return first_int(value)
    procs = cgroups.read(ctrl or "memory", cg, "cgroup.procs") or ""
    return len(procs.split())


async def network(pid: int, config: dict, devices: dict) -> dict:
    """Interfaces in the container's network namespace, as LXD reports them."""
    rc, out, _ = await proc.run(["nsenter", "-t", str(pid), "-n", "ip", "-j", "-s", "addr"],
                                check=False)
    if rc != 0:
        return {}
    try:
        links = json.loads(out)
    except json.JSONDecodeError:
        return {}
    host_names = {}
    for devname, dev in devices.items():
        if dev.get("type") == "nic":
            name = dev.get("name", devname)
            host_names[name] = dev.get("host_name") or config.get(
                f"volatile.{devname}.host_name", "")
    result = {}
    for link in links:
        name = link.get("ifname")
        stats = link.get("stats64") or {}
        rx, tx = stats.get("rx", {}), stats.get("tx", {})
        addresses = []
        for a in link.get("addr_info", []):
            addresses.append({"family": "inet" if a.get("family") == "inet" else "inet6",
                              "address": a.get("local"), "netmask": str(a.get("prefixlen")),
                              "scope": a.get("scope")})
        result[name] = {
            "addresses": addresses,
            "counters": {"bytes_received": rx.get("bytes", 0), "bytes_sent": tx.get("bytes", 0),
                         "packets_received": rx.get("packets", 0),
                         "packets_sent": tx.get("packets", 0),
                         "errors_received": rx.get("errors", 0),
                         "errors_sent": tx.get("errors", 0),
                         "packets_dropped_outbound": tx.get("dropped", 0),
                         "packets_dropped_inbound": rx.get("dropped", 0)},
            "hwaddr": link.get("address", ""), "host_name": host_names.get(name, ""),
            "mtu": link.get("mtu", 0), "state": "up" if "UP" in link.get("flags", []) else "down",
            "type": "loopback" if link.get("link_type") == "loopback" else "broadcast",
        }
    return result


async def render(d, inst) -> dict:
    status = d.instances.status(inst)
    pid = d.instances.pid(inst)
    out = {"status": status, "status_code": STATUS_CODES[status], "pid": pid or 0,
           "processes": 0, "memory": {"usage": 0, "usage_peak": 0, "swap_usage": 0,
                                      "swap_usage_peak": 0},
           "cpu": {"usage": 0}, "network": None, "disk": {}}
    root = root_disk(inst.expanded_devices)
    if root:
        usage = await d.pools.get(inst.pool).usage(volume_name(inst.project, inst.name))
        out["disk"] = {root[0]: {"usage": usage}}
    if pid:
        cg = d.instances.cgroup(inst)
        out["memory"] = _memory(cg)
        out["cpu"] = _cpu(cg)
        out["processes"] = processes(cg)
        out["network"] = await network(pid, inst.expanded_config, inst.expanded_devices)
    return out
