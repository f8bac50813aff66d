"""Storage pools: one driver interface, with `dir` and `btrfs` backends.

Instance volumes hold the instance's `rootfs/` (plus image metadata and
templates). Image volumes hold an image unpacked once, already shifted to the
default id map, so creating an instance from it is a clone, never a full copy.
Custom volumes have a pool layer of their own (runtime.storage.volumes).
"""
from runtime.errors import BadRequest
from runtime.storage.base import PoolDriver, volume_name  # noqa: F401
from runtime.storage.btrfs import BtrfsPool
from runtime.storage.dir import DirPool

DRIVERS: dict[str, type[PoolDriver]] = {"dir": DirPool, "btrfs": BtrfsPool}


def driver_class(name: str) -> type[PoolDriver]:
    if name not in DRIVERS:
        raise BadRequest(f"Unknown storage driver {name!r} (supported: {', '.join(DRIVERS)})")
    return DRIVERS[name]
