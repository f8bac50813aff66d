"""Loop devices standing in for Cinder volumes (this kernel has no iSCSI, RBD or
device-mapper): a sparse file, its loop device, optionally an ext4 filesystem and a
root filesystem unpacked into it, owned as on any disk (root is uid 0). Always
detached and removed by cleanup(), also when a test fails."""
from __future__ import annotations

import os
import subprocess
import tarfile
import tempfile


class LoopDevice:
    def __init__(self, size_mb: int = 64, fs: str | None = "ext4",
                 rootfs_tarball: str | None = None, files: dict[str, bytes] | None = None):
        fd, self.backing = tempfile.mkstemp(prefix="nlx-loop-", suffix=".img", dir="/var/tmp")
        os.close(fd)
        self.path = ""
        try:
            os.truncate(self.backing, size_mb * 1024 * 1024)
            if fs:
                subprocess.run([f"mkfs.{fs}", "-q", self.backing], check=True)
            self.path = subprocess.run(["losetup", "--find", "--show", self.backing],
                                       check=True, capture_output=True,
                                       text=True).stdout.strip()
            if rootfs_tarball or files:
                with self.mounted() as root:
                    if rootfs_tarball:
                        _unpack_rootfs(rootfs_tarball, root)
                    for rel, data in (files or {}).items():
                        target = os.path.join(root, rel.lstrip("/"))
                        os.makedirs(os.path.dirname(target), exist_ok=True)
                        with open(target, "wb") as f:
                            f.write(data)
        except BaseException:
            self.cleanup()
            raise

    def mounted(self):
        """Context manager: the filesystem mounted on a temporary host directory."""
        loop = self

        class _Mounted:
            def __enter__(self):
                self.dir = tempfile.mkdtemp(prefix="nlx-loopmnt-", dir="/var/tmp")
                subprocess.run(["mount", loop.path, self.dir], check=True)
                return self.dir

            def __exit__(self, *exc):
                subprocess.run(["umount", self.dir], check=True)
                os.rmdir(self.dir)
        return _Mounted()

    def grow(self, size_mb: int) -> None:
        """What a back end does when Cinder extends the volume."""
        os.truncate(self.backing, size_mb * 1024 * 1024)
        subprocess.run(["losetup", "--set-capacity", self.path], check=True)

    def size(self) -> int:
        name = os.path.basename(self.path)
        with open(f"/sys/class/block/{name}/size") as f:
            return int(f.read()) * 512

    def cleanup(self) -> None:
        if self.path:
            subprocess.run(["losetup", "-d", self.path], check=False)
            self.path = ""
        if os.path.exists(self.backing):
            os.unlink(self.backing)


def _unpack_rootfs(tarball: str, root: str) -> None:
    """The rootfs/ of a unified image tarball into root, numeric owners kept."""
    with tarfile.open(tarball) as tar:
        members = []
        for member in tar:
            if member.name == "rootfs" or not member.name.startswith("rootfs/"):
                continue
            member.name = member.name[len("rootfs/"):]
            members.append(member)
        # our own image: trusted (filter= exists from Python 3.11.4 on)
        extra = {"filter": "fully_trusted"} if hasattr(tarfile, "fully_trusted_filter") else {}
        tar.extractall(root, members=members, numeric_owner=True, **extra)
