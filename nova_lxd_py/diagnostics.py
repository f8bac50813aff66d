"""Server diagnostics from the runtime's view of a container (GET .../state).

The runtime reads the numbers from the container's cgroups and network
namespace: CPU time (one figure for the whole container, reported as cpu0),
memory in use against the flavor's limit, per-NIC counters (the NIC's MAC is
the Neutron port's, set by the driver) and each disk's usage in bytes.
nova's diagnostics model has no field for disk usage, so the versioned
diagnostics list the disks (without I/O counters, which the runtime does not
account) and the legacy dict carries ``<disk>_usage``.
"""
from __future__ import annotations

from typing import Any

from nova.compute import power_state
from nova.objects import diagnostics as diagnostics_obj
from oslo_utils import timeutils

MiB = 1024 * 1024


def _nics(state: dict) -> list[tuple[str, dict]]:
    network = state.get("network") or {}
    return [(name, nic) for name, nic in sorted(network.items())
            if nic.get("type") != "loopback" and name != "lo"]


def legacy(state: dict, memory_limit_mb: int) -> dict[str, int]:
    """get_diagnostics: flat counters, named like libvirt's."""
    out: dict[str, int] = {
        "cpu0_time": int((state.get("cpu") or {}).get("usage") or 0),
        "memory": memory_limit_mb * 1024,  # KiB, as libvirt reports it
        "memory-actual": int((state.get("memory") or {}).get("usage") or 0) // 1024,
    }
    for name, nic in _nics(state):
        counters = nic.get("counters") or {}
        out.update({
            f"{name}_rx": counters.get("bytes_received", 0),
            f"{name}_rx_packets": counters.get("packets_received", 0),
            f"{name}_rx_errors": counters.get("errors_received", 0),
            f"{name}_rx_drop": counters.get("packets_dropped_inbound", 0),
            f"{name}_tx": counters.get("bytes_sent", 0),
            f"{name}_tx_packets": counters.get("packets_sent", 0),
            f"{name}_tx_errors": counters.get("errors_sent", 0),
            f"{name}_tx_drop": counters.get("packets_dropped_outbound", 0),
        })
    for name, disk in sorted((state.get("disk") or {}).items()):
        out[f"{name}_usage"] = int(disk.get("usage") or 0)
    return out


def instance_diagnostics(state: dict, power: int, memory_limit_mb: int,
                         launched_at: Any, config_drive: bool) -> diagnostics_obj.Diagnostics:
    """get_instance_diagnostics: nova's versioned model.

    nova's HypervisorDriverField only knows VM drivers; 'libvirt' is the value
    whose consumers expect a Linux host, and ``hypervisor`` says lxd."""
    uptime = None
    if launched_at:
        uptime = int(timeutils.delta_seconds(timeutils.normalize_time(launched_at),
                                             timeutils.utcnow()))
    diags = diagnostics_obj.Diagnostics(
        state=power_state.STATE_MAP[power], driver="libvirt", hypervisor="lxd",
        hypervisor_os="linux", uptime=uptime, config_drive=config_drive)
    diags.add_cpu(id=0, time=int((state.get("cpu") or {}).get("usage") or 0))
    for _name, nic in _nics(state):
        counters = nic.get("counters") or {}
        diags.add_nic(mac_address=nic.get("hwaddr") or None,
                      rx_octets=counters.get("bytes_received", 0),
                      rx_errors=counters.get("errors_received", 0),
                      rx_drop=counters.get("packets_dropped_inbound", 0),
                      rx_packets=counters.get("packets_received", 0),
                      tx_octets=counters.get("bytes_sent", 0),
                      tx_errors=counters.get("errors_sent", 0),
                      tx_drop=counters.get("packets_dropped_outbound", 0),
                      tx_packets=counters.get("packets_sent", 0))
    for _name in sorted(state.get("disk") or {}):
        diags.add_disk()
    used = int((state.get("memory") or {}).get("usage") or 0)
    diags.memory_details = diagnostics_obj.MemoryDiagnostics(
        maximum=memory_limit_mb, used=-(-used // MiB))  # MiB, rounded up: a small
    # container uses less than one
    return diags
