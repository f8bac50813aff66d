"""File access inside an instance, resolved as the container itself sees paths.

Every path is opened with openat2(RESOLVE_IN_ROOT) against the container's root
(its init's /proc/<pid>/root when running, so its own mounts count; the rootfs
when stopped): `..` and symlinks, absolute or relative, in any component, stay
inside that root and never reach host files. Only regular files are opened for
reading or writing (runtime.safepath): a FIFO or a device node in the image is
refused, never opened.
"""
import errno
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager

from runtime import safepath
from runtime.errors import BadRequest, Forbidden, NotFound
from runtime.safepath import openat2


def _check_path(path: str | None) -> str:
    """The path as the container sees it: a relative one is relative to `/`, as in
    LXD (the stock `lxc file pull c1/root/p` sends `root/p`). Resolution stays
    openat2's job, so `..` and symlinks can't leave the root either way."""
    if not path or not isinstance(path, str) or "\x00" in path:
        raise BadRequest("Missing or invalid 'path' query parameter")
    return path if path.startswith("/") else "/" + path


def _oserror(exc: OSError, path: str):
    if exc.errno in (errno.ENOENT, errno.ENOTDIR):
        return NotFound(f"Path {path!r} not found in the instance")
    if exc.errno in (errno.EXDEV, errno.ELOOP):
        return Forbidden(f"Path {path!r} escapes the instance root")
    if exc.errno == errno.EISDIR:
        return BadRequest(f"Path {path!r} is a directory")
    if exc.errno == errno.EEXIST:
        return BadRequest(f"Path {path!r} already exists")
    if exc.errno == errno.ENOTEMPTY:
        return BadRequest(f"Directory {path!r} is not empty")
    if isinstance(exc, safepath.NotRegularFile):
        return BadRequest(f"Path {path!r} is a {exc.kind}: only regular files, directories "
                          "and symlinks can be read or written")
    return BadRequest(f"{path}: {exc.strerror}")


