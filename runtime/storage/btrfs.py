"""The `btrfs` pool: every rootfs is a subvolume, clones and snapshots are btrfs snapshots.

An image is unpacked once into a read-only subvolume; an instance's rootfs is a
writable snapshot of it (instant, no data copied); an instance snapshot is a
read-only snapshot of the rootfs, which is atomic, so a running instance is
never frozen for it. Root disk `size` is enforced with a qgroup limit on the
rootfs subvolume (referenced bytes, as LXD does).

Volume directories stay plain directories (metadata.yaml, templates/ and the
`rootfs` subvolume), so the layout matches the dir pool and the rest of the
daemon needs no btrfs knowledge. Without a `source` the pool makes and formats a
sparse loop file under $LXD_DIR/disks and mounts it at its usual path.
"""
from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import shutil
import struct
import subprocess

from runtime import proc
from runtime.errors import BadRequest
from runtime.base.values import parse_size
from runtime.base.idmap import IdMap
from runtime.storage import shift
from runtime.storage.base import PoolDriver, Unpacker, exchange, remove_tree, sync_filesystem

LOG = logging.getLogger(__name__)
DEFAULT_SIZE = "5GiB"
_SIZE_FILE = ".size"          # the volume's size limit, re-applied to new subvolumes
_SUBVOL_ROOT_INO = 256


def is_subvolume(path: str) -> bool:
    try:
        return os.lstat(path).st_ino == _SUBVOL_ROOT_INO
    except FileNotFoundError:
        return False


# btrfs ioctls (linux/btrfs.h): a snapshot or subvolume without spawning btrfs-progs.
_IOC_SUBVOL_CREATE = 0x5000940E     # _IOW(0x94, 14, struct btrfs_ioctl_vol_args)
_IOC_SNAP_DESTROY = 0x5000940F      # _IOW(0x94, 15, struct btrfs_ioctl_vol_args)
_IOC_SNAP_CREATE_V2 = 0x50009417    # _IOW(0x94, 23, struct btrfs_ioctl_vol_args_v2)
_SUBVOL_RDONLY = 1 << 1


def _dirfd(path: str) -> int:
    return os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)


def ioctl_snapshot(src: str, dst: str, readonly: bool) -> None:
    """Snapshot subvolume src as dst (struct btrfs_ioctl_vol_args_v2: name at 56)."""
    parent, name = os.path.split(dst.rstrip("/"))
    sfd, pfd = _dirfd(src), _dirfd(parent)
    try:
        args = bytearray(4096)
        struct.pack_into("qQQ", args, 0, sfd, 0, _SUBVOL_RDONLY if readonly else 0)
        raw = name.encode()
        args[56:56 + len(raw)] = raw
        fcntl.ioctl(pfd, _IOC_SNAP_CREATE_V2, args, True)
    finally:
        os.close(sfd)
        os.close(pfd)


_IOC_INO_LOOKUP = 0xD0009412       # _IOWR(0x94, 18, struct btrfs_ioctl_ino_lookup_args)


def subvolume_id(path: str) -> int:
    """The id of the subvolume path is in (stable across mounts and reboots)."""
    fd = _dirfd(path)
    try:
        args = bytearray(4096)
        struct.pack_into("QQ", args, 0, 0, _SUBVOL_ROOT_INO)
        fcntl.ioctl(fd, _IOC_INO_LOOKUP, args, True)
        return struct.unpack_from("Q", args, 0)[0]
    finally:
        os.close(fd)


def _vol_args_ioctl(path: str, request: int) -> None:
    """SUBVOL_CREATE / SNAP_DESTROY on parent(path) naming basename(path)."""
    parent, name = os.path.split(path.rstrip("/"))
    pfd = _dirfd(parent)
    try:
        args = bytearray(4096)
        raw = name.encode()
        args[8:8 + len(raw)] = raw
        fcntl.ioctl(pfd, request, args, True)
    finally:
        os.close(pfd)


def _copy_meta_sync(src: str, dst: str, only: tuple[str, ...] | None) -> None:
    names = only if only is not None else [e for e in os.listdir(src)
                                           if e not in ("rootfs", ".rootfs.restore")]
    for entry in names:
        s, d = os.path.join(src, entry), os.path.join(dst, entry)
        if os.path.isdir(d) and not os.path.islink(d):
            shutil.rmtree(d)
        elif os.path.lexists(d):
            os.unlink(d)
        if os.path.isdir(s) and not os.path.islink(s):
            shutil.copytree(s, d, symlinks=True)
        elif os.path.lexists(s):
            shutil.copy2(s, d, follow_symlinks=False)
        else:
            continue
        st = os.lstat(s)
        os.lchown(d, st.st_uid, st.st_gid)


