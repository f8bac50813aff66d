"""Make one device node for a container process, as that process would see the path.

`python -m runtime.instances.forkmknod PID PATH MODE DEV UID GID` joins PID's
mount namespace, takes its root (chroot) and working directory, makes the node
and gives it to UID:GID (the caller's host fsuid/fsgid). On failure it prints
the errno and exits 1, which becomes the caller's syscall result. A separate
process because setns(CLONE_NEWNS) needs a single-threaded caller.
"""
import ctypes
import os
import sys

CLONE_NEWNS = 0x00020000


def main(argv: list[str]) -> int:
    pid, path, mode, dev, uid, gid = argv[0], argv[1], *map(int, argv[2:6])
    libc = ctypes.CDLL(None, use_errno=True)
    try:
        ns = os.open(f"/proc/{pid}/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
        root = os.open(f"/proc/{pid}/root", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        cwd = os.open(f"/proc/{pid}/cwd", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        if libc.setns(ns, CLONE_NEWNS) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))
        os.fchdir(root)
        os.chroot(".")
        os.fchdir(cwd if not path.startswith("/") else root)
        os.mknod(path, mode, dev)
        os.lchown(path, uid, gid)
    except OSError as exc:
        print(exc.errno or 1)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
