"""Devices around an instance's life, one module per type (as LXD's lxd/device/):

| type                  | module          |
|-----------------------|-----------------|
| nic, nictype bridged/p2p | nic_bridged (veth pairs; nic.py: what nics share) |
| nic, nictype macvlan  | nic_macvlan     |
| nic, nictype physical | nic_physical    |
| disk                  | disk            |
| unix-char, unix-block | unix            |

Each type implements `base.Device` (validate, prepare, lxc_config, start, started,
plug, update, unplug, stop, remove). `Devices`, the one the instance manager
calls, runs the hooks of every device of an instance in order, and hands each
device a callback to write its `volatile.*` keys.
"""
from __future__ import annotations

import logging
import secrets
import shutil

from runtime.errors import BadRequest
from runtime.instances.devices.base import Device, Host
from runtime.instances.devices.disk import (Disk, block_source,  # noqa: F401 - public
                                            blkio_settings, instance_volume)
from runtime.instances.devices.nic import VETH_KINDS, Nic, missing_hwaddrs, nictype
from runtime.instances.devices.nic_bridged import BridgedNic, P2pNic
from runtime.instances.devices.nic_macvlan import MacvlanNic
from runtime.instances.devices.nic_physical import PhysicalNic
from runtime.instances.devices.unix import Unix

LOG = logging.getLogger(__name__)
SUPPORTED_TYPES = ("none", "disk", "nic", "unix-char", "unix-block")
NIC_TYPES: dict[str, type[Nic]] = {"bridged": BridgedNic, "p2p": P2pNic,
                                   "macvlan": MacvlanNic, "physical": PhysicalNic}
TYPES: dict[str, type[Device]] = {"none": Device, "disk": Disk, "unix-char": Unix,
                                  "unix-block": Unix}


def check_supported(name: str, dev: dict) -> None:
    """Device types LXD knows but this runtime does not make are refused, not ignored."""
    if dev.get("type") not in SUPPORTED_TYPES:
        raise BadRequest(f"device {name!r}: type {dev.get('type')!r} is not supported by "
                         f"this runtime ({', '.join(SUPPORTED_TYPES[1:])})")


def device_class(dev: dict) -> type[Device]:
    if dev.get("type") == "nic":
        return NIC_TYPES.get(nictype(dev), Nic)
    return TYPES.get(dev.get("type"), Device)


def lxc_lines(devices: dict, volatile: dict, sources: dict[str, str],
              host: Host | None = None) -> list[str]:
    """Every device's lines of lxc.conf, in name order (pure: tested without a daemon)."""
    lines: list[str] = []
    nic = 0
    for name in sorted(devices):
        dev = devices[name]
        impl = device_class(dev)(host)
        lines += impl.lxc_config(nic, name, dev, volatile, sources.get(name))
        if dev.get("type") == "nic":
            nic += 1
    return lines


