"""Instance limits to cgroup settings, for cgroup v1, v2 and this host's hybrid.

Pure functions from an expanded config to {lxc key suffix: value}; the same
table serves the lxc config at start and live updates through lxc-cgroup.
"""
import functools
import os

from runtime.instances.config import parse_cpuset, parse_size, truthy

CGROUP_ROOT = "/sys/fs/cgroup"


@functools.cache
def unified_only() -> bool:
    """True on a pure cgroup v2 host; hybrid hosts keep the v1 controllers. (The
    layout is the host's boot-time choice: asked once.)"""
    return os.path.exists(os.path.join(CGROUP_ROOT, "cgroup.controllers"))


def frozen(cgroup_dir: str) -> bool:
    """Whether a running container's cgroup is frozen (or freezing): one read, as
    instance listings ask it of every container."""
    if unified_only():
        path, want = os.path.join(CGROUP_ROOT, cgroup_dir, "cgroup.freeze"), ("1",)
    else:
        path = os.path.join(CGROUP_ROOT, "freezer", cgroup_dir, "freezer.state")
        want = ("FROZEN", "FREEZING")
    try:
        with open(path) as f:
            return f.read().strip() in want
    except OSError:
        return False


def host_cpus() -> list[int]:
    return sorted(os.sched_getaffinity(0))


def host_memory() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    return 0


def memory_bytes(value: str, total: int | None = None) -> int:
    if value.endswith("%"):
        return (total or host_memory()) * int(value[:-1]) // 100
    return parse_size(value)


def cpuset_for(value: str, cpus: list[int] | None = None) -> str:
    """A cpuset for limits.cpu: a count takes the first N host cpus, a set is used as is."""
    cpus = cpus or host_cpus()
    v = value.strip()
    if v.isdigit():
        return ",".join(str(c) for c in cpus[:max(1, min(int(v), len(cpus)))])
    return ",".join(str(c) for c in parse_cpuset(v))


