"""Neutron ports to container nics, one dispatch table entry per VIF type.

Every port becomes a veth pair made through oslo.privsep: the host end gets
the port's device name (tapXXXXXXXX-XX, what the network backend watches
for), the other end is handed to the container as a ``physical`` nic with
the port's MAC and MTU, named eth<N> in port order.

- ``ovs``: os-vif's ovs plugin wires the host end into Open vSwitch, native
  or hybrid as the binding asks (``ovs.py``, translation in ``translate.py``);
- ``tap``: the host end is left for the network backend to wire.

nova 34 refuses Linux bridge bindings; that and every other type is refused
with a message naming it. What unplug needs of each port is also kept in the
container's config, so ports are found again when nova has no network_info.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from oslo_log import log as logging

from nova_lxd_py import privsep
from nova_lxd_py.vif import ovs, translate
from nova_lxd_py.vif.translate import (  # noqa: F401 - the package's public names
    PEER_PREFIX,
    host_name,
    mtu_of,
    peer_name,
    record,
    record_key,
    recorded,
)

LOG = logging.getLogger(__name__)


def _plug_tap(instance: Any, plan: translate.Plan) -> None:
    privsep.create_veth(plan.host_name, plan.peer_name, plan.mtu, address=plan.address)


def _unplug_tap(instance: Any, plan: translate.Plan) -> None:
    privsep.delete_link(plan.host_name)


PLUG: dict[str, Callable[[Any, translate.Plan], None]] = {
    translate.TAP: _plug_tap,
    translate.OVS: ovs.plug,
}
UNPLUG: dict[str, Callable[[Any, translate.Plan], None]] = {
    translate.TAP: _unplug_tap,
    translate.OVS: ovs.unplug,
}


def kbit(rate: str) -> int:
    """'8000kbit' (flavor.nic_limits) -> 8000."""
    return int(rate.removesuffix("kbit"))


def check(vif: Any) -> translate.Plan:
    """The port's plan; VirtualInterfacePlugException if it can't be plugged."""
    return translate.plan(vif)


def plug(instance: Any, vif: Any, limits: dict[str, str] | None = None) -> None:
    """Wire one port; *limits* are the flavor's nic limits (flavor.py).

    limits.ingress (the instance's inbound traffic) becomes a token bucket on
    the host end. limits.egress would need ingress policing (act_police),
    which not every kernel has; it is logged as not enforced."""
    plan = translate.plan(vif)
    PLUG[plan.vif_type](instance, plan)
    limits = limits or {}
    if "limits.ingress" in limits:
        privsep.shape_egress(plan.host_name, kbit(limits["limits.ingress"]))
    if "limits.egress" in limits:
        LOG.warning("quota:vif_outbound_* is not enforced for port %s", vif["id"],
                    instance=instance)
    LOG.info("Plugged VIF %s (%s%s) as %s", vif["id"], plan.vif_type,
             ", hybrid" if plan.hybrid else "", plan.host_name, instance=instance)


def unplug(instance: Any, vif: Any) -> None:
    """Best effort, as nova expects: a failure is logged, never raised."""
    try:
        plan = translate.plan(vif)
    except Exception as exc:  # noqa: BLE001 - nothing we plugged
        LOG.warning("Not unplugging VIF %s: %s", vif.get("id"), exc, instance=instance)
        return
    try:
        UNPLUG[plan.vif_type](instance, plan)
    except Exception:  # noqa: BLE001 - unplug is best effort, nova carries on
        LOG.exception("Failed to unplug VIF %s", vif["id"], instance=instance)
        return
    LOG.info("Unplugged VIF %s (%s)", vif["id"], plan.host_name, instance=instance)


def unplug_leftovers(instance: Any, data: dict, network_info: Any) -> None:
    """Unplug what a container had beyond *network_info*: the ports recorded
    in its config (OVS rows and bridges included), then any veth its nics
    still name (containers made before the records)."""
    known = {vif["id"] for vif in network_info or []}
    for vif in recorded(data.get("config") or {}):
        if vif["id"] not in known:
            unplug(instance, vif)
    unplug_devices(instance, data.get("devices") or {})


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
