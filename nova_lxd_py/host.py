"""What the host offers nova: resources, inventory, traits, host facts.

The numbers come from the runtime (``/1.0/resources`` and the storage pool's
``resources``) so they describe the machine the containers really run on,
also when the runtime is remote. The conversions are pure functions so the
provider tree logic is unit-tested without a runtime.
"""
from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from typing import Any

import os_resource_classes as orc
import os_traits
from oslo_log import log as logging

LOG = logging.getLogger(__name__)

# The machine's architecture (images default to it). Read once at import: the host
# does not change architecture, and nova's test fixtures forbid inspecting the host
# (os.uname) while a test runs.
HOST_ARCH = platform.machine()
MiB = 1024 * 1024
GiB = 1024 * MiB

# Traits this driver owns on its provider (the capability traits are added
# by nova's resource tracker from LXDDriver.capabilities).
CONTAINER_TRAIT = "CUSTOM_NOVA_LXD_CONTAINER"
# As nova's libvirt driver: a service the driver disabled itself carries this
# prefix, and only such a service is enabled again automatically, so a host an
# operator took out of rotation stays out.
DISABLE_PREFIX = "AUTO: "

# Set only when the storage pool enforces root_gb (btrfs, zfs, lvm, ceph), so
# a flavor can require enforced disk sizes with trait:...=required.
ROOT_QUOTA_TRAIT = "CUSTOM_NOVA_LXD_ROOT_DISK_QUOTA"


def driver_traits(arch: str, root_quota: bool = False) -> set[str]:
    """Traits to set: the host architecture, that this is a container host,
    and whether root disk sizes are enforced."""
    traits = {CONTAINER_TRAIT}
    if root_quota:
        traits.add(ROOT_QUOTA_TRAIT)
    arch_trait = "HW_ARCH_" + arch.upper()
    if arch_trait in os_traits.get_traits("HW_ARCH_"):
        traits.add(arch_trait)
    return traits


@dataclass(frozen=True)
class HostResources:
    vcpus: int
    memory_mb: int
    memory_mb_used: int
    local_gb: int
    local_gb_used: int
    arch: str


def host_resources(resources: dict, pool_resources: dict | None) -> HostResources:
    """Condense the runtime's resource documents into nova's units."""
    cpu = resources.get("cpu") or {}
    memory = resources.get("memory") or {}
    vcpus = int(cpu.get("total") or os.cpu_count() or 1)
    total = int(memory.get("total") or 0)
    used = int(memory.get("used") or 0)
    space = (pool_resources or {}).get("space") or {}
    disk_total = int(space.get("total") or 0)
    disk_used = int(space.get("used") or 0)
    arch = cpu.get("architecture") or HOST_ARCH
    return HostResources(vcpus=vcpus, memory_mb=total // MiB, memory_mb_used=used // MiB,
                         local_gb=disk_total // GiB, local_gb_used=disk_used // GiB,
                         arch=arch)


def local_resources(disk_path: str) -> tuple[dict, dict]:
    """The same documents built from this machine, for runtimes that don't
    serve /1.0/resources (only meaningful when the runtime is local)."""
    memory = {}
    with open("/proc/meminfo") as f:
        for line in f:
            key, value = line.split(":", 1)
            memory[key] = int(value.split()[0]) * 1024
    total = memory.get("MemTotal", 0)
    resources = {"cpu": {"total": os.cpu_count() or 1, "architecture": HOST_ARCH},
                 "memory": {"total": total, "used": total - memory.get("MemAvailable", 0)}}
    st = os.statvfs(disk_path)
    pool = {"space": {"total": st.f_blocks * st.f_frsize,
                      "used": (st.f_blocks - st.f_bfree) * st.f_frsize}}
    return resources, pool


def inventory(res: HostResources, ratios: dict[str, float], reserved_cpus: int,
              reserved_memory_mb: int, reserved_disk_gb: int) -> dict[str, dict[str, Any]]:
    """Placement inventory for the compute node provider.

    max_unit is the whole host: one container may use all of it, like the
    flavor limits allow. DISK_GB is left out when the pool reports no size,
    since a zero total would make placement reject the inventory.
    """
    inv: dict[str, dict[str, Any]] = {
        orc.VCPU: {"total": res.vcpus, "min_unit": 1, "max_unit": res.vcpus,
                   "step_size": 1, "allocation_ratio": ratios[orc.VCPU],
                   "reserved": reserved_cpus},
        orc.MEMORY_MB: {"total": res.memory_mb, "min_unit": 1, "max_unit": res.memory_mb,
                        "step_size": 1, "allocation_ratio": ratios[orc.MEMORY_MB],
                        "reserved": reserved_memory_mb},
    }
    if res.local_gb > 0:
        inv[orc.DISK_GB] = {"total": res.local_gb, "min_unit": 1, "max_unit": res.local_gb,
                            "step_size": 1, "allocation_ratio": ratios[orc.DISK_GB],
                            "reserved": reserved_disk_gb}
    return inv