def limits(config: dict, v2: bool | None = None) -> dict[str, str]:
    """{"memory.limit_in_bytes": "..."} style settings for the instance's config."""
    v2 = unified_only() if v2 is None else v2
    out: dict[str, str] = {}
    mem = config.get("limits.memory")
    if mem:
        nbytes = memory_bytes(mem)
        soft = config.get("limits.memory.enforce") == "soft"
        if v2:
            out["memory.high" if soft else "memory.max"] = str(nbytes)
            if not truthy(config.get("limits.memory.swap", "true")):
                out["memory.swap.max"] = "0"
        else:
            out["memory.soft_limit_in_bytes" if soft else "memory.limit_in_bytes"] = str(nbytes)
            if not truthy(config.get("limits.memory.swap", "true")):
                out["memory.swappiness"] = "0"
    cpu = config.get("limits.cpu")
    if cpu:
        out["cpuset.cpus"] = cpuset_for(cpu)
    allowance = config.get("limits.cpu.allowance")
    if allowance:
        if allowance.endswith("%"):
            pct = int(allowance[:-1])
            shares = max(2, 1024 * pct // 100)
            if v2:
                out["cpu.weight"] = str(max(1, min(10000, pct)))
            else:
                out["cpu.shares"] = str(shares)
        else:
            quota, period = (int(x[:-2]) * 1000 for x in allowance.split("/"))
            if v2:
                out["cpu.max"] = f"{quota} {period}"
            else:
                out["cpu.cfs_quota_us"] = str(quota)
                out["cpu.cfs_period_us"] = str(period)
    prio = config.get("limits.cpu.priority")
    if prio and not allowance:
        out["cpu.weight" if v2 else "cpu.shares"] = str(
            (int(prio) * 10 + 1) if v2 else 1024 - (10 - int(prio)) * 100)
    procs = config.get("limits.processes")
    if procs:
        out["pids.max"] = procs
    disk_prio = config.get("limits.disk.priority")
    knob = "io.weight" if v2 else blkio_weight_knob()
    if disk_prio and knob:
        weight = 10 + int(disk_prio) * 99
        out[knob] = str(weight if v2 else min(1000, weight))
    return out


def live_limits(config: dict, v2: bool | None = None) -> dict[str, str]:
    """Settings for a live update: the config's limits over the kernel defaults.

    A limit removed from the config must stop applying on a running instance,
    so every knob we manage is written, back to its default when unset.
    """
    v2 = unified_only() if v2 is None else v2
    if v2:
        out = {"memory.max": "max", "memory.high": "max", "cpuset.cpus": cpuset_for(
            str(len(host_cpus()))), "cpu.weight": "100", "cpu.max": "max 100000",
               "pids.max": "max"}
    else:
        out = {"memory.limit_in_bytes": "-1", "memory.soft_limit_in_bytes": "-1",
               "memory.swappiness": "60", "cpuset.cpus": cpuset_for(str(len(host_cpus()))),
               "cpu.shares": "1024", "cpu.cfs_quota_us": "-1", "cpu.cfs_period_us": "100000",
               "pids.max": "max"}
    out.update(limits(config, v2))
    return out


def blkio_weight_knob() -> str | None:
    """The v1 blkio weight file this kernel offers, if any.

    blkio.weight exists only with CFQ (gone since 5.0) and blkio.bfq.weight only
    when BFQ is built in; without either, limits.disk.priority cannot be applied
    and is skipped (reported by host_capabilities()) instead of failing the start.
    """
    for knob in ("blkio.weight", "blkio.bfq.weight"):
        if os.path.exists(os.path.join(CGROUP_ROOT, "blkio", knob)):
            return knob
    return None


def host_capabilities() -> dict[str, bool]:
    """Which limits this host can enforce (for logs, /1.0/resources and tests)."""
    v2 = unified_only()
    return {"limits.disk.priority": bool(v2 or blkio_weight_knob()),
            "limits.read/write": v2 or os.path.exists(
                os.path.join(CGROUP_ROOT, "blkio", "blkio.throttle.read_bps_device"))}


def lxc_key(setting: str, v2: bool | None = None) -> str:
    v2 = unified_only() if v2 is None else v2
    return ("lxc.cgroup2." if v2 else "lxc.cgroup.") + setting


def host_path(controller: str, cgroup_dir: str) -> str | None:
    """Host path of an instance's cgroup for one v1 controller (or v2), if present."""
    base = CGROUP_ROOT if unified_only() else os.path.join(CGROUP_ROOT, controller)
    path = os.path.join(base, cgroup_dir)
    return path if os.path.isdir(path) else None


def read(controller: str, cgroup_dir: str, name: str) -> str | None:
    path = host_path(controller, cgroup_dir)
    if path is None:
        return None
    try:
        with open(os.path.join(path, name)) as f:
            return f.read().strip()
    except OSError:
        return None


def hierarchies() -> list[str]:
    """Every mounted hierarchy: the v2 root alone, or each v1 one plus the v2 mount."""
    if unified_only():
        return [CGROUP_ROOT]
    found = set()
    for entry in os.listdir(CGROUP_ROOT):
        path = os.path.realpath(os.path.join(CGROUP_ROOT, entry))
        if os.path.isdir(path):
            found.add(path)
    return sorted(found)


def remove_stale(*cgroup_dirs: str) -> None:
    """Remove cgroup directories (children first) in every hierarchy. One that
    still holds a process stays: rmdir refuses it, so only leftovers go."""
    for root in hierarchies():
        for cgroup_dir in cgroup_dirs:
            top = os.path.join(root, cgroup_dir)
            if not os.path.isdir(top):
                continue
            for dirpath, _dirs, _files in os.walk(top, topdown=False):
                try:
                    os.rmdir(dirpath)
                except OSError:
                    pass
