"""Open vSwitch ports through os-vif's ``ovs`` plugin.

os-vif does the OVS side exactly as for libvirt: the integration bridge
(with the binding's datapath type), the port with the ``external_ids``
Neutron's agents look for, and in hybrid mode the ``qbr`` bridge with the
``qvb``/``qvo`` pair. Its privileged steps run in its own privsep context
(``vif_plug_ovs.privsep.vif_plug``). What os-vif leaves to the hypervisor is
the instance's own device; here that is a veth pair made by this driver's
privsep context: in native mode os-vif adds its host end to the bridge
(``create_port``), in hybrid mode the driver puts it on ``qbr`` after os-vif
made the bridge, as libvirt does with a VM's tap.
"""
from __future__ import annotations

import threading
from typing import Any

import os_vif
from nova.network import os_vif_util
from os_vif import exception as osv_exception
from oslo_log import log as logging

from nova import exception as nova_exception
from nova_lxd_py import privsep
from nova_lxd_py.vif.translate import Plan

LOG = logging.getLogger(__name__)
_init_lock = threading.Lock()
_initialized = False


def ensure_initialized() -> None:
    """Load os-vif's plugins once. nova-compute's own start-up does this too
    (nova.cmd.compute); harnesses that don't run it rely on this call."""
    global _initialized
    with _init_lock:
        if not _initialized:
            os_vif.initialize()
            _initialized = True


def plug(instance: Any, plan: Plan) -> None:
    ensure_initialized()
    info = os_vif_util.nova_to_osvif_instance(instance)
    veth = dict(mtu=plan.mtu, address=plan.address, tx_checksum=plan.tx_checksum)
    try:
        if plan.hybrid:
            os_vif.plug(plan.osvif, info)
            privsep.create_veth(plan.host_name, plan.peer_name, bridge=plan.linux_bridge,
                                **veth)
        else:
            if not privsep.link_exists(plan.host_name):
                # The veth died with its container (a crash: its namespace
                # went, not a stop), its OVS port did not: a userspace
                # datapath keeps reading the dead device under that name, so
                # the port is made again with the new veth.
                os_vif.unplug(plan.osvif, info)
            privsep.create_veth(plan.host_name, plan.peer_name, **veth)
            os_vif.plug(plan.osvif, info)
    except osv_exception.PlugException as exc:
        raise nova_exception.VirtualInterfacePlugException(
            f"port {plan.port_id}: os-vif failed to plug it: {exc}") from exc


def unplug(instance: Any, plan: Plan) -> None:
    """os-vif removes the OVS port (and in hybrid mode qbr, qvb, qvo); the
    veth goes with its host end."""
    ensure_initialized()
    try:
        os_vif.unplug(plan.osvif, os_vif_util.nova_to_osvif_instance(instance))
    finally:
        privsep.delete_link(plan.host_name)