def available_resource(res: HostResources, nodename: str, hypervisor_version: int,
                       node_uuid: str | None) -> dict[str, Any]:
    """The dict get_available_resource returns, consistent with inventory()."""
    from oslo_serialization import jsonutils

    data = {
        "vcpus": res.vcpus,
        "memory_mb": res.memory_mb,
        "local_gb": res.local_gb,
        "vcpus_used": 0,
        "memory_mb_used": res.memory_mb_used,
        "local_gb_used": res.local_gb_used,
        "hypervisor_type": "lxd",
        "hypervisor_version": hypervisor_version,
        "hypervisor_hostname": nodename,
        "cpu_info": jsonutils.dumps({"arch": res.arch, "vcpus": res.vcpus}),
        "disk_available_least": max(res.local_gb - res.local_gb_used, 0),
        "supported_instances": [(res.arch, "lxd", "exe")],
        "numa_topology": None,
    }
    if node_uuid:
        data["uuid"] = node_uuid
    return data


def version_int(version: str | None) -> int:
    """'5.0.2' -> 5000002 (nova's hypervisor_version encoding)."""
    parts = [int(p) for p in str(version or "0").split(".")[:3] if p.isdigit()]
    parts += [0] * (3 - len(parts))
    return parts[0] * 1000000 + parts[1] * 1000 + parts[2]


def uptime_line(seconds: float, load: list[float]) -> str:
    """Like uptime(1): what nova shows as a hypervisor's uptime."""
    days, rest = divmod(int(seconds), 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    up = f"{days} days, {hours}:{minutes:02d}" if days else f"{hours}:{minutes:02d}"
    return f"up {up},  load average: {', '.join(f'{v:.2f}' for v in load)}"


def local_uptime() -> tuple[float, list[float]]:
    """(uptime seconds, load averages) of this machine, from /proc."""
    with open("/proc/uptime") as f:
        seconds = float(f.read().split()[0])
    with open("/proc/loadavg") as f:
        load = [float(v) for v in f.read().split()[:3]]
    return seconds, load


def cpu_frequency(resources: dict) -> int:
    """MHz of the host's fastest socket, as the runtime's resources report it."""
    sockets = (resources.get("cpu") or {}).get("sockets") or []
    return max((int(s.get("frequency") or 0) for s in sockets), default=0)


def cpu_stats(cpu_time: dict, frequency: int) -> dict[str, int]:
    """nova's get_host_cpu_stats dict (nanoseconds, MHz) from the runtime's host_stats."""
    return {"kernel": int(cpu_time["kernel"]), "idle": int(cpu_time["idle"]),
            "user": int(cpu_time["user"]), "iowait": int(cpu_time["iowait"]),
            "frequency": frequency}


def set_service_enabled(virtapi: Any, host: str, enabled: bool, reason: str | None) -> None:
    """Take this host's compute service out of scheduling (disabled, "AUTO: reason")
    or put it back, as the libvirt driver does when its hypervisor connection
    closes and comes back; the provider's COMPUTE_STATUS_DISABLED trait follows.
    Never overrides a disable by an operator (a reason without the prefix)."""
    from nova import context as nova_context
    from nova import exception as nova_exception
    from nova import objects

    ctx = nova_context.get_admin_context()
    try:
        service = objects.Service.get_by_compute_host(ctx, host)
        if service.disabled == (not enabled):
            return
        if service.disabled and not (service.disabled_reason or "").startswith(
                DISABLE_PREFIX):
            LOG.info("Compute service on %s stays disabled (by an operator: %s)", host,
                     service.disabled_reason)
            return
        service.disabled = not enabled
        service.disabled_reason = None if enabled else DISABLE_PREFIX + (reason or "")
        service.save()
        LOG.warning("Compute service on %s %s", host,
                    "enabled again" if enabled else f"disabled: {service.disabled_reason}")
        try:
            virtapi.update_compute_provider_status(ctx, service.compute_node.uuid,
                                                   enabled=enabled)
        except Exception:  # noqa: BLE001 - best effort: the resource periodic syncs it
            LOG.warning("Could not update the provider status of %s", host, exc_info=True)
    except nova_exception.ComputeHostNotFound:
        LOG.warning("Cannot update the service status of %s: it is not registered", host)
    except Exception:  # noqa: BLE001 - as libvirt's: never fail the caller for this
        LOG.warning("Cannot update the service status of %s", host, exc_info=True)
