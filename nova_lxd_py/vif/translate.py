"""nova's network model VIF to what gets plugged (pure, no I/O).

nova's own ``nova.network.os_vif_util`` does the translation to os-vif
objects for Open vSwitch ports, so the binding details Neutron sends
(``bridge_name``, ``ovs_hybrid_plug``, ``datapath_type``) mean here exactly
what they mean for libvirt. Two things differ for a container, and are set
on the os-vif port profile:

- nobody else adds the device to the bridge (libvirt does that for a VM's
  tap), so os-vif must create the OVS port itself: ``create_port``;
- the device is the host end of a veth pair the driver makes, never a tap
  os-vif would make: ``create_tap`` is off.

Everything else, the ports this driver can't wire, is refused here with a
message naming the type and what is supported.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from nova.network import model as network_model
from nova.network import os_vif_util
from os_vif import objects as osv_objects

from nova import exception as nova_exception

OVS = network_model.VIF_TYPE_OVS
TAP = network_model.VIF_TYPE_TAP
SUPPORTED = (OVS, TAP)
NETDEV = network_model.VIF_DETAILS_OVS_DATAPATH_NETDEV
SYSTEM = network_model.VIF_DETAILS_OVS_DATAPATH_SYSTEM
PEER_PREFIX = "tin"

# Why a type can't be plugged into a container, where there is more to say
# than "not supported".
WHY_NOT = {
    network_model.VIF_TYPE_BRIDGE: "Linux bridge ports are gone from nova 34 and os-vif",
    network_model.VIF_TYPE_VHOSTUSER: "vhost-user needs a VM's virtio device",
    network_model.VIF_TYPE_BINDING_FAILED: "Neutron could not bind the port to this host",
    network_model.VIF_TYPE_UNBOUND: "the port is not bound to this host",
}


@dataclass(frozen=True)
class Plan:
    """What wiring one port means: names, MTU, and the os-vif object (ovs)."""

    port_id: str
    vif_type: str
    host_name: str           # host end of the veth pair (nova's devname)
    peer_name: str           # container end until the runtime moves it in
    address: str | None      # the port's MAC, set on the container end
    mtu: int | None
    osvif: Any = None        # os_vif VIFOpenVSwitch / VIFBridge for ovs ports
    hybrid: bool = False
    datapath_type: str = SYSTEM

    @property
    def linux_bridge(self) -> str | None:
        """The per-port Linux bridge (qbr) the container end hangs off in hybrid mode."""
        return self.osvif.bridge_name if self.hybrid else None

    @property
    def tx_checksum(self) -> bool:
        """Whether the container end may leave TCP/UDP checksums to offload.

        OVS's userspace datapath reads the veth through a packet socket and
        forwards partial checksums as they are: ping works, TCP is dropped by
        the receiver. The container's kernel must then compute them itself."""
        return not (self.vif_type == OVS and self.datapath_type == NETDEV)


def host_name(vif: Any) -> str:
    """The host end: nova's devname for the port (max 14 chars)."""
    return (vif.get("devname") or ("tap" + vif["id"]))[: network_model.NIC_NAME_LEN]


def peer_name(vif: Any) -> str:
    """The container end, until it is moved into the container and renamed."""
    return (PEER_PREFIX + vif["id"])[: network_model.NIC_NAME_LEN]


def mtu_of(vif: Any) -> int | None:
    return (vif.get("network") or {}).get("meta", {}).get("mtu")


def refuse(vif: Any, why: str) -> nova_exception.VirtualInterfacePlugException:
    return nova_exception.VirtualInterfacePlugException(
        f"port {vif.get('id')}: {why}; the LXD driver plugs VIF types "
        f"{', '.join(SUPPORTED)} with vnic_type {network_model.VNIC_TYPE_NORMAL}")


def plan(vif: Any) -> Plan:
    """The plan for one port, or VirtualInterfacePlugException if it can't be."""
    vif_type = vif.get("type")
    if vif_type not in SUPPORTED:
        reason = WHY_NOT.get(vif_type)
        raise refuse(vif, f"VIF type {vif_type!r} is not supported"
                     + (f" ({reason})" if reason else ""))
    vnic_type = vif.get("vnic_type") or network_model.VNIC_TYPE_NORMAL
    if vnic_type != network_model.VNIC_TYPE_NORMAL:
        raise refuse(vif, f"vnic_type {vnic_type!r} is not supported (a container "
                          "takes a veth, not a VF or a passed-through device)")
    base = dict(port_id=vif["id"], vif_type=vif_type, host_name=host_name(vif),
                peer_name=peer_name(vif), address=vif.get("address"), mtu=mtu_of(vif))
    if vif_type == TAP:
        return Plan(**base)
    if not vif.get("network"):
        raise refuse(vif, "an ovs port needs its network (bridge, MTU) in the binding")
    obj = os_vif_util.nova_to_osvif_vif(vif)
    profile = obj.port_profile
    if isinstance(obj, osv_objects.vif.VIFOpenVSwitch):
        profile.create_port = True
    if "create_tap" in profile.fields:
        profile.create_tap = False
    return Plan(**base, osvif=obj, hybrid=isinstance(obj, osv_objects.vif.VIFBridge),
                datapath_type=profile.datapath_type if profile.obj_attr_is_set(
                    "datapath_type") and profile.datapath_type else SYSTEM)


# -- what unplug needs, kept in the container's config -------------------------
RECORD_PREFIX = "user.nova_vif."


def record_key(port_id: str) -> str:
    return RECORD_PREFIX + port_id


def record(vif: Any) -> str:
    """The part of a port unplug needs, as JSON: unplug works from it alone
    when nova hands the driver no network_info (an emptied info cache)."""
    network = vif.get("network") or {}
    details = vif.get("details") or {}
    kept_details = {k: details[k] for k in (
        network_model.VIF_DETAILS_OVS_HYBRID_PLUG, network_model.VIF_DETAILS_OVS_DATAPATH_TYPE,
        network_model.VIF_DETAILS_BRIDGE_NAME, network_model.VIF_DETAILS_PORT_FILTER)
        if k in details}
    return json.dumps({
        "id": vif["id"], "type": vif.get("type"), "address": vif.get("address"),
        "devname": vif.get("devname"), "ovs_interfaceid": vif.get("ovs_interfaceid"),
        "vnic_type": vif.get("vnic_type") or network_model.VNIC_TYPE_NORMAL,
        "details": kept_details,
        "network": {"id": network.get("id"), "bridge": network.get("bridge"),
                    "label": network.get("label"), "subnets": [],
                    "meta": {"mtu": mtu_of(vif)} if mtu_of(vif) else {}},
    }, sort_keys=True)


def recorded(config: dict[str, str]) -> list[network_model.VIF]:
    """The ports recorded in a container's config, as nova VIFs."""
    found = []
    for key, value in sorted(config.items()):
        if key.startswith(RECORD_PREFIX):
            try:
                found.append(network_model.VIF.hydrate(json.loads(value)))
            except (ValueError, TypeError, KeyError):
                continue  # not ours to interpret
    return found
