"""Instance metrics in LXD's OpenMetrics text (what `GET /1.0/metrics` serves).

Names, help texts and labels are LXD's (lxd/metrics/types.go), so dashboards and
alerts written for LXD work unchanged: per running instance `lxd_cpu_seconds_total`,
`lxd_memory_*_bytes`, `lxd_network_*_total`, `lxd_disk_*_total`,
`lxd_filesystem_*_bytes` and `lxd_procs_total`, labelled `name`, `project` and
`type`; `lxd_instances` counts every instance per project and type. The numbers
come from the instance's cgroups and network namespace, as `.../state` does.
The daemon's own Go runtime metrics (`lxd_go_*`) have no meaning here and are not
served; `lxd_uptime_seconds` and `lxd_operations_total` are, to administrators.
"""
from __future__ import annotations

import os
import time

from runtime.instances import cgroups
from runtime.instances import state as inst_state

STARTED = time.time()
_HZ = os.sysconf("SC_CLK_TCK")

HELP = {
    "lxd_cpu_seconds_total": "The total number of CPU time used in seconds.",
    "lxd_disk_read_bytes_total": "The total number of bytes read.",
    "lxd_disk_reads_completed_total": "The total number of completed reads.",
    "lxd_disk_written_bytes_total": "The total number of bytes written.",
    "lxd_disk_writes_completed_total": "The total number of completed writes.",
    "lxd_filesystem_avail_bytes": "The number of available space in bytes.",
    "lxd_filesystem_free_bytes": "The number of free space in bytes.",
    "lxd_filesystem_size_bytes": "The size of the filesystem in bytes.",
    "lxd_memory_Active_anon_bytes": "The amount of anonymous memory on active LRU list.",
    "lxd_memory_Active_file_bytes": "The amount of file-backed memory on active LRU list.",
    "lxd_memory_Active_bytes": "The amount of memory on active LRU list.",
    "lxd_memory_Cached_bytes": "The amount of cached memory.",
    "lxd_memory_Dirty_bytes": "The amount of memory waiting to get written back to the disk.",
    "lxd_memory_Inactive_anon_bytes": "The amount of anonymous memory on inactive LRU list.",
    "lxd_memory_Inactive_file_bytes": "The amount of file-backed memory on inactive LRU list.",
    "lxd_memory_Inactive_bytes": "The amount of memory on inactive LRU list.",
    "lxd_memory_Mapped_bytes": "The amount of mapped memory.",
    "lxd_memory_MemAvailable_bytes": "The amount of available memory.",
    "lxd_memory_MemFree_bytes": "The amount of free memory.",
    "lxd_memory_MemTotal_bytes": "The total amount of memory or configured memory limit.",
    "lxd_memory_RSS_bytes": "The amount of anonymous and swap cache memory.",
    "lxd_memory_Shmem_bytes": "The amount of cached filesystem data that is swap-backed.",
    "lxd_memory_Swap_bytes": "The amount of used swap memory.",
    "lxd_memory_Unevictable_bytes": "The amount of unevictable memory.",
    "lxd_memory_Writeback_bytes": "The amount of memory queued for syncing to disk.",
    "lxd_memory_OOM_kills_total": "The number of out of memory kills.",
    "lxd_network_receive_bytes_total": "The amount of received bytes on a given interface.",
    "lxd_network_receive_drop_total":
        "The amount of received dropped bytes on a given interface.",
    "lxd_network_receive_errs_total": "The amount of received errors on a given interface.",
    "lxd_network_receive_packets_total":
        "The amount of received packets on a given interface.",
    "lxd_network_transmit_bytes_total":
        "The amount of transmitted bytes on a given interface.",
    "lxd_network_transmit_drop_total":
        "The amount of transmitted dropped bytes on a given interface.",
    "lxd_network_transmit_errs_total":
        "The amount of transmitted errors on a given interface.",
    "lxd_network_transmit_packets_total":
        "The amount of transmitted packets on a given interface.",
    "lxd_operations_total": "The number of running operations",
    "lxd_procs_total": "The number of running processes.",
    "lxd_uptime_seconds": "The daemon uptime in seconds.",
    "lxd_instances": "The number of instances.",
}
_GAUGES = {"lxd_procs_total", "lxd_operations_total", "lxd_instances", "lxd_uptime_seconds"}
# memory.stat keys (v1 hierarchical totals, then v2) behind each lxd_memory_* gauge
_MEMORY_V1 = {"Active_anon": "total_active_anon", "Active_file": "total_active_file",
              "Cached": "total_cache", "Dirty": "total_dirty",
              "Inactive_anon": "total_inactive_anon", "Inactive_file": "total_inactive_file",
              "Mapped": "total_mapped_file", "RSS": "total_rss", "Shmem": "total_shmem",
              "Swap": "total_swap", "Unevictable": "total_unevictable",
              "Writeback": "total_writeback"}
