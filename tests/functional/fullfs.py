"""A small real filesystem to run out of space on: a loop-mounted ext4 without a
root reserve, filled to the last block by a file beside what the test puts there
(so "free" gives the space back at once). Shared by the runtime and nova tests."""
from __future__ import annotations

import contextlib
import errno
import os
import shutil
import subprocess
import tempfile

FILLER = ".filler"


@contextlib.contextmanager
def small_ext4(size_mb: int):
    """A loop-mounted ext4 of size_mb; unmounted (its loop device with it) and removed."""
    work = tempfile.mkdtemp(prefix="nlx-full-", dir="/var/tmp")
    os.chmod(work, 0o711)      # unprivileged containers' roots cross it
    image, mnt = os.path.join(work, "fs.img"), os.path.join(work, "mnt")
    os.mkdir(mnt)
    try:
        with open(image, "wb") as f:
            f.truncate(size_mb << 20)
        subprocess.run(["mkfs.ext4", "-q", "-F", "-m", "0", image], check=True)
        subprocess.run(["mount", "-o", "loop", image, mnt], check=True)
        os.chmod(mnt, 0o711)
        try:
            yield mnt
        finally:
            subprocess.run(["umount", mnt], check=False)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def fill(fs_dir: str) -> None:
    """Take every free block of the filesystem holding fs_dir."""
    path = os.path.join(fs_dir, FILLER)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        chunk = 1 << 20
        while chunk >= 4096:
            try:
                os.write(fd, b"\0" * chunk)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                chunk //= 2
        os.fsync(fd)
    finally:
        os.close(fd)
    st = os.statvfs(fs_dir)
    assert st.f_bavail * st.f_frsize < (1 << 20), "filesystem not full"


def free(fs_dir: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(os.path.join(fs_dir, FILLER))
    os.sync()
