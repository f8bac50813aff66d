"""The storage driver interface and the pieces every backend shares."""
import abc
import os
import shutil
from collections.abc import Awaitable, Callable

from runtime import proc
from runtime.instances.idmap import IdMap

Unpacker = Callable[[str], Awaitable[None]]


def volume_name(project: str, name: str) -> str:
    """On-disk volume name: LXD's `<project>_<name>` outside the default project."""
    return name if project == "default" else f"{project}_{name}"


class PoolDriver(abc.ABC):
    driver = ""

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
        for sub in ("containers", "containers-snapshots", "images", "custom",
                    "custom-snapshots"):
            os.makedirs(os.path.join(self.path, sub), exist_ok=True)
        os.chmod(os.path.join(self.path, "containers"), 0o711)

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

    # Images ------------------------------------------------------------------
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
        os.makedirs(path)
        os.chmod(path, 0o711)
        return path

    @abc.abstractmethod
    async def copy_instance(self, src: str, dst: str, src_snapshot: str | None = None) -> None:
        """dst becomes an independent copy of src (or of one of src's snapshots)."""

    @abc.abstractmethod
    async def shift_instance(self, vol: str, src: IdMap, dst: IdMap) -> None: ...

    # Snapshots -----------------------------------------------------------------
    @abc.abstractmethod
    async def create_snapshot(self, vol: str, snap: str) -> None: ...

    @abc.abstractmethod
    async def restore_snapshot(self, vol: str, snap: str) -> None: ...

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
        _rc, out, _ = await proc.run(["du", "-sxb", self.instance_path(vol)], check=False)
        try:
            return int(out.split()[0])
        except (IndexError, ValueError):
            return 0


async def copy_tree(src: str, dst: str) -> None:
    """Full copy keeping owners, modes, xattrs, hard links (reflinks where possible)."""
    await proc.run(["cp", "-a", "--reflink=auto", "--", src, dst])


async def remove_tree(path: str) -> None:
    if os.path.lexists(path):
        await proc.run(["rm", "-rf", "--one-file-system", "--", path])