_MEMORY_V2 = {"Active_anon": "active_anon", "Active_file": "active_file", "Cached": "file",
              "Dirty": "file_dirty", "Inactive_anon": "inactive_anon",
              "Inactive_file": "inactive_file", "Mapped": "file_mapped", "RSS": "anon",
              "Shmem": "shmem", "Unevictable": "unevictable", "Writeback": "file_writeback"}
_NET = {"bytes_received": "receive_bytes", "packets_received": "receive_packets",
        "errors_received": "receive_errs", "packets_dropped_inbound": "receive_drop",
        "bytes_sent": "transmit_bytes", "packets_sent": "transmit_packets",
        "errors_sent": "transmit_errs", "packets_dropped_outbound": "transmit_drop"}


class MetricSet:
    def __init__(self) -> None:
        self.samples: dict[str, list[tuple[dict[str, str], float]]] = {}

    def add(self, metric: str, value: float, /, **labels: str) -> None:
        self.samples.setdefault(metric, []).append((labels, value))

    def render(self) -> str:
        out = []
        for name in sorted(self.samples):
            kind = "gauge" if name in _GAUGES or not name.endswith("_total") else "counter"
            out += [f"# HELP {name} {HELP[name]}", f"# TYPE {name} {kind}"]
            for labels, value in self.samples[name]:
                text = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(labels.items()))
                out.append(f"{name}{{{text}}} {_number(value)}" if text else
                           f"{name} {_number(value)}")
        out.append("# EOF")
        return "\n".join(out) + "\n"


def _escape(value: str) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _kv(text: str | None) -> dict[str, int]:
    out = {}
    for line in (text or "").splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].lstrip("-").isdigit():
            out[parts[0]] = int(parts[1])
    return out


def _cpu(ms: MetricSet, cg: str, labels: dict) -> None:
    if cgroups.unified_only():
        stat = _kv(cgroups.read("", cg, "cpu.stat"))
        for mode in ("user", "system"):
            ms.add("lxd_cpu_seconds_total", stat.get(f"{mode}_usec", 0) / 1e6, mode=mode,
                   **labels)
        return
    per_cpu = cgroups.read("cpuacct", cg, "cpuacct.usage_all")
    if per_cpu:
        for line in per_cpu.splitlines()[1:]:
            cpu, user, system = line.split()
            ms.add("lxd_cpu_seconds_total", int(user) / 1e9, cpu=cpu, mode="user", **labels)
            ms.add("lxd_cpu_seconds_total", int(system) / 1e9, cpu=cpu, mode="system",
                   **labels)
        return
    stat = _kv(cgroups.read("cpuacct", cg, "cpuacct.stat"))
    for mode in ("user", "system"):
        ms.add("lxd_cpu_seconds_total", stat.get(mode, 0) / _HZ, mode=mode, **labels)


def _memory(ms: MetricSet, cg: str, labels: dict) -> None:
    v2 = cgroups.unified_only()
    ctrl = "" if v2 else "memory"
    stat = _kv(cgroups.read(ctrl, cg, "memory.stat"))
    for metric, key in (_MEMORY_V2 if v2 else _MEMORY_V1).items():
        ms.add(f"lxd_memory_{metric}_bytes", stat.get(key, 0), **labels)
    ms.add("lxd_memory_Active_bytes", stat.get(_MEMORY_V2["Active_anon"] if v2 else
                                               "total_active_anon", 0) +
           stat.get("active_file" if v2 else "total_active_file", 0), **labels)
    ms.add("lxd_memory_Inactive_bytes", stat.get("inactive_anon" if v2 else
                                                 "total_inactive_anon", 0) +
           stat.get("inactive_file" if v2 else "total_inactive_file", 0), **labels)
    if v2:
        usage = inst_state.first_int(cgroups.read("", cg, "memory.current"))
        limit = cgroups.read("", cg, "memory.max")
        ms.add("lxd_memory_Swap_bytes",
               inst_state.first_int(cgroups.read("", cg, "memory.swap.current")), **labels)
        oom = _kv(cgroups.read("", cg, "memory.events")).get("oom_kill", 0)
    else:
        usage = inst_state.first_int(cgroups.read("memory", cg, "memory.usage_in_bytes"))
        limit = cgroups.read("memory", cg, "memory.limit_in_bytes")
        oom = _kv(cgroups.read("memory", cg, "memory.oom_control")).get("oom_kill", 0)
    host = cgroups.host_memory()
    total = min(host, int(limit)) if limit and limit.isdigit() else host
    free = max(0, total - usage)
    ms.add("lxd_memory_MemTotal_bytes", total, **labels)
    ms.add("lxd_memory_MemFree_bytes", free, **labels)
    cache = stat.get("file" if v2 else "total_cache", 0)
    ms.add("lxd_memory_MemAvailable_bytes", min(total, free + cache), **labels)
    ms.add("lxd_memory_OOM_kills_total", oom, **labels)


