"""Flavor ephemeral disks as custom storage volumes of the runtime.

nova charges placement DISK_GB for root_gb + ephemeral_gb + swap. The root is
the container; each ephemeral disk (the flavor's, or the ones a boot request
maps) becomes a custom volume in the instance's pool, sized as asked (enforced
where the pool enforces sizes, like the root) and mounted at /mnt, or at the
path the image names in its ``lxd_ephemeral_path`` property; further ones at
/mnt/ephemeral<N>. Volumes carry the instance's uuid, so only the instance's
own are ever deleted.

Ephemeral disks are scratch space, as on any hypervisor: a cold migration or
resize to another host gives the instance fresh, empty ones there (the runtime
moves the container, not custom volumes), and an evacuated instance starts
with empty ones too.

Swap is refused (flavor.py): containers share the host's swap, so a flavor
swap disk would be charged in placement and never exist.
"""
from __future__ import annotations

import posixpath
from dataclasses import dataclass
from typing import Any

from nova.virt import driver as nova_driver

from nova_lxd_py import exception, runtime_api

DEFAULT_MOUNT = "/mnt"
IMAGE_PATH_PROPERTY = "lxd_ephemeral_path"
DEVICE_PREFIX = "ephemeral"


@dataclass(frozen=True)
class Disk:
    index: int
    size_gb: int
    path: str


def mount_path(index: int, first: str) -> str:
    return first if index == 0 else posixpath.join(DEFAULT_MOUNT, f"ephemeral{index}")


def image_mount_path(system_metadata: dict[str, str] | None) -> str:
    """The first disk's mount point: the image's lxd_ephemeral_path or /mnt."""
    path = (system_metadata or {}).get("image_" + IMAGE_PATH_PROPERTY)
    if not path:
        return DEFAULT_MOUNT
    norm = posixpath.normpath(path)
    if not path.startswith("/") or norm == "/" or ".." in path.split("/") or \
            norm.startswith(("/proc", "/sys", "/dev")):
        raise exception.InvalidImageProperty(
            name=IMAGE_PATH_PROPERTY, value=path,
            reason="must be an absolute path outside /, /proc, /sys and /dev")
    return norm


def plan(flavor_ephemeral_gb: int, block_device_info: dict | None,
         system_metadata: dict[str, str] | None) -> list[Disk]:
    """The ephemeral disks an instance gets: nova's mapped ephemerals when it sent
    any, else one disk of the flavor's ephemeral_gb."""
    first = image_mount_path(system_metadata)
    mapped = nova_driver.block_device_info_get_ephemerals(block_device_info)
    sizes = [int(e.get("size") or 0) for e in mapped] if mapped else \
        ([int(flavor_ephemeral_gb)] if flavor_ephemeral_gb else [])
    if len(mapped) == 1 and flavor_ephemeral_gb:
        # nova's default ephemeral disk keeps its old size in the mapping after a
        # resize: the flavor's is the one wanted
        sizes = [int(flavor_ephemeral_gb)]
    return [Disk(i, size, mount_path(i, first)) for i, size in enumerate(sizes) if size > 0]


def volume_name(instance_name: str, index: int) -> str:
    return f"{instance_name}-eph{index}"


def device(pool: str, instance_name: str, disk: Disk) -> tuple[str, dict[str, str]]:
    return (f"{DEVICE_PREFIX}{disk.index}",
            {"type": "disk", "pool": pool, "source": volume_name(instance_name, disk.index),
             "path": disk.path})


def devices(pool: str, instance_name: str, disks: list[Disk]) -> dict[str, dict[str, str]]:
    return dict(device(pool, instance_name, d) for d in disks)


def create(rt: Any, pool: str, instance: Any, disks: list[Disk]) -> None:
    """Make the volumes (an existing one of this instance is kept and resized)."""
    for disk in disks:
        rt.ensure_volume(pool, volume_name(instance.name, disk.index),
                         {"size": f"{disk.size_gb}GiB", runtime_api.UUID_KEY: instance.uuid},
                         owner=instance.uuid)


def delete(rt: Any, pool: str, instance: Any) -> None:
    """Remove every ephemeral volume of the instance (only ones carrying its uuid)."""
    prefix = instance.name + "-eph"
    for volume in rt.custom_volumes(pool):
        name = volume.get("name", "")
        if name.startswith(prefix) and name[len(prefix):].isdigit():
            rt.delete_volume(pool, name, owner=instance.uuid)
