"""Neutron ports to container nics, one dispatch table entry per VIF type.

First cut: ``tap`` ports (nova 34 refuses Linux bridge bindings outright,
see nova.network.neutron). The driver makes a veth pair with pyroute2
through oslo.privsep: the host end gets the port's device name
(tapXXXXXXXX-XX, what the network backend watches for and wires up), the
other end is handed to the container as a ``physical`` nic with the port's
MAC, named eth<N>. OVS ports will reuse the same pair and let os-vif's ovs
plugin add the host end to the integration bridge.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from nova.network import model as network_model
from oslo_log import log as logging

from nova import exception as nova_exception
from nova_lxd_py import privsep

LOG = logging.getLogger(__name__)
PEER_PREFIX = "tin"


def host_name(vif: Any) -> str:
    """The host end: nova's devname for the port (max 14 chars)."""
    return (vif.get("devname") or ("tap" + vif["id"]))[: network_model.NIC_NAME_LEN]


def peer_name(vif: Any) -> str:
    """The container end, until it is moved into the container and renamed."""
    return (PEER_PREFIX + vif["id"])[: network_model.NIC_NAME_LEN]


def mtu_of(vif: Any) -> int | None:
    return (vif.get("network") or {}).get("meta", {}).get("mtu")


def _plug_tap(vif: Any) -> None:
    privsep.create_veth(host_name(vif), peer_name(vif), mtu_of(vif),
                        address=vif.get("address"))


def _unplug(vif: Any) -> None:
    privsep.delete_link(host_name(vif))


PLUG: dict[str, Callable[[Any], None]] = {
    network_model.VIF_TYPE_TAP: _plug_tap,
}
UNPLUG: dict[str, Callable[[Any], None]] = {
    network_model.VIF_TYPE_TAP: _unplug,
}


def _check(vif: Any) -> str:
    vif_type = vif.get("type")
    if vif_type not in PLUG:
        raise nova_exception.VirtualInterfacePlugException(
            f"VIF type {vif_type!r} of port {vif['id']} is not supported by the LXD "
            f"driver yet (supported: {', '.join(sorted(PLUG))})")
    return vif_type


def kbit(rate: str) -> int:
    """'8000kbit' (flavor.nic_limits) -> 8000."""
    return int(rate.removesuffix("kbit"))


def plug(instance: Any, vif: Any, limits: dict[str, str] | None = None) -> None:
    """Wire one port; *limits* are the flavor's nic limits (flavor.py).

    limits.ingress (the instance's inbound traffic) becomes a token bucket on
    the host end. limits.egress would need ingress policing (act_police),
    which not every kernel has; it is logged as not enforced."""
    PLUG[_check(vif)](vif)
    limits = limits or {}
    if "limits.ingress" in limits:
        privsep.shape_egress(host_name(vif), kbit(limits["limits.ingress"]))
    if "limits.egress" in limits:
        LOG.warning("quota:vif_outbound_* is not enforced for port %s", vif["id"],
                    instance=instance)
    LOG.info("Plugged VIF %s (%s) as %s", vif["id"], vif.get("type"), host_name(vif),
             instance=instance)


def unplug(instance: Any, vif: Any) -> None:
    vif_type = vif.get("type")
    if vif_type not in UNPLUG:
        LOG.warning("Not unplugging VIF %s of unsupported type %s", vif.get("id"), vif_type,
                    instance=instance)
        return
    try:
        UNPLUG[vif_type](vif)
    except Exception:  # noqa: BLE001 - unplug is best effort, nova carries on
        LOG.exception("Failed to unplug VIF %s", vif["id"], instance=instance)
        return
    LOG.info("Unplugged VIF %s (%s)", vif["id"], host_name(vif), instance=instance)


def unplug_devices(instance: Any, devices: dict[str, dict[str, str]]) -> None:
    """Delete the veths behind a container's nics (only ones this driver made:
    physical nics whose parent has our peer prefix, never a real NIC)."""
    for device in devices.values():
        parent = device.get("parent") or ""
        if device.get("type") == "nic" and device.get("nictype") == "physical" \
                and parent.startswith(PEER_PREFIX):
            try:
                privsep.delete_link(parent)
            except Exception:  # noqa: BLE001 - best effort, like unplug
                LOG.exception("Failed to delete %s", parent, instance=instance)


def next_nic_name(devices: dict[str, dict[str, str]]) -> int:
    """Index of the next free eth<N> among a container's nics."""
    used = {int(name[3:]) for name, dev in devices.items()
            if dev.get("type") == "nic" and name.startswith("eth") and name[3:].isdigit()}
    return next(i for i in range(len(used) + 1) if i not in used)


def find_nic(devices: dict[str, dict[str, str]], vif: Any) -> str | None:
    """The device name of *vif*'s nic in a container, if attached."""
    for name, dev in devices.items():
        if dev.get("type") == "nic" and dev.get("parent") == peer_name(vif):
            return name
    return None


def nic_device(index: int, vif: Any) -> tuple[str, dict[str, str]]:
    """The container nic for the index-th port."""
    name = f"eth{index}"
    device = {"type": "nic", "nictype": "physical", "parent": peer_name(vif),
              "name": name}
    if vif.get("address"):
        device["hwaddr"] = vif["address"]
    mtu = mtu_of(vif)
    if mtu:
        device["mtu"] = str(mtu)
    return name, device