def _device_name(majmin: str) -> str:
    try:
        with open(f"/sys/dev/block/{majmin}/uevent") as f:
            for line in f:
                if line.startswith("DEVNAME="):
                    return line.split("=", 1)[1].strip()
    except OSError:
        pass
    return majmin


def _disk(ms: MetricSet, cg: str, labels: dict) -> None:
    per_dev: dict[str, dict[str, int]] = {}
    if cgroups.unified_only():
        for line in (cgroups.read("", cg, "io.stat") or "").splitlines():
            majmin, *fields = line.split()
            vals = dict(f.split("=", 1) for f in fields if "=" in f)
            per_dev[majmin] = {k: int(v) for k, v in vals.items() if v.isdigit()}
    else:
        for name, key in (("blkio.throttle.io_service_bytes_recursive", "bytes"),
                          ("blkio.throttle.io_serviced_recursive", "ios")):
            for line in (cgroups.read("blkio", cg, name) or "").splitlines():
                parts = line.split()
                if len(parts) == 3 and parts[1] in ("Read", "Write"):
                    op = "r" if parts[1] == "Read" else "w"
                    per_dev.setdefault(parts[0], {})[op + key] = int(parts[2])
    for majmin, vals in sorted(per_dev.items()):
        dev = _device_name(majmin)
        ms.add("lxd_disk_read_bytes_total", vals.get("rbytes", 0), device=dev, **labels)
        ms.add("lxd_disk_reads_completed_total", vals.get("rios", 0), device=dev, **labels)
        ms.add("lxd_disk_written_bytes_total", vals.get("wbytes", 0), device=dev, **labels)
        ms.add("lxd_disk_writes_completed_total", vals.get("wios", 0), device=dev, **labels)


def _filesystem(ms: MetricSet, pid: int, labels: dict) -> None:
    """The instance's root filesystem, as statfs inside it reports it."""
    try:
        st = os.statvfs(f"/proc/{pid}/root/")
    except OSError:
        return
    fstype = ""
    try:
        with open(f"/proc/{pid}/mounts") as f:
            for line in f:
                parts = line.split()
                if len(parts) > 2 and parts[1] == "/":
                    fstype = parts[2]
    except OSError:
        pass
    fs = {"device": "root", "fstype": fstype, "mountpoint": "/"}
    ms.add("lxd_filesystem_size_bytes", st.f_blocks * st.f_frsize, **fs, **labels)
    ms.add("lxd_filesystem_avail_bytes", st.f_bavail * st.f_frsize, **fs, **labels)
    ms.add("lxd_filesystem_free_bytes", st.f_bfree * st.f_frsize, **fs, **labels)


async def collect(d, projects: set[str] | None, server: bool) -> str:
    """The metrics text for these projects (None: all); `server` adds the daemon's."""
    ms = MetricSet()
    counts: dict[str, int] = {}
    for inst in d.instances.list(None):
        if projects is not None and inst.project not in projects:
            continue
        counts[inst.project] = counts.get(inst.project, 0) + 1
        pid = d.instances.pid(inst)
        if not pid:
            continue   # as LXD: stopped instances have no metrics, only a count
        labels = {"name": inst.name, "project": inst.project, "type": "container"}
        cg = d.instances.cgroup(inst)
        _cpu(ms, cg, labels)
        _memory(ms, cg, labels)
        _disk(ms, cg, labels)
        _filesystem(ms, pid, labels)
        net = await inst_state.network(pid, inst.expanded_config, inst.expanded_devices)
        for dev, info in sorted(net.items()):
            for counter, metric in _NET.items():
                ms.add(f"lxd_network_{metric}_total", info["counters"].get(counter, 0),
                       device=dev, **labels)
        ms.add("lxd_procs_total", inst_state.processes(cg), **labels)
    for project in sorted(projects if projects is not None else
                          set(d.project_rows.names())):
        ms.add("lxd_instances", counts.get(project, 0), project=project, type="container")
        ms.add("lxd_instances", 0, project=project, type="virtual-machine")
    if server:
        ms.add("lxd_uptime_seconds", round(time.time() - STARTED, 3))
        ms.add("lxd_operations_total", len(d.ops.running()))
    return ms.render()

