"""Storage pools: one driver interface, with `dir` and `btrfs` backends.

Instance volumes hold the instance's `rootfs/` (plus image metadata and
templates). Image volumes hold an image unpacked once, already shifted to the
default id map, so creating an instance from it is a clone, never a full copy.
The rest of the runtime sees a pool through runtime.storage.pool.Pool (instance
and image volumes, snapshots, migration types) and runtime.storage.volumes
(custom volumes); only this package knows the drivers.
"""
from runtime.errors import BadRequest
from runtime.storage.base import LAYER, VOLUME, PoolDriver, volume_name  # noqa: F401
from runtime.storage.btrfs import BtrfsPool
from runtime.storage.dir import DirPool
from runtime.storage.pool import Pool

DRIVERS: dict[str, type[PoolDriver]] = {"dir": DirPool, "btrfs": BtrfsPool}


def driver_class(name: str) -> type[PoolDriver]:
    if name not in DRIVERS:
        raise BadRequest(f"Unknown storage driver {name!r} (supported: {', '.join(DRIVERS)})")
    return DRIVERS[name]


def open_pool(name: str, driver: str, config: dict, lxd_dir: str) -> Pool:
    """The pool layer over a new driver object for one pool (nothing made on disk)."""
    return Pool(driver_class(driver)(name, config, lxd_dir))
