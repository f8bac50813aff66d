"""The `dir` pool: plain directories, with overlayfs for copy-on-write clones.

An instance made from an image is an overlay: the image volume (unpacked once,
shifted to the default id map) is the read-only lower layer and the instance
owns only its upper layer, so a launch copies nothing. Instances with their own
id map (privileged, isolated) get a full shifted copy instead. Snapshots copy
the upper layer; the image layer is shared and never changes.
"""
import asyncio
import os

from runtime import proc
from runtime.base.idmap import IdMap
from runtime.storage import shift
from runtime.storage.base import (LAYER, VOLUME_MODE, PoolDriver, Unpacker, copy_tree, du,
                                  exchange, remove_tree, sync_filesystem)

_LOWER = ".lower"     # file naming the image volume an overlay instance sits on
_UPPER = ".upper"
_WORK = ".work"
_background: set = set()     # deferred removals, referenced until done


def _is_mount(path: str) -> bool:
    return os.path.ismount(path)


def _backing_fs(path: str) -> tuple[str, str]:
    """(fstype, mount point) of the filesystem holding path, from /proc/self/mounts."""
    best = ("unknown", "/")
    real = os.path.realpath(path)
    try:
        with open("/proc/self/mounts") as f:
            for line in f:
                fields = line.split()
                target = fields[1].replace("\\040", " ")
                if (real == target or real.startswith(target.rstrip("/") + "/")) and \
                        len(target) >= len(best[1]):
                    best = (fields[2], target)
    except OSError:
        pass
    return best


