"""/1.0/resources: the host's cpus, memory, storage and network, in LXD's shape.

The nova driver builds its VCPU / MEMORY_MB / DISK_GB inventory from this, so
the totals are what containers can really use (the daemon's cpu affinity, all
of RAM, each pool's filesystem).
"""
import os
import platform

from aiohttp import web

from runtime.api import daemon, response
from runtime.auth import AUTHENTICATED


def _read(path: str, default: str = "") -> str:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return default


def _cpu() -> dict:
    usable = sorted(os.sched_getaffinity(0))
    models: dict[int, str] = {}
    vendor: dict[int, str] = {}
    freq: dict[int, float] = {}
    current = -1
    for line in _read("/proc/cpuinfo").splitlines():
        key, _, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if key == "processor":
            current = int(value)
        elif key == "model name":
            models[current] = value
        elif key == "vendor_id":
            vendor[current] = value
        elif key == "cpu MHz":
            freq[current] = float(value)
    sockets: dict[int, dict] = {}
    for cpu in sorted(set(usable) | set(models)):
        base = f"/sys/devices/system/cpu/cpu{cpu}/topology"
        sock = int(_read(f"{base}/physical_package_id", "0") or 0)
        core = int(_read(f"{base}/core_id", str(cpu)) or cpu)
        s = sockets.setdefault(sock, {"socket": sock, "name": models.get(cpu, ""),
                                      "vendor": vendor.get(cpu, ""), "cores": {},
                                      "frequency": int(freq.get(cpu, 0)),
                                      "frequency_minimum": 0, "frequency_turbo": 0})
        c = s["cores"].setdefault(core, {"core": core, "die": 0, "threads": [],
                                         "frequency": int(freq.get(cpu, 0))})
        c["threads"].append({"id": cpu, "numa_node": 0, "thread": len(c["threads"]),
                             "online": cpu in usable, "isolated": False})
    out_sockets = []
    for s in sockets.values():
        s["cores"] = list(s["cores"].values())
        s["cache"] = []
        out_sockets.append(s)
    return {"architecture": platform.machine(), "sockets": out_sockets, "total": len(usable)}


def _memory() -> dict:
    info = {}
    for line in _read("/proc/meminfo").splitlines():
        key, _, value = line.partition(":")
        parts = value.split()
        if parts:
            info[key] = int(parts[0]) * (1024 if len(parts) > 1 else 1)
    total = info.get("MemTotal", 0)
    used = total - info.get("MemAvailable", info.get("MemFree", 0))
    return {"total": total, "used": used, "nodes": [{"numa_node": 0, "total": total,
                                                    "used": used, "hugepages_total": 0,
                                                    "hugepages_used": 0}],
            "hugepages_total": info.get("HugePages_Total", 0) * info.get("Hugepagesize", 0),
            "hugepages_used": (info.get("HugePages_Total", 0) - info.get("HugePages_Free", 0))
            * info.get("Hugepagesize", 0),
            "hugepages_size": info.get("Hugepagesize", 0)}


def _storage() -> dict:
    disks = []
    try:
        names = sorted(os.listdir("/sys/block"))
    except OSError:
        names = []
    for name in names:
        if name.startswith(("loop", "ram", "zram", "dm-", "nbd")):
            continue
        base = f"/sys/block/{name}"
        size = int(_read(f"{base}/size", "0") or 0) * 512
        parts = [{"id": p, "device": _read(f"{base}/{p}/dev"), "partition": int(
                  _read(f"{base}/{p}/partition", "0") or 0), "read_only": False,
                  "size": int(_read(f"{base}/{p}/size", "0") or 0) * 512}
                 for p in sorted(os.listdir(base)) if p.startswith(name)]
        disks.append({"id": name, "device": _read(f"{base}/dev"), "model": _read(
            f"{base}/device/model"), "type": "virtio" if name.startswith("vd") else "scsi",
            "read_only": _read(f"{base}/ro") == "1", "size": size,
            "removable": _read(f"{base}/removable") == "1",
            "rpm": 0 if _read(f"{base}/queue/rotational") == "0" else 1,
            "block_size": int(_read(f"{base}/queue/logical_block_size", "512") or 512),
            "partitions": parts})
    return {"disks": disks, "total": len(disks)}


def _network() -> dict:
    cards = []
    for name in sorted(os.listdir("/sys/class/net")):
        base = f"/sys/class/net/{name}"
        if not os.path.exists(f"{base}/device"):
            continue
        cards.append({"driver": os.path.basename(os.path.realpath(f"{base}/device/driver")),
                      "numa_node": 0, "pci_address": os.path.basename(
                          os.path.realpath(f"{base}/device")),
                      "ports": [{"id": name, "address": _read(f"{base}/address"),
                                 "port": 0, "protocol": "ethernet",
                                 "link_detected": _read(f"{base}/carrier") == "1"}]})
    return {"cards": cards, "total": len(cards)}


def _pools(d) -> dict:
    out = {}
    for name, pool in d.pools.items():
        try:
            st = pool.space()
            total, free = st.f_blocks * st.f_frsize, st.f_bavail * st.f_frsize
        except (OSError, TypeError):
            total = free = 0
        out[name] = {"space": {"total": total, "used": total - free},
                     "inodes": {"total": 0, "used": 0}}
    return out


def _host_stats() -> dict:
    """What nova asks of a hypervisor host besides inventory (uptime, load, cpu
    times), read here so a driver talking to a remote runtime gets this host's.
    CPU times in nanoseconds, split as libvirt does (user+nice, system+irq+softirq)."""
    ticks = os.sysconf("SC_CLK_TCK")
    fields = [int(v) for v in _read("/proc/stat").splitlines()[0].split()[1:]]
    fields += [0] * (8 - len(fields))
    ns = [v * 1_000_000_000 // ticks for v in fields]
    uptime = float((_read("/proc/uptime") or "0").split()[0])
    load = [float(v) for v in _read("/proc/loadavg", "0 0 0").split()[:3]]
    return {"uptime": uptime, "load_average": load,
            "cpu_time": {"user": ns[0] + ns[1], "kernel": ns[2] + ns[5] + ns[6],
                         "idle": ns[3], "iowait": ns[4]}}


async def get_resources(request: web.Request) -> web.Response:
    d = daemon(request)
    return response.sync({"cpu": _cpu(), "memory": _memory(), "storage": _storage(),
                          "network": _network(), "gpu": {"cards": [], "total": 0},
                          "usb": {"devices": [], "total": 0},
                          "pci": {"devices": [], "total": 0},
                          "system": {"uuid": "", "vendor": "", "product": "",
                                     "type": "physical" if not os.path.exists(
                                         "/proc/vz") else "container"},
                          "storage_pools": _pools(d),
                          # ours (api extension nova_lxd_host_stats)
                          "host_stats": _host_stats()})


ROUTES = [
    ("GET", "/1.0/resources", get_resources, AUTHENTICATED),
]
