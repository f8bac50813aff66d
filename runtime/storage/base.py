"""The storage driver interface and the pieces every backend shares."""
import abc
import ctypes
import os
import shutil
from collections.abc import Awaitable, Callable

from runtime import proc
from runtime.base.idmap import IdMap

Unpacker = Callable[[str], Awaitable[None]]
# LXD's modes: lxd/storage/drivers/volume.go (BaseDirectories, EnsureMountPath).
POOL_DIRS = (("containers", 0o711), ("containers-snapshots", 0o711), ("images", 0o700),
             ("custom", 0o711), ("custom-snapshots", 0o700))
VOLUME_MODE = 0o100
# Migration types: how an instance volume travels (runtime.storage.pool.Pool).
VOLUME = "volume"   # the whole volume: its rootfs and the image's metadata
LAYER = "layer"     # only the instance's own layer, over an image the target holds
_VOLUME_ENTRIES = ("rootfs", "metadata.yaml", "templates")


def volume_name(project: str, name: str) -> str:
    """On-disk volume name: LXD's `<project>_<name>` outside the default project."""
    return name if project == "default" else f"{project}_{name}"


class PoolDriver(abc.ABC):
    driver = ""
    # Whether a snapshot of a running instance is atomic (no freeze needed).
    atomic_snapshots = False
    # Whether instance volumes of the default id map are layers over an image volume
    # (so a migration target holding the image receives only the instance's layer).
    layered = False
    # Whether a snapshot is a plain copy of its volume's directory (so a received
    # snapshot can be unpacked straight into it).
    plain_snapshots = False

    def __init__(self, name: str, config: dict, lxd_dir: str):
        self.name = name
        self.config = dict(config)
        self.lxd_dir = lxd_dir
        self.path = config.get("source") or os.path.join(lxd_dir, "storage-pools", name)

    # Layout ------------------------------------------------------------------
    def instance_path(self, vol: str) -> str:
        return os.path.join(self.path, "containers", vol)

    def rootfs(self, vol: str) -> str:
        return os.path.join(self.instance_path(vol), "rootfs")

    def snapshot_path(self, vol: str, snap: str | None = None) -> str:
        base = os.path.join(self.path, "containers-snapshots", vol)
        return os.path.join(base, snap) if snap else base

    def image_path(self, fingerprint: str) -> str:
        return os.path.join(self.path, "images", fingerprint)

    def custom_path(self, vol: str) -> str:
        return os.path.join(self.path, "custom", vol)

    # Pool ----------------------------------------------------------------------
    async def create(self) -> None:
        os.makedirs(self.path, mode=0o711, exist_ok=True)
        self.secure_layout()

    def secure_layout(self) -> None:
        """The pool's directories with LXD's modes (also fixes a pool made before).

        Unpacked images and instance snapshots hold setuid files and device nodes
        of tenants' choosing: no host user may reach them (0700). Containers and
        custom volumes must be traversable by containers' unprivileged root uids
        (0711); each instance's own directory is 0100 and owned by its root
        (VOLUME_MODE, set when it starts), as in LXD.
        """
        os.chmod(self.path, 0o711)
        for sub, mode in POOL_DIRS:
            path = os.path.join(self.path, sub)
            os.makedirs(path, mode=mode, exist_ok=True)
            os.chmod(path, mode)

    async def sweep_restore_leftovers(self) -> None:
        """What a restore killed mid-way leaves beside the instance volumes (none here:
        drivers that restore beside the volume override this)."""
        return None

    async def sweep_partial(self) -> None:
        """Image volumes a dead daemon was still unpacking."""
        base = os.path.join(self.path, "images")
        for entry in os.listdir(base) if os.path.isdir(base) else []:
            if entry.endswith(".tmp"):
                await self.remove_dir(os.path.join(base, entry))

    async def remove_dir(self, path: str) -> None:
        await remove_tree(path)

    def secure_volume(self, vol: str, root_uid: int) -> None:
        """An instance's directory: only its own root may traverse it (LXD's 0100)."""
        path = self.instance_path(vol)
        os.chown(path, root_uid, 0)
        os.chmod(path, VOLUME_MODE)

    async def delete(self) -> None:
        if not self.config.get("source"):
            shutil.rmtree(self.path, ignore_errors=True)

    def resources(self) -> dict:
        st = os.statvfs(self.path)
        return {"space": {"used": (st.f_blocks - st.f_bfree) * st.f_frsize,
                          "total": st.f_blocks * st.f_frsize},
                "inodes": {"used": st.f_files - st.f_ffree, "total": st.f_files}}

    def state(self) -> dict:
        """What the pool can enforce; the API reports it so nothing is silently wrong."""
        return {"quota_enforced": self.quota_supported()}

    def quota_supported(self) -> bool:
        return False

    def layer_base(self, path: str) -> str | None:
        """The image a volume (or snapshot) directory is layered on, when only its own
        layer needs to travel to a host that has that image; None: it is whole."""
        return None

    # Migration ---------------------------------------------------------------
    def migration_types(self) -> tuple[str, ...]:
        """How instance volumes can travel, preferred first."""
        return (LAYER, VOLUME) if self.layered else (VOLUME,)

    def migration_entries(self, mtype: str) -> tuple[str, ...]:
        """The entries of a volume's directory that carry it in migration type mtype."""
        if mtype != VOLUME:
            raise ValueError(f"{self.driver} pools send no {mtype!r} volumes")
        return _VOLUME_ENTRIES

    def migration_tree(self, mtype: str) -> str:
        """The entry of migration_entries(mtype) that holds the instance's files."""
        if mtype != VOLUME:
            raise ValueError(f"{self.driver} pools receive no {mtype!r} volumes")
        return "rootfs"

    # Images ------------------------------------------------------------------
    def ready_images(self) -> dict[str, float]:
        """The images unpacked on this pool: fingerprint -> when (epoch seconds)."""
        base = os.path.join(self.path, "images")
        names = sorted(os.listdir(base)) if os.path.isdir(base) else []
        return {fp: os.path.getmtime(self.image_path(fp)) for fp in names
                if self.image_ready(fp)}

    def image_ready(self, fingerprint: str) -> bool:
        return os.path.isdir(os.path.join(self.image_path(fingerprint), "rootfs"))

    @abc.abstractmethod
    async def create_image(self, fingerprint: str, unpack: Unpacker, idmap: IdMap) -> None:
        """Unpack an image once (shifted to idmap) so instances can clone it."""

    @abc.abstractmethod
    async def delete_image(self, fingerprint: str) -> None: ...

    # Instances ---------------------------------------------------------------
    @abc.abstractmethod
    async def create_instance(self, vol: str, fingerprint: str | None, idmap: IdMap,
                              default_idmap: IdMap) -> None:
        """New volume: a clone of the image volume (or empty when fingerprint is None)."""

    @abc.abstractmethod
    async def mount(self, vol: str) -> str:
        """Make rootfs usable (idempotent) and return its path."""

    async def unmount(self, vol: str) -> None:
        return None

    @abc.abstractmethod
    async def delete_instance(self, vol: str) -> None: ...

    async def rename_instance(self, old: str, new: str) -> None:
        await self.unmount(old)
        os.rename(self.instance_path(old), self.instance_path(new))
        if os.path.isdir(self.snapshot_path(old)):
            os.rename(self.snapshot_path(old), self.snapshot_path(new))

    def volume_source(self, vol: str, snapshot: str | None) -> str:
        """Directory a copy reads from: the volume itself or one of its snapshots."""
        return self.snapshot_path(vol, snapshot) if snapshot else self.instance_path(vol)

    def new_volume_dir(self, vol: str) -> str:
        path = self.instance_path(vol)
        os.makedirs(path, mode=VOLUME_MODE)
        os.chmod(path, VOLUME_MODE)
        return path

    def new_snapshot_dir(self, vol: str, snap: str) -> str:
        """A snapshot's directory, in its instance's 0700 snapshot directory."""
        parent = self.snapshot_path(vol)
        os.makedirs(parent, mode=0o700, exist_ok=True)
        target = self.snapshot_path(vol, snap)
        os.mkdir(target, VOLUME_MODE)
        return target

    @abc.abstractmethod
    async def copy_instance(self, src: str, dst: str, src_snapshot: str | None = None) -> None:
        """dst becomes an independent copy of src (or of one of src's snapshots)."""

    @abc.abstractmethod
    async def shift_instance(self, vol: str, src: IdMap, dst: IdMap) -> None: ...

    # Snapshots -----------------------------------------------------------------
    @abc.abstractmethod
    async def create_snapshot(self, vol: str, snap: str) -> None: ...

    # A restore in three steps, so that a crash at any point leaves either the old
    # volume or the restored one, never a mix (Snapshots.restore records the token
    # in the database between the steps and rolls forward at start):
    @abc.abstractmethod
    async def prepare_restore(self, vol: str, snap: str) -> str:
        """Build the restored volume beside the current one; returns its identity token."""

    @abc.abstractmethod
    async def commit_restore(self, vol: str) -> None:
        """Swap the prepared volume in, atomically (renameat2 RENAME_EXCHANGE)."""

    @abc.abstractmethod
    def restore_committed(self, vol: str, token: str) -> bool:
        """Whether the swap of the volume prepared with token happened."""

    @abc.abstractmethod
    async def finish_restore(self, vol: str, snap: str) -> None:
        """What follows the swap and may be redone: leftovers, metadata, size."""

    @abc.abstractmethod
    def restore_staging(self, vol: str) -> str:
        """Where prepare_restore builds the volume (and the old one lands after the swap)."""

    async def abandon_restore(self, vol: str) -> None:
        """A prepared volume never swapped in."""
        await self.remove_dir(self.restore_staging(vol))

    async def restore_snapshot(self, vol: str, snap: str) -> None:
        await self.prepare_restore(vol, snap)
        await self.commit_restore(vol)
        await self.finish_restore(vol, snap)

    @abc.abstractmethod
    async def delete_snapshot(self, vol: str, snap: str) -> None: ...

    async def rename_snapshot(self, vol: str, old: str, new: str) -> None:
        os.rename(self.snapshot_path(vol, old), self.snapshot_path(vol, new))

    @abc.abstractmethod
    async def mount_snapshot(self, vol: str, snap: str) -> str:
        """A read-only view of the snapshot's root filesystem."""

    async def unmount_snapshot(self, vol: str, snap: str) -> None:
        return None

    # Quota and usage -----------------------------------------------------------
    async def set_size(self, vol: str, size: int | None) -> bool:
        """Apply a root disk size; returns whether it is enforced."""
        return False

    async def usage(self, vol: str) -> int:
        return await du(self.instance_path(vol))

    # Custom volumes (plain directories unless the driver has better) ----------------
    def custom_snapshot_path(self, vol: str, snap: str | None = None) -> str:
        base = os.path.join(self.path, "custom-snapshots", vol)
        return os.path.join(base, snap) if snap else base

    async def create_custom(self, vol: str, idmap: IdMap) -> None:
        """An empty custom volume owned by the id map's root."""
        path = self.custom_path(vol)
        os.makedirs(path)
        os.chown(path, idmap.base, idmap.base)

    async def delete_custom(self, vol: str) -> None:
        await remove_tree(self.custom_path(vol))

    async def set_custom_size(self, vol: str, size: int | None) -> bool:
        """Cap a custom volume; returns whether the cap is enforced."""
        return False

    async def custom_usage(self, vol: str) -> int:
        return await du(self.custom_path(vol))

    async def snapshot_custom(self, vol: str, snap: str) -> None:
        """A read-only (where the driver can) copy of the volume as it is now."""
        await proc.run(["cp", "-a", "--reflink=auto", "--", self.custom_path(vol),
                        self.custom_snapshot_path(vol, snap)])

    async def delete_custom_snapshot(self, vol: str, snap: str) -> None:
        await self.remove_dir(self.custom_snapshot_path(vol, snap))

    async def restore_custom(self, vol: str, snap: str) -> None:
        """Copy a snapshot back in place: a volume bind-mounted into a running
        instance stays the same mount."""
        await proc.run(["rsync", "-aHAX", "--checksum", "--numeric-ids", "--delete",
                        self.custom_snapshot_path(vol, snap) + "/",
                        self.custom_path(vol) + "/"])


async def du(path: str) -> int:
    """Bytes used under path (one filesystem), 0 when unknown."""
    _rc, out, _ = await proc.run(["du", "-sxb", path], check=False)
    try:
        return int(out.split()[0])
    except (IndexError, ValueError):
        return 0


_RENAME_EXCHANGE = 2
_libc = ctypes.CDLL(None, use_errno=True)


def exchange(a: str, b: str) -> None:
    """Swap two paths in one step (renameat2 RENAME_EXCHANGE): no moment without either."""
    at_fdcwd = -100
    if _libc.renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b),
                       _RENAME_EXCHANGE) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), a)


def sync_filesystem(path: str) -> None:
    """syncfs(2) of the filesystem holding path: what was written there is on disk."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        if _libc.syncfs(fd) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err), path)
    finally:
        os.close(fd)


async def copy_tree(src: str, dst: str) -> None:
    """Full copy keeping owners, modes, xattrs, hard links (reflinks where possible)."""
    await proc.run(["cp", "-a", "--reflink=auto", "--", src, dst])


async def remove_tree(path: str) -> None:
    if os.path.lexists(path):
        await proc.run(["rm", "-rf", "--one-file-system", "--", path])