class DirPool(PoolDriver):
    driver = "dir"
    layered = True
    plain_snapshots = True

    # Helpers -------------------------------------------------------------------
    def _lower(self, volpath: str) -> str | None:
        try:
            with open(os.path.join(volpath, _LOWER)) as f:
                return f.read().strip() or None
        except FileNotFoundError:
            return None

    def layer_base(self, path: str) -> str | None:
        """An overlay volume: its own layer over the image named in .lower."""
        return self._lower(path) if os.path.isdir(os.path.join(path, _UPPER)) else None

    def migration_entries(self, mtype: str) -> tuple[str, ...]:
        """LAYER: the upper layer (files as the instance changed them; whiteouts and
        all) and the image metadata; the target mounts it over its own copy of the image."""
        if mtype == LAYER:
            return (_UPPER, "metadata.yaml", "templates")
        return super().migration_entries(mtype)

    def migration_tree(self, mtype: str) -> str:
        return _UPPER if mtype == LAYER else super().migration_tree(mtype)

    def _image_rootfs(self, fingerprint: str) -> str:
        return os.path.join(self.image_path(fingerprint), "rootfs")

    async def _mount_overlay(self, target: str, lowers: list[str], upper: str | None,
                             work: str | None) -> None:
        opts = "lowerdir=" + ":".join(lowers)
        if upper:
            opts += f",upperdir={upper},workdir={work}"
        opts += ",redirect_dir=off,index=off,metacopy=off,xino=off"
        os.makedirs(target, exist_ok=True)
        await proc.run(["mount", "-t", "overlay", "overlay", "-o", opts, target])

    async def _umount(self, target: str) -> None:
        if _is_mount(target):
            rc, _, _err = await proc.run(["umount", target], check=False)
            if rc != 0:
                await proc.run(["umount", "-l", target])

    # Images ------------------------------------------------------------------
    async def create_image(self, fingerprint: str, unpack: Unpacker, idmap: IdMap) -> None:
        final = self.image_path(fingerprint)
        tmp = final + ".tmp"
        await remove_tree(tmp)
        os.makedirs(os.path.join(tmp, "rootfs"))
        try:
            await unpack(tmp)
            await asyncio.to_thread(shift.shift_tree, os.path.join(tmp, "rootfs"),
                                    IdMap(0, 0), idmap)
            with open(os.path.join(tmp, ".idmap"), "w") as f:
                f.write(idmap.encode())
            await remove_tree(final)
            # On disk before any instance is made from it.
            await asyncio.to_thread(sync_filesystem, tmp)
            os.rename(tmp, final)
        except BaseException:
            await remove_tree(tmp)
            raise

    async def delete_image(self, fingerprint: str) -> None:
        # Overlay instances keep using the lower layer: only drop it when unused.
        if not self._image_in_use(fingerprint):
            await remove_tree(self.image_path(fingerprint))

    def _image_in_use(self, fingerprint: str) -> bool:
        for base in (os.path.join(self.path, "containers"),
                     os.path.join(self.path, "containers-snapshots")):
            for root, dirs, files in os.walk(base):
                if _LOWER in files and self._lower(root) == fingerprint:
                    return True
                dirs[:] = [d for d in dirs if not d.startswith(".") and d != "rootfs"]
        return False

    # Instances ---------------------------------------------------------------
    async def create_instance(self, vol: str, fingerprint: str | None, idmap: IdMap,
                              default_idmap: IdMap) -> None:
        path = self.new_volume_dir(vol)
        try:
            if fingerprint is None:
                os.makedirs(os.path.join(path, "rootfs"))
                if not idmap.privileged:
                    os.chown(os.path.join(path, "rootfs"), idmap.base, idmap.base)
            elif idmap == default_idmap:
                for sub in (_UPPER, _WORK):
                    os.makedirs(os.path.join(path, sub))
                os.chown(os.path.join(path, _UPPER), idmap.base, idmap.base)
                with open(os.path.join(path, _LOWER), "w") as f:
                    f.write(fingerprint)
                os.makedirs(os.path.join(path, "rootfs"))
            else:
                await copy_tree(self._image_rootfs(fingerprint), os.path.join(path, "rootfs"))
                await asyncio.to_thread(shift.shift_tree, os.path.join(path, "rootfs"),
                                        default_idmap, idmap)
        except BaseException:
            await self.delete_instance(vol)
            raise

    async def mount(self, vol: str) -> str:
        path = self.instance_path(vol)
        rootfs = os.path.join(path, "rootfs")
        lower = self._lower(path)
        if lower and not _is_mount(rootfs):
            await self._mount_overlay(rootfs, [self._image_rootfs(lower)],
                                      os.path.join(path, _UPPER), os.path.join(path, _WORK))
        return rootfs

    async def unmount(self, vol: str) -> None:
        await self._umount(self.rootfs(vol))

    async def delete_instance(self, vol: str) -> None:
        await self.unmount(vol)
        await remove_tree(self.instance_path(vol))
        await remove_tree(self.snapshot_path(vol))

    async def copy_instance(self, src: str, dst: str, src_snapshot: str | None = None) -> None:
        srcpath = self.volume_source(src, src_snapshot)
        dstpath = self.new_volume_dir(dst)
        try:
            await self._copy_volume_dir(srcpath, dstpath)
        except BaseException:
            await self.delete_instance(dst)
            raise

    async def _copy_volume_dir(self, srcpath: str, dstpath: str) -> None:
        """Copy a volume or snapshot dir: its upper layer or its plain rootfs, and metadata."""
        lower = self._lower(srcpath)
        entries = [os.path.join(srcpath, e) for e in os.listdir(srcpath)
                   if not (lower and e in (_WORK, "rootfs"))]
        if entries:  # one cp for all entries: each process spawn costs milliseconds
            await proc.run(["cp", "-a", "--reflink=auto", "-t", dstpath, "--", *entries])
        if lower:
            os.makedirs(os.path.join(dstpath, _WORK), exist_ok=True)
            os.makedirs(os.path.join(dstpath, "rootfs"), exist_ok=True)

    async def shift_instance(self, vol: str, src: IdMap, dst: IdMap) -> None:
        if src == dst:
            return
        path = self.instance_path(vol)
        lower = self._lower(path)
        if lower:
            # The shared image layer can't be re-owned: flatten into a plain rootfs.
            merged = await self.mount(vol)
            flat = os.path.join(path, ".flat")
            await remove_tree(flat)
            await copy_tree(merged, flat)
            await self.unmount(vol)
            for sub in (_UPPER, _WORK, "rootfs"):
                await remove_tree(os.path.join(path, sub))
            os.remove(os.path.join(path, _LOWER))
            os.rename(flat, os.path.join(path, "rootfs"))
        await asyncio.to_thread(shift.shift_tree, os.path.join(path, "rootfs"), src, dst)

    # Snapshots -----------------------------------------------------------------
    async def create_snapshot(self, vol: str, snap: str) -> None:
        target = self.new_snapshot_dir(vol, snap)
        try:
            await self._copy_volume_dir(self.instance_path(vol), target)
        except BaseException:
            await remove_tree(target)
            raise

    def restore_staging(self, vol: str) -> str:
        return self.instance_path(vol) + ".restore"

    async def sweep_restore_leftovers(self) -> None:
        base = os.path.join(self.path, "containers")
        for entry in os.listdir(base) if os.path.isdir(base) else []:
            # instance names never contain dots: these are ours
            if ".old-" in entry or entry.endswith(".restore"):
                await remove_tree(os.path.join(base, entry))

    async def prepare_restore(self, vol: str, snap: str) -> str:
        staging = self.restore_staging(vol)
        await self.unmount(vol)
        await remove_tree(staging)
        os.makedirs(staging, mode=VOLUME_MODE)
        try:
            await self._copy_volume_dir(self.snapshot_path(vol, snap), staging)
        except BaseException:
            await remove_tree(staging)
            raise
        os.chmod(staging, VOLUME_MODE)
        return str(os.stat(staging).st_ino)

    async def commit_restore(self, vol: str) -> None:
        await self.unmount(vol)
        exchange(self.restore_staging(vol), self.instance_path(vol))

    def restore_committed(self, vol: str, token: str) -> bool:
        try:
            return str(os.stat(self.instance_path(vol)).st_ino) == token
        except FileNotFoundError:
            return False

    async def finish_restore(self, vol: str, snap: str) -> None:
        """The replaced volume (now at the staging name) is dropped after answering."""
        staging = self.restore_staging(vol)
        if not os.path.lexists(staging):
            return
        old = f"{self.instance_path(vol)}.old-{os.urandom(4).hex()}"
        os.rename(staging, old)
        task = asyncio.get_running_loop().create_task(remove_tree(old))
        _background.add(task)
        task.add_done_callback(_background.discard)

    async def copy_snapshot(self, src: str, snap: str, dst: str) -> None:
        """Give dst a snapshot `snap` equal to src's (copy with snapshots)."""
        target = self.new_snapshot_dir(dst, snap)
        try:
            await self._copy_volume_dir(self.snapshot_path(src, snap), target)
        except BaseException:
            await remove_tree(target)
            raise

    async def delete_snapshot(self, vol: str, snap: str) -> None:
        await self.unmount_snapshot(vol, snap)
        await remove_tree(self.snapshot_path(vol, snap))

    async def mount_snapshot(self, vol: str, snap: str) -> str:
        path = self.snapshot_path(vol, snap)
        lower = self._lower(path)
        rootfs = os.path.join(path, "rootfs")
        if lower and not _is_mount(rootfs):
            await self._mount_overlay(rootfs, [os.path.join(path, _UPPER),
                                               self._image_rootfs(lower)], None, None)
        return rootfs

    async def unmount_snapshot(self, vol: str, snap: str) -> None:
        await self._umount(os.path.join(self.snapshot_path(vol, snap), "rootfs"))

    # Quota -------------------------------------------------------------------------
    def quota_supported(self) -> bool:
        """Plain directories can't cap a volume's size (no project quota used here)."""
        return False

    def state(self) -> dict:
        fstype, target = _backing_fs(self.path)
        return {"quota_enforced": False,
                "quota_reason": f"the dir driver does not enforce volume sizes (backing "
                                f"filesystem {fstype} at {target}); root disk 'size' is "
                                "accepted but not enforced (use a btrfs pool)"}

    async def set_size(self, vol: str, size: int | None) -> bool:
        return False

    async def usage(self, vol: str) -> int:
        path = self.instance_path(vol)
        return await du(os.path.join(path, _UPPER) if self._lower(path) else path)


