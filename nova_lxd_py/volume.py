"""Cinder volumes for containers, connected on this host with os-brick.

os-brick turns Cinder's connection info into a block device on the compute
host (iSCSI, RBD, FC, NVMe-oF... whatever the back end speaks). The container
then gets that device in one of two ways, both through the runtime's API:

- as a block device node at the path nova chose (``/dev/vdb``...), a
  ``unix-block`` device: the guest sees a disk, as in a VM, but an unprivileged
  container can't mount it itself;
- mounted at a directory, a ``disk`` device whose source is the block device:
  the runtime mounts its filesystem on the host, idmapped so the volume's uid 0
  is the container's root, and binds it in. Chosen when the volume's metadata
  says where (``lxd_mount_path``, e.g. ``openstack volume set --property
  lxd_mount_path=/srv/data``); the filesystem must be one the host kernel mounts.

A volume whose metadata has no mount path is given as a block device. Boot from
volume: a volume holding a root filesystem becomes the container's root (a root
``disk`` device on the block device, mounted the same way).

Extending a volume is what it is for a VM in nova's libvirt driver: the block
device the guest sees grows (a device node in the container is the host's
device, so it grows with it). Growing the filesystem is the guest's business,
except where we mounted it for the container (it can't): there the filesystem
is grown online when the host allows it. Where it doesn't (ext4's online resize
needs CAP_SYS_RESOURCE, which some hosts take out of every process's bounding
set), the volume stays attached and working at its old filesystem size, and the
refusal is logged and recorded (an instance fault and a failed
``lxd_grow_filesystem`` event of the extend action) instead of failing the
extend: the device did grow, and nova handles the other events of the same
batch only if this one returns.

The block device exists on the compute host, so the runtime must run on the
same host as nova-compute (a unix socket endpoint); with a remote runtime
volumes are refused.
"""
from __future__ import annotations

import os
import posixpath
import sys
from typing import Any

from oslo_log import log as logging

from nova import exception as nova_exception

LOG = logging.getLogger(__name__)

MOUNT_PATH_KEY = "lxd_mount_path"
DEVICE_PREFIX = "volume-"
ROOT_DEVICE = "root"
GROW_EVENT = "lxd_grow_filesystem"  # the event of the extend action that grows a mount


def _connector(connection_info: dict) -> Any:
    from os_brick.initiator import connector

    from nova import utils

    protocol = connection_info.get("driver_volume_type")
    if not protocol:
        raise nova_exception.VolumeDriverNotFound(driver_type=protocol)
    try:
        return connector.InitiatorConnector.factory(protocol, utils.get_root_helper(),
                                                    device_scan_attempts=3)
    except ValueError:
        raise nova_exception.VolumeDriverNotFound(driver_type=protocol)


def connector_properties(my_ip: str, host: str) -> dict:
    """What Cinder needs to export a volume to this host (initiator names...)."""
    from os_brick.initiator import connector

    from nova import utils

    return connector.get_connector_properties(utils.get_root_helper(), my_ip,
                                              multipath=False, enforce_multipath=False,
                                              host=host)


def connect(connection_info: dict) -> str:
    """Connect the volume on this host; its block device's path. The path is kept
    in connection_info (nova saves it with the attachment) for disconnect."""
    data = connection_info.setdefault("data", {})
    device_info = _connector(connection_info).connect_volume(data)
    path = device_info.get("path")
    if not path:
        raise nova_exception.VolumeAttachFailed(volume_id=volume_id(connection_info),
                                                reason="os-brick returned no device path")
    data["device_path"] = path
    return path


def disconnect(connection_info: dict) -> None:
    data = connection_info.get("data") or {}
    path = data.get("device_path")
    _connector(connection_info).disconnect_volume(
        data, {"path": path} if path else None)


def extend(connection_info: dict) -> int:
    """Let this host see the volume's new size; returns it in bytes."""
    return int(_connector(connection_info).extend_volume(connection_info.get("data") or {}))


def mounted_at(devices: dict[str, dict] | None, device_path: str | None) -> str | None:
    """Where the container has the filesystem on device_path mounted by us (a disk
    device, the root of a volume-backed container included), if it has."""
    for dev in (devices or {}).values():
        if device_path and dev.get("type") == "disk" and dev.get("source") == device_path:
            return dev.get("path")
    return None


