"""Flavor to instance config, as an ordered list of small pure functions.

Each step reads the flavor (and a few host facts) and returns the config keys
and device entries it owns; ``instance_config`` merges them in order. Keeping
the steps pure makes every mapping unit-testable without a runtime, and a new
mapping is one more function in ``STEPS``.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from oslo_utils import strutils

from nova_lxd_py import exception

# lxd:<name> extra spec -> boolean instance config key.
SECURITY_SPECS = {
    "lxd:nested_allowed": "security.nesting",
    "lxd:privileged_allowed": "security.privileged",
    "lxd:isolated": "security.idmap.isolated",
}

# quota:disk_* -> (disk device key, unit suffix). Bytes win over iops when a
# flavor gives both for one direction, as nova's other drivers prefer bytes.
DISK_SPECS = {
    "read": ("limits.read", "quota:disk_read_bytes_sec", "quota:disk_read_iops_sec"),
    "write": ("limits.write", "quota:disk_write_bytes_sec", "quota:disk_write_iops_sec"),
    "max": ("limits.max", "quota:disk_total_bytes_sec", "quota:disk_total_iops_sec"),
}

# quota:vif_* (KB/s, nova's unit) -> nic device key (bit/s).
VIF_SPECS = {
    "limits.ingress": ("quota:vif_inbound_average", "quota:vif_inbound_peak"),
    "limits.egress": ("quota:vif_outbound_average", "quota:vif_outbound_peak"),
}

ROOT_DEVICE = "root"


@dataclass(frozen=True)
class FlavorView:
    """The parts of a nova flavor the mapping needs (plain data, testable)."""

    vcpus: int
    memory_mb: int
    root_gb: int
    extra_specs: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_flavor(cls, flavor: Any) -> FlavorView:
        return cls(vcpus=int(flavor.vcpus), memory_mb=int(flavor.memory_mb),
                   root_gb=int(flavor.root_gb or 0),
                   extra_specs=dict(flavor.extra_specs or {}))


@dataclass(frozen=True)
class HostFacts:
    """Host facts a mapping depends on."""

    pool: str = "default"
    # Whether the pool enforces a root disk size (btrfs, zfs, lvm yes; dir
    # only with project quotas). When False no size is set: an unenforced
    # size would be silently wrong, and the host reports it instead.
    root_quota: bool = False


@dataclass
class Result:
    config: dict[str, str] = field(default_factory=dict)
    devices: dict[str, dict[str, str]] = field(default_factory=dict)
    nic_limits: dict[str, str] = field(default_factory=dict)


Step = Callable[[FlavorView, HostFacts, Result], None]


def _positive_int(key: str, value: str) -> int:
    try:
        number = int(str(value).strip())
    except ValueError:
        raise exception.InvalidFlavorSpec(key=key, value=value,
                                          reason="not an integer") from None
    if number <= 0:
        raise exception.InvalidFlavorSpec(key=key, value=value,
                                          reason="must be greater than zero")
    return number


def cpu_limit(flavor: FlavorView, host: HostFacts, out: Result) -> None:
    out.config["limits.cpu"] = str(flavor.vcpus)


def memory_limit(flavor: FlavorView, host: HostFacts, out: Result) -> None:
    # nova's memory_mb is MiB; "MB" would be decimal in LXD's units.
    out.config["limits.memory"] = f"{flavor.memory_mb}MiB"


def security(flavor: FlavorView, host: HostFacts, out: Result) -> None:
    for key, value in flavor.extra_specs.items():
        if not key.startswith("lxd:"):
            continue
        target = SECURITY_SPECS.get(key)
        if target is None:
            raise exception.InvalidFlavorSpec(
                key=key, value=value,
                reason="unknown lxd: extra spec; known ones are "
                       + ", ".join(sorted(SECURITY_SPECS)))
        try:
            enabled = strutils.bool_from_string(value, strict=True)
        except ValueError:
            raise exception.InvalidFlavorSpec(key=key, value=value,
                                              reason="expected true or false") from None
        out.config[target] = "true" if enabled else "false"


def root_disk(flavor: FlavorView, host: HostFacts, out: Result) -> None:
    device = {"type": "disk", "path": "/", "pool": host.pool}
    if flavor.root_gb and host.root_quota:
        device["size"] = f"{flavor.root_gb}GiB"
    specs = flavor.extra_specs
    for target, bytes_key, iops_key in DISK_SPECS.values():
        if bytes_key in specs:
            device[target] = f"{_positive_int(bytes_key, specs[bytes_key])}B"
        elif iops_key in specs:
            device[target] = f"{_positive_int(iops_key, specs[iops_key])}iops"
    out.devices[ROOT_DEVICE] = device


def nic_limits(flavor: FlavorView, host: HostFacts, out: Result) -> None:
    specs = flavor.extra_specs
    for target, (average_key, peak_key) in VIF_SPECS.items():
        # LXD shapes to one rate: the average, or the peak when only it is set.
        key = average_key if average_key in specs else peak_key
        if key in specs:
            kbytes = _positive_int(key, specs[key])
            out.nic_limits[target] = f"{kbytes * 8}kbit"


STEPS: list[Step] = [cpu_limit, memory_limit, security, root_disk, nic_limits]


def check_swap(flavor: Any) -> None:
    """Refuse a flavor with swap (placement would charge a disk that never exists).

    Checked where an instance gets a flavor (spawn, resize), not in STEPS: an
    instance made before this check must still be rescued and moved."""
    if int(flavor.swap or 0):
        raise exception.SwapNotSupported(flavor=flavor.name, swap=flavor.swap)


def instance_config(flavor: FlavorView, host: HostFacts) -> Result:
    """Run every step in order; raises InvalidFlavorSpec on a bad spec."""
    out = Result()
    for step in STEPS:
        step(flavor, host, out)
    return out