class Devices:
    def __init__(self, daemon):
        self.d = daemon
        self.host = Host(daemon)
        self._impls: dict[type[Device], Device] = {}
        self.disks = self._of(Disk)

    def _of(self, cls: type[Device]) -> Device:
        if cls not in self._impls:
            self._impls[cls] = cls(self.host)
        return self._impls[cls]

    def of(self, dev: dict) -> Device:
        return self._of(device_class(dev))

    def _volatile(self, inst):
        return lambda values: self.d.instances.set_volatile(inst, values)

    # Block-device disks (the root disk may be one: the manager mounts it) -------------
    async def mount_block(self, inst, name: str, dev: dict) -> str:
        return await self.disks.mount_block(inst, name, dev)

    async def unmount_blocks(self, inst, only: str | None = None) -> None:
        await self.disks.unmount_blocks(inst, only)

    # Start -----------------------------------------------------------------------
    async def disk_sources(self, inst) -> dict[str, str]:
        """Host paths for pool-volume disks and the instance's own unix device nodes."""
        out = {}
        for name, dev in inst.expanded_devices.items():
            source = await self.of(dev).prepare(inst, name, dev)
            if source:
                out[name] = source
        return out

    def start_volatile(self, inst) -> dict[str, str]:
        """The volatile keys a start needs first: MACs and veth host names not yet chosen."""
        volatile = missing_hwaddrs(inst.expanded_devices, inst.config)
        for name, dev in inst.expanded_devices.items():
            if dev.get("type") == "nic" and nictype(dev) in VETH_KINDS and \
                    not dev.get("host_name"):
                volatile[f"volatile.{name}.host_name"] = "veth" + secrets.token_hex(4)
        return volatile

    def lxc_lines(self, inst, sources: dict[str, str]) -> list[str]:
        return lxc_lines(inst.expanded_devices, inst.expanded_config, sources, self.host)

    async def before_start(self, inst) -> None:
        for name, dev in inst.expanded_devices.items():
            check_supported(name, dev)
            impl = self.of(dev)
            impl.validate(name, dev)
            await impl.start(inst, name, dev)

    async def after_start(self, inst, pid: int) -> None:
        """What liblxc's config cannot say: tc shaping and blkio throttles.

        A container whose limits could not be applied is stopped again: it must
        not run unconstrained while the client is told the start failed.
        """
        try:
            for name, dev in inst.expanded_devices.items():
                await self.of(dev).started(inst, name, dev, pid)
        except Exception:
            await self.d.instances.lxc.stop(self.d.instances.paths(inst).name, True, 0)
            raise

    async def after_stop(self, inst) -> None:
        await self.disks.unmount_blocks(inst)
        shutil.rmtree(self.host.node_dir(inst), ignore_errors=True)
        for name, dev in inst.expanded_devices.items():
            await self.of(dev).stop(inst, name, dev)

    async def before_delete(self, inst) -> None:
        await self.disks.unmount_blocks(inst)
        shutil.rmtree(self.host.node_dir(inst), ignore_errors=True)
        for name, dev in inst.expanded_devices.items():
            await self.of(dev).remove(inst, name, dev)

    # Hot-plug ----------------------------------------------------------------------
    async def hotplug(self, inst, old_devices: dict) -> None:
        """Bring a running instance's devices in line with its new expanded devices."""
        pid = self.d.instances.pid(inst)
        new_devices = inst.expanded_devices
        names = sorted(set(old_devices) | set(new_devices))
        changed = [n for n in names if old_devices.get(n) != new_devices.get(n)]
        if not changed or pid is None:
            return
        # Removals first (a renamed nic may reuse the same interface name).
        for name in changed:
            old, new = old_devices.get(name), new_devices.get(name)
            if old is None:
                continue
            if new is not None and old.get("type") == new.get("type") and \
                    self.of(old).updatable(old, new):
                continue
            await self._unplug(inst, pid, name, old)
        plugged: list[tuple[str, dict]] = []
        try:
            await self._plug_changed(inst, pid, changed, old_devices, new_devices, plugged)
        except Exception:
            for name, dev in reversed(plugged):  # leave the instance as it was
                try:
                    await self._unplug(inst, pid, name, dev)
                except Exception as exc:  # noqa: BLE001 - keep undoing the rest
                    LOG.warning("instance %s: undoing %s failed: %s", inst.name, name, exc)
            raise

    async def _plug_changed(self, inst, pid: int, changed: list[str], old_devices: dict,
                            new_devices: dict, plugged: list) -> None:
        for name in changed:
            old, new = old_devices.get(name), new_devices.get(name)
            if new is None:
                continue
            if old is not None and old.get("type") == new.get("type") and \
                    await self.of(new).update(inst, pid, name, old, new):
                continue
            await self._plug(inst, pid, name, new)
            plugged.append((name, new))

    async def _plug(self, inst, pid: int, name: str, dev: dict) -> None:
        check_supported(name, dev)
        dtype = dev.get("type")
        if dtype == "none":
            LOG.info("instance %s: %s device %r applies at next start", inst.name, dtype, name)
            return
        impl = self.of(dev)
        impl.validate(name, dev)
        await impl.plug(inst, pid, name, dev, self._volatile(inst))
        LOG.info("instance %s: device %s (%s) plugged", inst.name, name, dtype)

    async def _unplug(self, inst, pid: int, name: str, dev: dict) -> None:
        if await self.of(dev).unplug(inst, pid, name, dev, self._volatile(inst)):
            LOG.info("instance %s: device %s (%s) unplugged", inst.name, name, dev.get("type"))
