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

The block device exists on the compute host, so the runtime must run on the
same host as nova-compute (a unix socket endpoint); with a remote runtime
volumes are refused.
"""
from __future__ import annotations

import os
import posixpath
from typing import Any

from oslo_log import log as logging

from nova import exception as nova_exception

LOG = logging.getLogger(__name__)

MOUNT_PATH_KEY = "lxd_mount_path"
DEVICE_PREFIX = "volume-"
ROOT_DEVICE = "root"


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
