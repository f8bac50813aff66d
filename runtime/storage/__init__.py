"""Storage pools: one driver interface, with `dir` and `btrfs` backends.

Instance volumes hold the instance's `rootfs/` (plus image metadata and
templates). Image volumes hold an image unpacked once, already shifted to the
default id map, so creating an instance from it is a clone, never a full copy.
"""
from runtime.storage.base import PoolDriver, volume_name  # noqa: F401

DRIVERS: dict[str, str] = {
    "dir": "runtime.storage.dir:DirPool",
    "btrfs": "runtime.storage.btrfs:BtrfsPool",
}


def driver_class(name: str) -> type:
    import importlib

    from runtime.errors import BadRequest
    if name not in DRIVERS:
        raise BadRequest(f"Unknown storage driver {name!r} (supported: {', '.join(DRIVERS)})")
    module, cls = DRIVERS[name].split(":")
    try:
        return getattr(importlib.import_module(module), cls)
    except (ImportError, AttributeError):
        raise BadRequest(f"Storage driver {name!r} is not available in this build")
