"""Opening paths in trees that someone else controls: containers, images, peers' streams.

Every tree the daemon reads or writes on a tenant's behalf (a container's root, an
image's `templates/`, a volume received from a migration peer) may hold symlinks,
`..` tricks, FIFOs that block an open forever and device nodes whose open touches
host hardware. Two rules, kept here so every caller gets them the same way:

- resolution is done by the kernel with openat2(2): `RESOLVE_IN_ROOT` (a container's
  root: `..` and absolute symlinks stay inside it, as the container sees paths) or
  `RESOLVE_BENEATH` with `RESOLVE_NO_SYMLINKS` (a directory of ours whose content
  is not: nothing may lead out of it at all);
- a file is opened for reading or writing only once it is known to be a regular
  file: first an `O_PATH` descriptor (opening it has no side effect on FIFOs or
  devices), fstat, then a reopen of that very inode through /proc/self/fd.
"""
from __future__ import annotations

import ctypes
import errno
import os
import stat

_SYS_OPENAT2 = 437
RESOLVE_NO_XDEV = 0x01
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_BENEATH = 0x08
RESOLVE_IN_ROOT = 0x10
IN_ROOT = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS
BENEATH = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV
_libc = ctypes.CDLL(None, use_errno=True)


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64),
                ("resolve", ctypes.c_uint64)]


class NotRegularFile(OSError):
    """The path names something other than a regular file (kind says what)."""

    def __init__(self, path: str, kind: str):
        super().__init__(errno.EINVAL, f"{path!r} is a {kind}, not a regular file", path)
        self.kind = kind


def openat2(dirfd: int, path: str, flags: int, mode: int = 0,
            resolve: int = IN_ROOT) -> int:
    """openat2(2); raises OSError like os.open."""
    how = _OpenHow(flags | os.O_CLOEXEC, mode if flags & os.O_CREAT else 0, resolve)
    fd = _libc.syscall(_SYS_OPENAT2, dirfd, os.fsencode(path), ctypes.byref(how),
                       ctypes.sizeof(how))
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), path)
    return fd


def kind(mode: int) -> str:
    """What an st_mode names, in the words an error message needs."""
    for test, name in ((stat.S_ISREG, "regular file"), (stat.S_ISDIR, "directory"),
                       (stat.S_ISLNK, "symlink"), (stat.S_ISFIFO, "fifo"),
                       (stat.S_ISSOCK, "socket"), (stat.S_ISCHR, "character device"),
                       (stat.S_ISBLK, "block device")):
        if test(mode):
            return name
    return "special file"


def reopen(fd: int, flags: int) -> int:
    """A new open file description of the inode an O_PATH fd refers to."""
    return os.open(f"/proc/self/fd/{fd}", flags | os.O_CLOEXEC | os.O_NOCTTY)


def open_regular(dirfd: int, path: str, flags: int, resolve: int = IN_ROOT,
                 follow: bool = True) -> int:
    """Open an existing regular file below dirfd without ever opening anything else.

    A FIFO, socket or device node raises NotRegularFile before any open(2) of it
    (which could block the caller forever or act on host hardware).
    """
    probe = openat2(dirfd, path, os.O_PATH | (0 if follow else os.O_NOFOLLOW),
                    resolve=resolve)
    try:
        st = os.fstat(probe)
        if not stat.S_ISREG(st.st_mode):
            raise NotRegularFile(path, kind(st.st_mode))
        return reopen(probe, flags & ~(os.O_CREAT | os.O_EXCL))
    finally:
        os.close(probe)


def open_or_create_regular(dirfd: int, path: str, flags: int, mode: int,
                           resolve: int = IN_ROOT) -> int:
    """open_regular, or create the file (O_EXCL) when it does not exist yet."""
    return open_or_create_regular_created(dirfd, path, flags, mode, resolve)[0]


def open_or_create_regular_created(dirfd: int, path: str, flags: int, mode: int,
                                   resolve: int = IN_ROOT) -> tuple[int, bool]:
    """open_or_create_regular, and whether this call made the file (a new file may
    need an owner of its own).

    The create never follows a symlink or opens an existing special file: a race
    that puts one there makes O_EXCL fail, and the loop looks again.
    """
    for _ in range(4):
        try:
            fd = open_regular(dirfd, path, flags, resolve)
            return fd, False
        except FileNotFoundError:
            pass
        try:
            fd = openat2(dirfd, path, flags | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW,
                         mode, resolve)
            return fd, True
        except FileExistsError:
            continue  # appeared meanwhile (or a dangling symlink): look again
    raise OSError(errno.ELOOP, "the path keeps changing or is a dangling symlink", path)


def check_relative(name: str, what: str = "path") -> str:
    """A relative path with no `..`, no empty or absolute part and no control character."""
    if not isinstance(name, str) or not name or name.startswith("/") or \
            any(ord(c) < 0x20 or c == "\x7f" for c in name):
        raise ValueError(f"invalid {what} {name!r}: must be a relative path")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if not parts or ".." in parts:
        raise ValueError(f"invalid {what} {name!r}: must stay below its directory")
    return "/".join(parts)


def read_beneath(directory: str, name: str, limit: int) -> bytes:
    """The content of regular file `name` below `directory`, at most limit bytes.

    Nothing in `name` may lead out of `directory`: no `..`, no symlink at all, no
    other mount; the directory itself must not be a symlink either.
    """
    rel = check_relative(name, "file name")
    dfd = os.open(directory, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        fd = open_regular(dfd, rel, os.O_RDONLY | os.O_NONBLOCK, BENEATH, follow=False)
    finally:
        os.close(dfd)
    try:
        if os.fstat(fd).st_size > limit:
            raise ValueError(f"{name!r} is larger than {limit} bytes")
        data = bytearray()
        while chunk := os.read(fd, min(1 << 20, limit + 1 - len(data))):
            data += chunk
            if len(data) > limit:
                raise ValueError(f"{name!r} is larger than {limit} bytes")
        return bytes(data)
    finally:
        os.close(fd)


def read_regular(path: str, limit: int) -> bytes:
    """A file of ours whose content a tenant made (metadata.yaml): no symlink, regular."""
    return read_beneath(os.path.dirname(path), os.path.basename(path), limit)
