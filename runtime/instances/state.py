"""GET .../state: status, processes, memory, cpu, disk and network of an instance.

Read straight from the instance's cgroups and network namespace, so the numbers
are what the kernel accounts, not estimates.
"""
import logging

from runtime.instances import cgroups
from runtime.instances.model import STATUS_CODES, root_disk
from runtime.network import netlink
from runtime.storage import volume_name

LOG = logging.getLogger(__name__)


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
    """Interfaces in the container's network namespace, as LXD reports them.

    Read over netlink from inside the namespace (runtime.network.netlink), not by a
    helper process: this runs for every instance of every `lxc list`."""
    try:
        found = await netlink.netns_interfaces(pid)
    except OSError as exc:  # the container stopped meanwhile, or its pid was reused
        LOG.debug("network state of pid %s: %s", pid, exc)
        return {}
    except RuntimeError as exc:  # the reader threads could not start: say so, answer
        LOG.warning("network state of pid %s: %s", pid, exc)
        return {}
    host_names = {}
    for devname, dev in devices.items():
        if dev.get("type") == "nic":
            name = dev.get("name", devname)
            host_names[name] = dev.get("host_name") or config.get(
                f"volatile.{devname}.host_name", "")
    for name, iface in found.items():
        iface["host_name"] = host_names.get(name, "")
    return found


async def render(d, inst, listing: bool = False, status: str | None = None) -> dict:
    """The state object. `listing`: one row of many (recursion=2), which takes the
    disk usage already known rather than measuring it (runtime.storage.usage);
    `status`: the instance's, when the caller has just read it."""
    status = status or d.instances.status(inst)
    pid = d.instances.pid(inst)
    out = {"status": status, "status_code": STATUS_CODES[status], "pid": pid or 0,
           "processes": 0, "memory": {"usage": 0, "usage_peak": 0, "swap_usage": 0,
                                      "swap_usage_peak": 0},
           "cpu": {"usage": 0}, "network": None, "disk": {}}
    root = root_disk(inst.expanded_devices)
    if root:
        pool, vol = d.pools.get(inst.pool), volume_name(inst.project, inst.name)
        usage = pool.cached_usage(vol) if listing else await pool.usage(vol)
        if usage is not None:
            out["disk"] = {root[0]: {"usage": usage}}
    if pid:
        cg = d.instances.cgroup(inst)
        out["memory"] = _memory(cg)
        out["cpu"] = _cpu(cg)
        out["processes"] = processes(cg)
        out["network"] = await network(pid, inst.expanded_config, inst.expanded_devices)
    return out