def fs_type(path: str) -> str:
    out = subprocess.run(["stat", "-f", "-c", "%T", path], capture_output=True, text=True)
    return out.stdout.strip()


class BtrfsPool(PoolDriver):
    driver = "btrfs"
    atomic_snapshots = True

    def __init__(self, name: str, config: dict, lxd_dir: str):
        super().__init__(name, config, lxd_dir)
        source = self.config.get("source", "")
        if not (source and os.path.isdir(source)):
            self.path = os.path.join(lxd_dir, "storage-pools", name)
        # On daemon start: a pool made earlier (its mount point exists) on a loop
        # file or device needs its mount back. A pool being created has no mount
        # point yet; create() mounts it.
        if source and not os.path.isdir(source) and os.path.exists(source) and \
                os.path.isdir(self.path) and not os.path.ismount(self.path):
            try:
                self._mount_sync()
            except Exception as exc:  # noqa: BLE001 - the pool reports it when used
                LOG.error("btrfs pool %s: could not mount %s: %s", name, source, exc)

    # Pool ------------------------------------------------------------------------
    def _loop_file(self) -> str:
        return os.path.join(self.lxd_dir, "disks", f"{self.name}.img")

    def _mount_sync(self) -> None:
        if os.path.ismount(self.path):
            return
        os.makedirs(self.path, exist_ok=True)
        source = self.config["source"]
        opts = "user_subvol_rm_allowed"
        if os.path.isfile(source):
            opts = "loop," + opts
        if source == self._loop_file():
            # LXD_DIR/disks is traversable (block-device disks are mounted below it):
            # the pool's image, every container's data, is root's alone.
            os.chmod(source, 0o600)
        proc.run_sync(["mount", "-t", "btrfs", "-o", opts, source, self.path])

    async def create(self) -> None:
        source = self.config.get("source", "")
        if not source:
            size = self.config.get("size") or DEFAULT_SIZE
            nbytes = parse_size(size)
            if nbytes < 256 * 1024 * 1024:
                raise BadRequest("btrfs pool 'size' must be at least 256MiB")
            loop = self._loop_file()
            if os.path.exists(loop):
                raise BadRequest(f"Loop file {loop} already exists")
            os.makedirs(os.path.dirname(loop), mode=0o700, exist_ok=True)
            with open(loop, "wb") as f:
                f.truncate(nbytes)
            self.config["source"] = loop
            self.config["size"] = size
            self._made_loop = True
            await proc.run(["mkfs.btrfs", "-q", "-f", loop])
            await asyncio.to_thread(self._mount_sync)
        elif os.path.isdir(source):
            if fs_type(source) != "btrfs":
                raise BadRequest(f"Source {source!r} is not on a btrfs filesystem")
            self.path = source
        elif os.path.exists(source):
            rc, out, _ = await proc.run(["blkid", "-o", "value", "-s", "TYPE", source],
                                        check=False)
            if out.strip() != "btrfs":
                raise BadRequest(f"Source {source!r} holds no btrfs filesystem (format it "
                                 "first, or give no source to get a loop file)")
            await asyncio.to_thread(self._mount_sync)
        else:
            raise BadRequest(f"Source {source!r} does not exist")
        await proc.run(["btrfs", "quota", "enable", self.path])
        os.chmod(self.path, 0o711)
        await super().create()

    async def delete(self) -> None:
        source = self.config.get("source", "")
        if source and os.path.isdir(source):
            for sub in ("containers", "containers-snapshots", "images", "custom",
                        "custom-snapshots"):
                await self._remove_dir(os.path.join(self.path, sub))
            return
        if os.path.ismount(self.path):
            rc, _, _ = await proc.run(["umount", self.path], check=False)
            if rc != 0:
                await proc.run(["umount", "-l", self.path])
        if source == self._loop_file() and os.path.exists(source):
            os.unlink(source)
        if os.path.isdir(self.path) and not os.path.ismount(self.path):
            await remove_tree(self.path)

    def state(self) -> dict:
        return {"quota_enforced": True, "quota_reason": "btrfs qgroup limits"}

    def quota_supported(self) -> bool:
        return True

    # Subvolume helpers ---------------------------------------------------------------
    async def _snapshot(self, src: str, dst: str, readonly: bool) -> None:
        try:
            await asyncio.to_thread(ioctl_snapshot, src, dst, readonly)
        except OSError as exc:
            LOG.debug("snapshot ioctl %s -> %s failed (%s): using btrfs-progs", src, dst, exc)
            argv = ["btrfs", "-q", "subvolume", "snapshot"] + (["-r"] if readonly else [])
            await proc.run(argv + [src, dst])

    async def _create_subvol(self, path: str) -> None:
        try:
            await asyncio.to_thread(_vol_args_ioctl, path, _IOC_SUBVOL_CREATE)
        except OSError:
            await proc.run(["btrfs", "-q", "subvolume", "create", path])

    async def _delete_subvol(self, path: str) -> None:
        if not is_subvolume(path):
            await remove_tree(path)
            return
        try:
            await asyncio.to_thread(_vol_args_ioctl, path, _IOC_SNAP_DESTROY)
            return
        except OSError:
            pass  # nested subvolumes (ENOTEMPTY) and the like: the careful way below
        # A container may have made subvolumes of its own inside: deepest first.
        rc, out, _ = await proc.run(["btrfs", "subvolume", "list", "-o", path], check=False)
        nested = [line.split(" path ", 1)[1] for line in out.splitlines() if " path " in line]
        for rel in sorted(nested, key=len, reverse=True):
            full = os.path.join(self.path, rel.removeprefix("<FS_TREE>/"))
            if full.startswith(path + "/") and is_subvolume(full):
                await proc.run(["btrfs", "-q", "subvolume", "delete", full], check=False)
        await proc.run(["btrfs", "-q", "subvolume", "delete", path])

    async def remove_dir(self, path: str) -> None:
        await self._remove_dir(path)

    async def _remove_dir(self, path: str) -> None:
        """A volume dir (or a dir of them): subvolumes deleted properly, then the rest."""
        if not os.path.lexists(path):
            return
        if is_subvolume(path):
            await self._delete_subvol(path)
            return
        if os.path.isdir(path) and not os.path.islink(path):
            for entry in os.listdir(path):
                full = os.path.join(path, entry)
                if os.path.isdir(full) and not os.path.islink(full) and (
                        is_subvolume(full) or entry != "rootfs"):
                    await self._remove_dir(full)
        await remove_tree(path)

    async def _copy_meta(self, src: str, dst: str,
                         only: tuple[str, ...] | None = None) -> None:
        """A volume dir's small files (metadata.yaml, templates/, .size), not its rootfs.

        In a thread rather than with cp: spawning a process per entry cost more
        than the copies themselves.
        """
        await asyncio.to_thread(_copy_meta_sync, src, dst, only)

    async def _reapply_size(self, voldir: str) -> None:
        try:
            with open(os.path.join(voldir, _SIZE_FILE)) as f:
                size = int(f.read().strip() or 0)
        except (FileNotFoundError, ValueError):
            return
        if size:
            await self._limit(os.path.join(voldir, "rootfs"), size)

    async def _limit(self, subvol: str, size: int | None) -> None:
        await proc.run(["btrfs", "qgroup", "limit", str(size) if size else "none", subvol])

    # Images --------------------------------------------------------------------------
    async def create_image(self, fingerprint: str, unpack: Unpacker, idmap: IdMap) -> None:
        final = self.image_path(fingerprint)
        tmp = final + ".tmp"
        await self._remove_dir(tmp)
        os.makedirs(tmp)
        try:
            await self._create_subvol(os.path.join(tmp, "rootfs"))
            await unpack(tmp)
            await asyncio.to_thread(shift.shift_tree, os.path.join(tmp, "rootfs"),
                                    IdMap(0, 0), idmap)
            with open(os.path.join(tmp, ".idmap"), "w") as f:
                f.write(idmap.encode())
            await proc.run(["btrfs", "property", "set", "-ts", os.path.join(tmp, "rootfs"),
                            "ro", "true"])
            await self._remove_dir(final)
            # On disk before any instance is made from it.
            await asyncio.to_thread(sync_filesystem, tmp)
            os.rename(tmp, final)
        except BaseException:
            await self._remove_dir(tmp)
            raise

    async def delete_image(self, fingerprint: str) -> None:
        # Instances are snapshots: they keep their data when the image goes.
        await self._remove_dir(self.image_path(fingerprint))

    # Instances -----------------------------------------------------------------------
    async def create_instance(self, vol: str, fingerprint: str | None, idmap: IdMap,
                              default_idmap: IdMap) -> None:
        path = self.new_volume_dir(vol)
        rootfs = os.path.join(path, "rootfs")
        try:
            if fingerprint is None:
                await self._create_subvol(rootfs)
                if not idmap.privileged:
                    os.chown(rootfs, idmap.base, idmap.base)
            else:
                src = os.path.join(self.image_path(fingerprint), "rootfs")
                await self._snapshot(src, rootfs, readonly=False)
                if idmap != default_idmap:
                    await asyncio.to_thread(shift.shift_tree, rootfs, default_idmap, idmap)
        except BaseException:
            await self.delete_instance(vol)
            raise

    async def mount(self, vol: str) -> str:
        return self.rootfs(vol)

    async def delete_instance(self, vol: str) -> None:
        await self._remove_dir(self.instance_path(vol))
        await self._remove_dir(self.snapshot_path(vol))

    async def copy_instance(self, src: str, dst: str, src_snapshot: str | None = None) -> None:
        srcpath = self.volume_source(src, src_snapshot)
        dstpath = self.new_volume_dir(dst)
        try:
            await self._snapshot(os.path.join(srcpath, "rootfs"),
                                 os.path.join(dstpath, "rootfs"), readonly=False)
            await self._copy_meta(srcpath, dstpath)
            await self._reapply_size(dstpath)
        except BaseException:
            await self.delete_instance(dst)
            raise

    async def copy_snapshot(self, src: str, snap: str, dst: str) -> None:
        srcpath = self.snapshot_path(src, snap)
        target = self.new_snapshot_dir(dst, snap)
        try:
            await self._snapshot(os.path.join(srcpath, "rootfs"),
                                 os.path.join(target, "rootfs"), readonly=True)
            await self._copy_meta(srcpath, target)
        except BaseException:
            await self._remove_dir(target)
            raise

    async def shift_instance(self, vol: str, src: IdMap, dst: IdMap) -> None:
        await asyncio.to_thread(shift.shift_tree, self.rootfs(vol), src, dst)

    # Snapshots -----------------------------------------------------------------------
    async def create_snapshot(self, vol: str, snap: str) -> None:
        path = self.instance_path(vol)
        target = self.new_snapshot_dir(vol, snap)
        try:
            await self._snapshot(os.path.join(path, "rootfs"), os.path.join(target, "rootfs"),
                                 readonly=True)
            await self._copy_meta(path, target)
        except BaseException:
            await self._remove_dir(target)
            raise

    def restore_staging(self, vol: str) -> str:
        return os.path.join(self.instance_path(vol), ".rootfs.restore")

    async def prepare_restore(self, vol: str, snap: str) -> str:
        staging = self.restore_staging(vol)
        await self._remove_dir(staging)
        await self._snapshot(os.path.join(self.snapshot_path(vol, snap), "rootfs"), staging,
                             readonly=False)
        return str(await asyncio.to_thread(subvolume_id, staging))

    async def commit_restore(self, vol: str) -> None:
        exchange(self.restore_staging(vol), self.rootfs(vol))

    def restore_committed(self, vol: str, token: str) -> bool:
        try:
            return str(subvolume_id(self.rootfs(vol))) == token
        except OSError:
            return False

    async def finish_restore(self, vol: str, snap: str) -> None:
        path = self.instance_path(vol)
        await self._remove_dir(self.restore_staging(vol))   # the replaced rootfs
        await self._copy_meta(self.snapshot_path(vol, snap), path,
                              only=("metadata.yaml", "templates"))
        await self._reapply_size(path)

    async def delete_snapshot(self, vol: str, snap: str) -> None:
        await self._remove_dir(self.snapshot_path(vol, snap))

    async def mount_snapshot(self, vol: str, snap: str) -> str:
        return os.path.join(self.snapshot_path(vol, snap), "rootfs")

    # Quota and usage -----------------------------------------------------------------
    async def set_size(self, vol: str, size: int | None) -> bool:
        path = self.instance_path(vol)
        await self._limit(os.path.join(path, "rootfs"), size)
        with open(os.path.join(path, _SIZE_FILE), "w") as f:
            f.write(str(size or 0))
        return True

    async def usage(self, vol: str) -> int:
        return await self.subvol_usage(self.rootfs(vol))

    async def subvol_usage(self, subvol: str) -> int:
        """Bytes the subvolume references (its qgroup), or du when quotas are off."""
        rc, out, _ = await proc.run(["btrfs", "qgroup", "show", "-rf", "--raw", subvol],
                                    check=False)
        for line in out.splitlines():
            cols = line.split()
            if cols and cols[0].startswith("0/"):
                try:
                    return int(cols[1])
                except (IndexError, ValueError):
                    break
        _rc, out, _ = await proc.run(["du", "-sxb", subvol], check=False)
        try:
            return int(out.split()[0])
        except (IndexError, ValueError):
            return 0

    # Custom volumes --------------------------------------------------------------------
    async def create_custom(self, name: str, idmap: IdMap) -> None:
        path = self.custom_path(name)
        await self._create_subvol(path)
        if not idmap.privileged:
            os.chown(path, idmap.base, idmap.base)

    async def delete_custom(self, name: str) -> None:
        await self._remove_dir(self.custom_path(name))

    async def set_custom_size(self, name: str, size: int | None) -> bool:
        await self._limit(self.custom_path(name), size)
        return True

    async def custom_usage(self, name: str) -> int:
        return await self.subvol_usage(self.custom_path(name))

    async def snapshot_custom(self, vol: str, snap: str) -> None:
        await self._snapshot(self.custom_path(vol), self.custom_snapshot_path(vol, snap),
                             readonly=True)
