"""One storage pool as the rest of the runtime sees it: the pool layer over a driver.

LXD splits storage in two (lxd/storage/pool_interface.go over
lxd/storage/drivers/interface.go); so does this runtime. A driver (`dir`,
`btrfs`: runtime.storage.dir / .btrfs over .base) knows how volumes are laid out
on disk and offers generic volume operations. `Pool` is what instances, images,
snapshots, publishing, copies, migration and the API call: they name volumes,
never paths inside them, and never a driver. How a volume travels to another
host (its migration types: the whole volume, or only an instance's own layer
over an image the target also holds) is the driver's to say and the pool's to
offer; the wire format is runtime.migration's.

Custom volumes (rows, rules, snapshots) are runtime.storage.volumes, over the
same `Pool`.
"""
from __future__ import annotations

import os
from collections.abc import Awaitable, Callable

from runtime.base.idmap import IdMap
from runtime.storage.base import VOLUME, PoolDriver, copy_tree
from runtime.storage.usage import UsageCache

Unpacker = Callable[[str], Awaitable[None]]


class Pool:
    """A storage pool: its driver, behind the operations the runtime performs."""

    def __init__(self, driver: PoolDriver):
        # For runtime.storage only (the custom-volume layer); everything else calls
        # the methods below.
        self.driver = driver
        self.name = driver.name
        self._usage = UsageCache(driver.usage)

    # The pool ----------------------------------------------------------------------
    @property
    def driver_name(self) -> str:
        return self.driver.driver

    @property
    def config(self) -> dict:
        return self.driver.config

    @property
    def atomic_snapshots(self) -> bool:
        """Whether a snapshot of a running instance needs no freeze."""
        return self.driver.atomic_snapshots

    async def create(self) -> None:
        """Make the pool; what a failed creation left is removed."""
        try:
            await self.driver.create()
        except Exception:
            await self.driver.delete()
            raise

    async def delete(self) -> None:
        await self.driver.delete()

    async def open(self) -> None:
        """At daemon start: LXD's modes on the layout, half-unpacked images swept."""
        if os.path.isdir(os.path.join(self.driver.path, "containers")):
            self.driver.secure_layout()      # pools made before LXD's modes were applied
            await self.driver.sweep_partial()

    def state(self) -> dict:
        return self.driver.state()

    def resources(self) -> dict:
        return self.driver.resources()

    def quota_supported(self) -> bool:
        return self.driver.quota_supported()

    def space(self) -> os.statvfs_result:
        """The backing filesystem's free space and inodes (limits for what it receives)."""
        return os.statvfs(self.driver.path)

    # Images ------------------------------------------------------------------------
    def image_ready(self, fingerprint: str) -> bool:
        return self.driver.image_ready(fingerprint)

    def ready_images(self) -> dict[str, float]:
        return self.driver.ready_images()

    def image_volumes(self) -> list[str]:
        """Fingerprints of the image volumes on the pool (ready or not)."""
        base = os.path.join(self.driver.path, "images")
        return [fp for fp in os.listdir(base) if len(fp) == 64] if os.path.isdir(base) else []

    async def create_image(self, fingerprint: str, unpack: Unpacker, idmap: IdMap) -> None:
        await self.driver.create_image(fingerprint, unpack, idmap)

    async def delete_image(self, fingerprint: str) -> None:
        await self.driver.delete_image(fingerprint)

    # Instance volumes ----------------------------------------------------------------
    async def create_instance(self, vol: str, fingerprint: str | None, idmap: IdMap,
                              default_idmap: IdMap) -> None:
        """A new volume: a clone of the image volume (or empty when fingerprint is None)."""
        self._usage.forget(vol)
        await self.driver.create_instance(vol, fingerprint, idmap, default_idmap)

    async def add_image_metadata(self, vol: str, fingerprint: str) -> None:
        """The image's metadata.yaml and templates beside the instance's rootfs."""
        src = self.driver.image_path(fingerprint)
        for entry in ("metadata.yaml", "templates"):
            if os.path.exists(os.path.join(src, entry)):
                await copy_tree(os.path.join(src, entry),
                                os.path.join(self.driver.instance_path(vol), entry))

    async def delete_instance(self, vol: str) -> None:
        self._usage.forget(vol)
        await self.driver.delete_instance(vol)

    async def rename_instance(self, old: str, new: str) -> None:
        self._usage.forget(old)
        self._usage.forget(new)
        await self.driver.rename_instance(old, new)

    def custom_dir(self, vol: str) -> str:
        """Where a custom volume's files are (a disk device bind-mounts it)."""
        return self.driver.custom_path(vol)

    def rootfs(self, vol: str) -> str:
        """Where the instance's root filesystem is (once mounted)."""
        return self.driver.rootfs(vol)

    def volume_dir(self, vol: str) -> str:
        """The instance volume's directory: rootfs, metadata.yaml and templates in it."""
        return self.driver.instance_path(vol)

    async def mount(self, vol: str) -> str:
        return await self.driver.mount(vol)

    async def unmount(self, vol: str) -> None:
        await self.driver.unmount(vol)

    async def shift_instance(self, vol: str, src: IdMap, dst: IdMap) -> None:
        await self.driver.shift_instance(vol, src, dst)

    def secure_volume(self, vol: str, root_uid: int) -> None:
        self.driver.secure_volume(vol, root_uid)

    async def copy_instance(self, src: str, dst: str, src_snapshot: str | None = None) -> None:
        await self.driver.copy_instance(src, dst, src_snapshot)

    async def copy_metadata_from(self, other: Pool, src: str, src_snapshot: str | None,
                                 dst: str) -> None:
        """Image metadata of another pool's volume (or snapshot) beside ours (a copy
        across pools of different kinds moves the root filesystem itself)."""
        src_dir = other.driver.volume_source(src, src_snapshot)
        for entry in ("metadata.yaml", "templates"):
            path = os.path.join(src_dir, entry)
            if os.path.exists(path):
                await copy_tree(path, os.path.join(self.driver.instance_path(dst), entry))

    async def set_size(self, vol: str, size: int | None) -> bool:
        """Apply a root disk size; whether it is enforced."""
        return await self.driver.set_size(vol, size)

    async def usage(self, vol: str) -> int:
        """Bytes the instance volume uses, at most a few seconds old (see .usage)."""
        return await self._usage.now(vol)

    def cached_usage(self, vol: str) -> int | None:
        """The last known usage without waiting (for listings); None if not known yet."""
        return self._usage.cached(vol)

    # Instance snapshots --------------------------------------------------------------
    def has_snapshot(self, vol: str, snap: str) -> bool:
        return os.path.isdir(self.driver.snapshot_path(vol, snap))

    def snapshot_volumes(self) -> dict[str, list[str]]:
        """Every snapshot volume on the pool, by instance volume (records aside)."""
        base = os.path.join(self.driver.path, "containers-snapshots")
        return {vol: _listdir(os.path.join(base, vol)) for vol in _listdir(base)}

    def forget_snapshots_dir(self, vol: str) -> None:
        """The snapshot directory of a volume that is gone, once it is empty."""
        path = self.driver.snapshot_path(vol)
        if os.path.isdir(path) and not os.listdir(path):
            os.rmdir(path)

    def snapshot_dir(self, vol: str, snap: str) -> str:
        """A snapshot's directory (rootfs, metadata.yaml, templates)."""
        return self.driver.snapshot_path(vol, snap)

    async def create_snapshot(self, vol: str, snap: str) -> None:
        await self.driver.create_snapshot(vol, snap)

    async def copy_snapshot(self, src: str, snap: str, dst: str) -> None:
        await self.driver.copy_snapshot(src, snap, dst)

    async def delete_snapshot(self, vol: str, snap: str) -> None:
        await self.driver.delete_snapshot(vol, snap)

    async def rename_snapshot(self, vol: str, old: str, new: str) -> None:
        await self.driver.unmount_snapshot(vol, old)
        await self.driver.rename_snapshot(vol, old, new)

    async def mount_snapshot(self, vol: str, snap: str) -> str:
        """A read-only view of the snapshot's root filesystem."""
        return await self.driver.mount_snapshot(vol, snap)

    async def unmount_snapshot(self, vol: str, snap: str) -> None:
        await self.driver.unmount_snapshot(vol, snap)

    # A restore in three steps (see PoolDriver): the caller records the token between
    # prepare and commit, so a crash at any point rolls forward or back at start.
    async def prepare_restore(self, vol: str, snap: str) -> str:
        return await self.driver.prepare_restore(vol, snap)

    async def commit_restore(self, vol: str) -> None:
        self._usage.forget(vol)
        await self.driver.commit_restore(vol)

    def restore_committed(self, vol: str, token: str) -> bool:
        return self.driver.restore_committed(vol, token)

    async def finish_restore(self, vol: str, snap: str) -> None:
        await self.driver.finish_restore(vol, snap)

    async def abandon_restore(self, vol: str) -> None:
        await self.driver.abandon_restore(vol)

    async def sweep_restore_leftovers(self) -> None:
        await self.driver.sweep_restore_leftovers()

    # Migration -----------------------------------------------------------------------
    def migration_types(self) -> tuple[str, ...]:
        """How this pool's instance volumes can travel, preferred first (base.VOLUME:
        the whole volume; base.LAYER: only the instance's own layer over its image)."""
        return self.driver.migration_types()

    def layer_base(self, vol: str, snapshot: str | None = None,
                   snapshots: tuple[str, ...] = ()) -> str | None:
        """The image the volume (or one of its snapshots) is layered on, when only its
        own layer needs to travel to a host holding that image: the same image under
        the volume and every snapshot that travels with it, else None."""
        driver = self.driver
        base = driver.layer_base(driver.volume_source(vol, snapshot))
        if base and any(driver.layer_base(driver.snapshot_path(vol, s)) != base
                        for s in snapshots):
            return None
        return base

    def send_source(self, vol: str, snapshot: str | None, mtype: str) -> tuple[str, list[str]]:
        """(directory, its entries) that carry the volume (or snapshot) in migration
        type mtype; mount it first unless the type is LAYER."""
        driver = self.driver
        return driver.volume_source(vol, snapshot), list(driver.migration_entries(mtype))

    async def prepare_receive(self, vol: str, mtype: str, base: str | None, idmap: IdMap,
                              default_idmap: IdMap) -> tuple[str, str]:
        """A new volume to receive into (layered on image `base` for LAYER): (the
        directory a stream unpacks in, the tree in it that holds the files)."""
        await self.driver.create_instance(vol, base, idmap, default_idmap)
        return self.driver.instance_path(vol), self.driver.migration_tree(mtype)

    @property
    def snapshots_receive_in_place(self) -> bool:
        """Whether a received whole-volume snapshot can be unpacked straight into its
        own snapshot directory (a snapshot that is a plain copy of the volume)."""
        return self.driver.plain_snapshots

    def new_snapshot_dir(self, vol: str, snap: str) -> str:
        """An empty snapshot directory to receive into (snapshots_receive_in_place)."""
        return self.driver.new_snapshot_dir(vol, snap)


def _listdir(path: str) -> list[str]:
    try:
        return sorted(os.listdir(path))
    except (FileNotFoundError, NotADirectoryError):
        return []


__all__ = ["Pool", "VOLUME"]