class InstanceFS:
    """File operations below one container root directory fd."""

    def __init__(self, root: str, to_host, to_container):
        self.root = root
        self.to_host = to_host            # container id -> host id
        self.to_container = to_container  # host id -> container id

    @contextmanager
    def _rootfd(self) -> Iterator[int]:
        fd = os.open(self.root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            yield fd
        finally:
            os.close(fd)

    @contextmanager
    def _parent(self, path: str) -> Iterator[tuple[int, str]]:
        parent, name = os.path.split(path.rstrip("/") or "/")
        if not name or name in (".", ".."):
            raise BadRequest(f"Invalid path {path!r}")
        with self._rootfd() as root:
            try:
                pfd = openat2(root, parent, os.O_PATH | os.O_DIRECTORY)
            except OSError as exc:
                raise _oserror(exc, path)
        try:
            yield pfd, name
        finally:
            os.close(pfd)

    def stat(self, path: str) -> dict:
        """lstat of the final component (symlinks reported as symlinks)."""
        path = _check_path(path)
        if path.rstrip("/") == "":
            with self._rootfd() as root:
                st = os.fstat(root)
            return self._describe(st, "/", None)
        with self._parent(path) as (pfd, name):
            try:
                st = os.stat(name, dir_fd=pfd, follow_symlinks=False)
            except OSError as exc:
                raise _oserror(exc, path)
            target = os.readlink(name, dir_fd=pfd) if stat.S_ISLNK(st.st_mode) else None
        return self._describe(st, path, target)

    def _describe(self, st: os.stat_result, path: str, target: str | None) -> dict:
        kind = ("symlink" if stat.S_ISLNK(st.st_mode) else
                "directory" if stat.S_ISDIR(st.st_mode) else
                "file" if stat.S_ISREG(st.st_mode) else safepath.kind(st.st_mode))
        return {"type": kind, "uid": self.to_container(st.st_uid),
                "gid": self.to_container(st.st_gid), "mode": stat.S_IMODE(st.st_mode),
                "size": st.st_size, "target": target, "path": path}

    def listdir(self, path: str) -> list[str]:
        path = _check_path(path)
        with self._rootfd() as root:
            try:
                fd = openat2(root, path, os.O_RDONLY | os.O_DIRECTORY |
                             os.O_NONBLOCK)
            except OSError as exc:
                raise _oserror(exc, path)
        try:
            return sorted(os.listdir(fd))
        finally:
            os.close(fd)

    def open_read(self, path: str) -> int:
        """A regular file only: FIFOs, sockets and device nodes are never opened."""
        path = _check_path(path)
        with self._rootfd() as root:
            try:
                return safepath.open_regular(root, path, os.O_RDONLY,
                                             follow=False)
            except OSError as exc:
                raise _oserror(exc, path)

    def open_write(self, path: str, uid: int | None, gid: int | None, mode: int | None,
                   append: bool) -> int:
        """An existing regular file (symlinks followed inside the root) or a new one.

        A new file without X-LXD-uid/gid belongs to the container's root, as in LXD
        (not to the host's root: that is nobody inside an unprivileged container);
        an existing one keeps its owner unless the headers say otherwise.
        """
        flags = os.O_WRONLY | (os.O_APPEND if append else os.O_TRUNC)
        with self._rootfd() as root:
            try:
                fd, created = safepath.open_or_create_regular_created(
                    root, _check_path(path), flags, mode if mode is not None else 0o644)
            except OSError as exc:
                raise _oserror(exc, path)
        try:
            st = os.fstat(fd)
            self._own(fd, st, *self._new_owner(uid, gid, created), mode)
        except BaseException:
            os.close(fd)
            raise
        return fd

    @staticmethod
    def _new_owner(uid: int | None, gid: int | None, created: bool) -> tuple:
        """Owner headers for something the API made: unset means container root."""
        if not created:
            return uid, gid
        return (0 if uid is None else uid), (0 if gid is None else gid)

    def _own(self, fd: int, st: os.stat_result, uid, gid, mode) -> None:
        try:
            huid = self.to_host(uid) if uid is not None else st.st_uid
            hgid = self.to_host(gid) if gid is not None else st.st_gid
        except ValueError as exc:
            raise BadRequest(str(exc))
        if (huid, hgid) != (st.st_uid, st.st_gid):
            os.fchown(fd, huid, hgid)
        if mode is not None:
            os.fchmod(fd, mode)

    def mkdir(self, path: str, uid, gid, mode) -> None:
        """A directory (already there: fine); a new one belongs to container root
        unless the headers say otherwise (`lxc file push -p` makes missing parents
        this way, without owner headers)."""
        path = _check_path(path)
        with self._parent(path) as (pfd, name):
            created = False
            try:
                os.mkdir(name, mode if mode is not None else 0o755, dir_fd=pfd)
                created = True
            except FileExistsError:
                st = os.stat(name, dir_fd=pfd, follow_symlinks=False)
                if not stat.S_ISDIR(st.st_mode):
                    raise BadRequest(f"Path {path!r} exists and is not a directory")
            except OSError as exc:
                raise _oserror(exc, path)
            fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_NONBLOCK,
                         dir_fd=pfd)
            try:
                self._own(fd, os.fstat(fd), *self._new_owner(uid, gid, created), mode)
            finally:
                os.close(fd)

    def symlink(self, path: str, target: str, uid, gid) -> None:
        path = _check_path(path)
        with self._parent(path) as (pfd, name):
            try:
                os.symlink(target, name, dir_fd=pfd)
                huid = self.to_host(uid or 0)
                hgid = self.to_host(gid or 0)
                os.chown(name, huid, hgid, dir_fd=pfd, follow_symlinks=False)
            except OSError as exc:
                raise _oserror(exc, path)
            except ValueError as exc:
                raise BadRequest(str(exc))

    def delete(self, path: str) -> None:
        path = _check_path(path)
        with self._parent(path) as (pfd, name):
            try:
                st = os.stat(name, dir_fd=pfd, follow_symlinks=False)
                if stat.S_ISDIR(st.st_mode):
                    os.rmdir(name, dir_fd=pfd)
                else:
                    os.unlink(name, dir_fd=pfd)
            except OSError as exc:
                raise _oserror(exc, path)
