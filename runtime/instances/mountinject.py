"""Mount injection into a running container, run as a short-lived helper process.

`python -m runtime.instances.mountinject mount PID SOURCE TARGET [--ro] [--rbind]
[--owner UID:GID]` clones SOURCE as a detached mount tree in the host's mount
namespace (open_tree), then joins the container's mount namespace (setns, which
also makes the container's root our root) and attaches the tree at TARGET with
move_mount. TARGET is therefore resolved inside the container exactly as the
container sees it: its symlinks and `..` cannot lead back to the host, unlike
tricks through /proc/PID/root. `umount PID TARGET` detaches it again.

A separate process because setns(CLONE_NEWNS) needs a single-threaded caller
and must not change the daemon's own view of the filesystem.
"""
import argparse
import ctypes
import os
import sys

_libc = ctypes.CDLL(None, use_errno=True)
SYS_OPEN_TREE = 428
SYS_MOVE_MOUNT = 429
SYS_MOUNT_SETATTR = 442
AT_FDCWD = -100
AT_EMPTY_PATH = 0x1000
AT_RECURSIVE = 0x8000
OPEN_TREE_CLONE = 1
OPEN_TREE_CLOEXEC = os.O_CLOEXEC
MOVE_MOUNT_F_EMPTY_PATH = 0x4
MOUNT_ATTR_RDONLY = 0x1
CLONE_NEWNS = 0x00020000
MNT_DETACH = 2


class _MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]


def _check(ret: int, what: str) -> int:
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return ret


def _setns(pid: int) -> None:
    fd = os.open(f"/proc/{pid}/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
    try:
        _check(_libc.setns(fd, CLONE_NEWNS), "setns")
    finally:
        os.close(fd)
    os.chdir("/")


def _make_target(target: str, is_dir: bool, owner: tuple[int, int] | None) -> None:
    """Create the missing parts of TARGET as the container's root would.

    With the filesystem ids switched to the container root's host ids, the new
    entries are owned by it, and a filesystem mounted inside the container's
    user namespace (its /dev tmpfs) accepts them at all (EOVERFLOW otherwise).
    """
    if owner:
        _libc.setfsgid(owner[1])
        _libc.setfsuid(owner[0])
    try:
        parts = [p for p in target.split("/") if p]
        path = ""
        for i, part in enumerate(parts):
            path += "/" + part
            if os.path.lexists(path):
                continue
            if i == len(parts) - 1 and not is_dir:
                os.close(os.open(path, os.O_CREAT | os.O_WRONLY | os.O_NOFOLLOW, 0o644))
            else:
                os.mkdir(path, 0o755)
    finally:
        if owner:
            _libc.setfsuid(0)
            _libc.setfsgid(0)


def mount(pid: int, source: str, target: str, readonly: bool, recursive: bool,
          owner: tuple[int, int] | None) -> None:
    flags = OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | (AT_RECURSIVE if recursive else 0)
    tree = _check(_libc.syscall(SYS_OPEN_TREE, AT_FDCWD, source.encode(), flags), "open_tree")
    if readonly:
        attr = _MountAttr(MOUNT_ATTR_RDONLY, 0, 0, 0)
        _check(_libc.syscall(SYS_MOUNT_SETATTR, tree, b"", AT_EMPTY_PATH | AT_RECURSIVE,
                             ctypes.byref(attr), ctypes.sizeof(attr)), "mount_setattr")
    is_dir = os.path.isdir(source)
    _setns(pid)
    _make_target(target, is_dir, owner)
    if not os.path.exists(target):
        raise OSError(22, f"target {target} is a dangling symlink inside the container")
    _check(_libc.syscall(SYS_MOVE_MOUNT, tree, b"", AT_FDCWD, target.encode(),
                         MOVE_MOUNT_F_EMPTY_PATH), "move_mount")


def umount(pid: int, target: str, remove: bool) -> None:
    _setns(pid)
    _check(_libc.umount2(target.encode(), MNT_DETACH), "umount")
    if remove and not os.path.isdir(target):
        os.unlink(target)  # the placeholder a device node was bound over


def int_pair(text: str) -> tuple[int, int] | None:
    """"A:B" -> (A, B); "" -> None (helper options such as --owner)."""
    if not text:
        return None
    first, second = (int(x) for x in text.split(":"))
    return first, second


def run_helper(action) -> int:
    """A helper's exit status: 0, or 1 with the OSError's message on stderr."""
    try:
        action()
    except OSError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="mountinject")
    p.add_argument("action", choices=("mount", "umount"))
    p.add_argument("pid", type=int)
    p.add_argument("paths", nargs="+")
    p.add_argument("--ro", action="store_true")
    p.add_argument("--rbind", action="store_true")
    p.add_argument("--owner", default="")
    p.add_argument("--remove", action="store_true")
    args = p.parse_args(argv)
    if args.action == "mount":
        return run_helper(lambda: mount(args.pid, args.paths[0],
                                        "/" + args.paths[1].lstrip("/"), args.ro,
                                        args.rbind, int_pair(args.owner)))
    return run_helper(lambda: umount(args.pid, "/" + args.paths[0].lstrip("/"), args.remove))


if __name__ == "__main__":
    sys.exit(main())