def grow_filesystem(context: Any, instance: Any, vol_id: str, device_path: str,
                    path: str, host: str) -> bool:
    """Grow the filesystem we mounted at path to the grown device; whether it grew.
    A host that refuses leaves the filesystem as it was (the online grow changes
    nothing before the kernel's permission check): logged and recorded, no raise."""
    from nova.compute import utils as compute_utils

    from nova_lxd_py import exception, privsep

    try:
        with compute_utils.EventReporter(context, GROW_EVENT, host, instance.uuid,
                                         graceful_exit=True):
            try:
                privsep.grow_filesystem(device_path)
            except Exception as exc:  # noqa: BLE001 - told as a fault below
                reason = (str(exc).strip().splitlines() or [type(exc).__name__])[-1]
                raise exception.FilesystemNotGrown(volume_id=vol_id, path=path,
                                                   reason=reason) from exc
    except exception.FilesystemNotGrown as exc:
        LOG.warning("%s. The container keeps the old filesystem size until it is grown "
                    "offline (detached) or on a host that allows online resizing", exc,
                    instance=instance)
        compute_utils.add_instance_fault_from_exc(context, instance, exc, sys.exc_info())
        return False
    return True


def volume_id(connection_info: dict) -> str:
    return connection_info.get("serial") or \
        (connection_info.get("data") or {}).get("volume_id") or ""


def device_name(vol_id: str) -> str:
    return DEVICE_PREFIX + vol_id


def mount_path(volume: dict | None) -> str | None:
    """Where the volume's metadata asks the volume to be mounted, validated."""
    path = ((volume or {}).get("volume_metadata") or {}).get(MOUNT_PATH_KEY)
    if not path:
        return None
    norm = posixpath.normpath(path)
    if not path.startswith("/") or norm == "/" or ".." in path.split("/") or \
            norm.split("/")[1] in ("proc", "sys", "dev", "run"):
        raise nova_exception.InvalidInput(
            reason=f"volume metadata {MOUNT_PATH_KEY}={path!r} must be an absolute path "
                   "outside /, /proc, /sys, /dev and /run")
    return norm


def device(device_path: str, mountpoint: str, mount_at: str | None) -> dict[str, str]:
    """The container device for a connected volume."""
    if mount_at:
        return {"type": "disk", "source": device_path, "path": mount_at, "shift": "true"}
    return {"type": "unix-block", "source": device_path,
            "path": mountpoint or "/dev/" + os.path.basename(device_path)}


def root_device(device_path: str, pool: str) -> dict[str, str]:
    """The root disk of a container booted from a volume."""
    return {"type": "disk", "path": "/", "pool": pool, "source": device_path,
            "shift": "true"}


def is_root(bdm: dict, root_device_name: str | None) -> bool:
    return bool(root_device_name) and bdm.get("mount_device") == root_device_name


def mapped_volume_id(bdm: dict) -> str:
    return volume_id(bdm.get("connection_info") or {})


def mapped(block_device_info: Any) -> list[dict]:
    from nova.virt import driver as nova_driver

    return list(nova_driver.block_device_info_get_mapping(block_device_info))


def root_device_name(block_device_info: Any, instance: Any) -> str | None:
    from nova.virt import driver as nova_driver

    return nova_driver.block_device_info_get_root_device(block_device_info) or \
        getattr(instance, "root_device_name", None)


def boots_from_volume(block_device_info: Any, instance: Any) -> bool:
    root = root_device_name(block_device_info, instance)
    return any(is_root(bdm, root) for bdm in mapped(block_device_info))


def connect_devices(block_device_info: Any, instance: Any, pool: str,
                    current: dict[str, dict], mount_lookup: Any) -> dict[str, dict]:
    """Connect every mapped volume on this host and return the container devices
    for them (the root disk under "root" when the instance boots from a volume).

    A volume the container already has keeps its kind and path (only the host
    device may have changed, e.g. after a host reboot); a new one is mounted
    where ``mount_lookup(volume_id)`` says, else given as a block device."""
    root = root_device_name(block_device_info, instance)
    out: dict[str, dict] = {}
    for bdm in mapped(block_device_info):
        connection_info = bdm.get("connection_info") or {}
        path = connect(connection_info)
        if is_root(bdm, root):
            out[ROOT_DEVICE] = root_device(path, pool)
            continue
        vol_id = volume_id(connection_info)
        name = device_name(vol_id)
        if name in current:
            out[name] = dict(current[name], source=path)
        else:
            out[name] = device(path, bdm.get("mount_device"), mount_lookup(vol_id))
    return out


def disconnect_all(block_device_info: Any, instance: Any) -> None:
    """Best effort: every mapped volume's connection on this host goes."""
    for bdm in mapped(block_device_info):
        try:
            disconnect(bdm.get("connection_info") or {})
        except Exception:  # noqa: BLE001 - nova terminates the connection anyway
            LOG.exception("Disconnecting volume %s failed", mapped_volume_id(bdm),
                          instance=instance)
