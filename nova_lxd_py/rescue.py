"""Rescue: a container from the rescue image with the instance's root at /mnt/rescue.

The rescue container is not an instance of its own (it carries RESCUE_KEY, not
the instance uuid key, so list_instances skips it); it gets the instance's
ports, seed and, when the instance has one, a config drive with the rescue
password, as nova's libvirt driver gives a rescue guest.
"""
from __future__ import annotations

import os
from typing import Any

from nova import exception as nova_exception
from nova_lxd_py import runtime_api

SUFFIX = "-rescue"
MOUNT = "/mnt/rescue"
# The runtime mounts a stopped instance's root volume itself (our runtime's
# extension); LXD can't, so there the host path of the root is bound instead.
INSTANCE_VOLUME_EXTENSION = "nova_lxd_disk_instance_volume"


def name_of(instance_name: str) -> str:
    return instance_name + SUFFIX


def root_disk(rt: Any, name: str, data: dict, default_pool: str,
              local_state_dir: str | None) -> dict[str, str]:
    """The disk device giving the rescue container the instance's root."""
    pool_name = ((data.get("expanded_devices") or {}).get("root") or {}).get("pool") \
        or default_pool
    if rt.has_extension(INSTANCE_VOLUME_EXTENSION):
        return {"type": "disk", "pool": pool_name, "source": "container/" + name,
                "path": MOUNT}
    return {"type": "disk", "source": rootfs_path(rt, name, pool_name, local_state_dir),
            "path": MOUNT}


def rootfs_path(rt: Any, name: str, pool_name: str, local_state_dir: str | None) -> str:
    """Host path of a stopped container's root on a dir-like pool (LXD only):
    from the pool's ``source``, else LXD's layout under a local daemon's directory."""
    source = (rt.pool(pool_name).get("config") or {}).get("source")
    if not source and local_state_dir:
        source = os.path.join(local_state_dir, "storage-pools", pool_name)
    path = os.path.join(source or "", "containers", name, "rootfs")
    if not source or not os.path.isdir(path):
        raise nova_exception.NovaException(
            f"cannot find the root filesystem of {name} in pool {pool_name}")
    return path


def config(instance_config: dict[str, str], instance_uuid: str) -> dict[str, str]:
    """The rescue container's config: the instance's limits, marked as its rescue."""
    out = {k: v for k, v in instance_config.items() if k != runtime_api.UUID_KEY}
    out[runtime_api.RESCUE_KEY] = instance_uuid
    return out
