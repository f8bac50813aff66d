"""Mount a block device's filesystem for a container, shifted to its id map.

`python -m runtime.instances.blockmount mount DEVICE TARGET [--idmap BASE:SIZE] [--ro]`
mounts the filesystem on DEVICE (type found by mount(8)) on a private staging
point, clones it as a detached tree (open_tree), makes that tree an idmapped
mount (mount_setattr MOUNT_ATTR_IDMAP) whose uid/gid 0 is the container root's
host id BASE, attaches it at TARGET (move_mount) and drops the staging mount.
`umount TARGET` detaches it again.

Why idmapped: a volume's files are owned as on any disk (root is 0), so the
same volume is root's in a container, in a VM or on another host with another
id range, without rewriting owners. A separate process because making the user
namespace that carries the map needs fork/unshare, which the daemon's threads
and event loop must not do.
"""
import argparse
import ctypes
import os
import signal
import subprocess
import sys
import tempfile

from runtime.instances.mountinject import (AT_EMPTY_PATH, AT_FDCWD, MNT_DETACH,
                                           MOUNT_ATTR_RDONLY, MOVE_MOUNT_F_EMPTY_PATH,
                                           OPEN_TREE_CLOEXEC, OPEN_TREE_CLONE,
                                           SYS_MOUNT_SETATTR, SYS_MOVE_MOUNT, SYS_OPEN_TREE,
                                           _check, _libc, _MountAttr, int_pair, run_helper)

CLONE_NEWUSER = 0x10000000
MOUNT_ATTR_IDMAP = 0x00100000


def userns_fd(base: int, size: int) -> int:
    """An fd of a user namespace mapping 0..size-1 to base..base+size-1 (uid and gid)."""
    ready_r, ready_w = os.pipe()
    hold_r, hold_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: enter a new user namespace and wait to be mapped
        try:
            os.close(ready_r)
            os.close(hold_w)
            ok = _libc.unshare(CLONE_NEWUSER) == 0
            os.write(ready_w, b"1" if ok else b"0")
            os.read(hold_r, 1)
        finally:
            os._exit(0)
    os.close(ready_w)
    os.close(hold_r)
    try:
        if os.read(ready_r, 1) != b"1":
            raise OSError("unshare(CLONE_NEWUSER) failed")
        for name in ("uid_map", "gid_map"):
            with open(f"/proc/{pid}/{name}", "w") as f:
                f.write(f"0 {base} {size}\n")
        return os.open(f"/proc/{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
    finally:
        os.close(ready_r)
        os.close(hold_w)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        os.waitpid(pid, 0)


def mount(device: str, target: str, idmap: tuple[int, int] | None, readonly: bool) -> None:
    os.makedirs(target, mode=0o755, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".blockmount-", dir=os.path.dirname(target))
    try:
        opts = ["-o", "ro"] if readonly else []
        result = subprocess.run(["mount", *opts, "--", device, staging], capture_output=True,
                                text=True)
        if result.returncode != 0:
            raise OSError(22, f"cannot mount {device}: {result.stderr.strip() or 'failed'}"
                          " (no filesystem this host can mount?)")
        try:
            tree = _check(_libc.syscall(SYS_OPEN_TREE, AT_FDCWD, staging.encode(),
                                        OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC), "open_tree")
            attrs = MOUNT_ATTR_RDONLY if readonly else 0
            ns = -1
            if idmap:
                ns = userns_fd(*idmap)
                attrs |= MOUNT_ATTR_IDMAP
            try:
                if attrs:
                    attr = _MountAttr(attrs, 0, 0, max(ns, 0))
                    _check(_libc.syscall(SYS_MOUNT_SETATTR, tree, b"", AT_EMPTY_PATH,
                                         ctypes.byref(attr), ctypes.sizeof(attr)),
                           "mount_setattr (idmapped mount)")
                _check(_libc.syscall(SYS_MOVE_MOUNT, tree, b"", AT_FDCWD, target.encode(),
                                     MOVE_MOUNT_F_EMPTY_PATH), "move_mount")
            finally:
                if ns >= 0:
                    os.close(ns)
                os.close(tree)
        finally:
            _libc.umount2(staging.encode(), MNT_DETACH)
    finally:
        os.rmdir(staging)


def umount(target: str) -> None:
    if os.path.ismount(target):
        _check(_libc.umount2(target.encode(), MNT_DETACH), "umount")
    if os.path.isdir(target):
        os.rmdir(target)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="blockmount")
    p.add_argument("action", choices=("mount", "umount"))
    p.add_argument("paths", nargs="+")
    p.add_argument("--idmap", default="")
    p.add_argument("--ro", action="store_true")
    args = p.parse_args(argv)
    if args.action == "mount":
        return run_helper(lambda: mount(args.paths[0], args.paths[1], int_pair(args.idmap),
                                        args.ro))
    return run_helper(lambda: umount(args.paths[0]))


if __name__ == "__main__":
    sys.exit(main())
