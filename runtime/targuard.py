"""A checkpoint between a tar stream someone else made and the `tar -x` that unpacks it.

Images (Glance, image servers) and migration streams (a peer host) are unpacked
by GNU tar, which is fast and keeps xattrs and sparse files, but trusts its
input more than we may. So GNU tar never reads such a stream itself: a thread
reads it, parses every header with Python's tarfile as it passes, and forwards
to `tar -x` only members it has checked, then the end-of-archive blocks.
Nothing after a header tarfile could not parse reaches GNU tar (which would skip
to the next header and go on).

A member is refused (the whole unpack fails; callers remove what was made) when
its name is absolute, has a `..`, has a control character, lies outside the
expected top-level entries, or lies below a symlink of the archive; when it is a
hard link to anything but an earlier regular file of the archive; when the
entries or bytes pass the limits (size and inode bombs); when a header is larger
than a few MiB. Device nodes and FIFOs are either allowed (policy) or dropped:
their names are returned, and the caller removes them once tar is done.
"""
from __future__ import annotations

import dataclasses
import os
import tarfile

from runtime.errors import BadRequest

CHUNK = 1024 * 1024
MAX_HEADER_BYTES = 8 * 1024 * 1024   # pax / GNU long-name headers are held in memory
_END = bytes(1024)                    # two zero blocks: end of archive


class UnsafeArchive(BadRequest):
    """The archive can't be unpacked safely (or passes a limit)."""


class TooLarge(UnsafeArchive):
    """The archive passes its size or entry limit (where that limit is the free
    space, the caller answers "pool full" instead)."""


@dataclasses.dataclass
class Policy:
    what: str                                  # "image", "migration stream": for messages
    max_bytes: int
    max_entries: int
    top_level: frozenset[str] | None = None    # allowed first components (None: any)
    directories: frozenset[str] = frozenset()  # names that must be directories
    files: frozenset[str] = frozenset()        # names that must be regular files
    fifos: str = "drop"                        # "keep" or "drop"
    devices: frozenset[tuple[str, int, int]] | None = frozenset()  # kept; None: keep all


@dataclasses.dataclass
class Result:
    entries: int = 0
    bytes: int = 0
    dropped: list[str] = dataclasses.field(default_factory=list)


class _Tee:
    """The stream as tarfile reads it; forwards to dst only up to `allowed`."""

    def __init__(self, src: int, dst: int):
        self.src, self.dst = src, dst
        self.pos = self.sent = self.allowed = 0
        self.pending = bytearray()

    def read(self, n: int = -1) -> bytes:
        data = os.read(self.src, max(n, CHUNK) if n and n > 0 else CHUNK)
        self.pending += data
        self.pos += len(data)
        if self.pos - max(self.allowed, self.sent) > MAX_HEADER_BYTES + 2 * CHUNK:
            raise UnsafeArchive(f"a tar header larger than {MAX_HEADER_BYTES} bytes")
        self._flush()
        return data

    def allow(self, upto: int) -> None:
        self.allowed = max(self.allowed, upto)
        self._flush()

    def _flush(self) -> None:
        n = min(self.allowed, self.pos) - self.sent
        if n <= 0:
            return
        view = memoryview(self.pending)[:n]
        while view:
            view = view[os.write(self.dst, view):]
        view.release()
        del self.pending[:n]
        self.sent += n

    def finish(self) -> None:
        view = memoryview(_END)
        while view:
            view = view[os.write(self.dst, view):]


def _normal(name: str) -> str:
    parts = [p for p in name.split("/") if p not in ("", ".")]
    return "/".join(parts)


class Guard:
    def __init__(self, policy: Policy):
        self.p = policy
        self.result = Result()
        self.kinds: dict[str, str] = {}     # name -> "file", "dir", "symlink", "special"
        self.symlinks: set[str] = set()

    def _refuse(self, member: str, why: str) -> UnsafeArchive:
        return UnsafeArchive(f"Unsafe {self.p.what}: entry {member!r} {why}")

    def _check_name(self, raw: str) -> str:
        if raw.startswith("/"):
            raise self._refuse(raw, "has an absolute path")
        if any(ord(c) < 0x20 or c == "\x7f" for c in raw):
            raise self._refuse(raw, "has a control character in its name")
        name = _normal(raw)
        if ".." in name.split("/"):
            raise self._refuse(raw, "leads out of the tree ('..')")
        if name and self.p.top_level is not None and \
                name.split("/", 1)[0] not in self.p.top_level:
            raise self._refuse(raw, f"is not one of {', '.join(sorted(self.p.top_level))}")
        parent = name
        while "/" in parent:
            parent = parent.rsplit("/", 1)[0]
            if parent in self.symlinks:
                raise self._refuse(raw, f"lies below the symlink {parent!r}")
        return name

    def check(self, m: tarfile.TarInfo) -> bool:
        """Whether the member is kept (False: extracted, then removed); raises if unsafe."""
        name = self._check_name(m.name)
        res = self.result
        res.entries += 1
        if res.entries > self.p.max_entries:
            raise TooLarge(f"{self.p.what.capitalize()} has more than "
                                f"{self.p.max_entries} entries")
        if not name:
            if not m.isdir():
                raise self._refuse(m.name, "(the root) is not a directory")
            return True
        if name in self.p.directories and not m.isdir():
            raise self._refuse(m.name, "must be a directory")
        if name in self.p.files and not m.isreg():
            raise self._refuse(m.name, "must be a regular file")
        self.symlinks.discard(name)
        keep = True
        if m.isreg():
            res.bytes += m.size
            kind = "file"
        elif m.isdir():
            kind = "dir"
        elif m.issym():
            kind = "symlink"
            self.symlinks.add(name)
        elif m.islnk():
            target = m.linkname
            tname = _normal(target)
            if target.startswith("/") or ".." in tname.split("/") or \
                    self.kinds.get(tname) != "file":
                raise self._refuse(m.name, f"is a hard link to {target!r}, which is not an "
                                           "earlier regular file of the archive")
            kind = "file"
        elif m.ischr() or m.isblk():
            dev = ("c" if m.ischr() else "b", m.devmajor, m.devminor)
            keep = self.p.devices is None or dev in self.p.devices
            kind = "special"
        elif m.isfifo():
            keep = self.p.fifos == "keep"
            kind = "special"
        else:
            raise self._refuse(m.name, f"has an unsupported type {m.type!r}")
        if res.bytes > self.p.max_bytes:
            raise TooLarge(f"{self.p.what.capitalize()} unpacks to more than "
                                f"{self.p.max_bytes} bytes")
        self.kinds[name] = kind if keep else "dropped"
        return keep

    def pump(self, src: int, dst: int) -> Result:
        """Read the tar stream from src, forward checked members to dst (blocking).

        dst is not closed here. Members dropped by policy are still forwarded (GNU
        tar can't skip by type); `result.dropped` lists them for removal.
        """
        tee = _Tee(src, dst)
        try:
            with tarfile.open(fileobj=tee, mode="r|") as tar:
                while True:
                    member = tar.next()
                    if member is None:
                        break
                    if not self.check(member):
                        self.result.dropped.append(_normal(member.name))
                    tee.allow(tar.offset)
        except tarfile.TarError as exc:
            raise UnsafeArchive(f"{self.p.what.capitalize()} is not a valid tar archive: {exc}")
        tee.finish()
        # A name dropped and later replaced by a kept member of the same name stays.
        self.result.dropped = [n for n in dict.fromkeys(self.result.dropped)
                               if self.kinds.get(n) == "dropped"]
        return self.result


def remove_dropped(root: str, names: list[str]) -> None:
    """Unlink dropped special files below root, never following a symlink on the way."""
    from runtime import safepath
    for name in names:
        parent, _, leaf = name.rpartition("/")
        try:
            dfd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
            try:
                pfd = safepath.openat2(dfd, parent or ".", os.O_PATH | os.O_DIRECTORY,
                                       resolve=safepath.BENEATH) if parent else os.dup(dfd)
            finally:
                os.close(dfd)
            try:
                os.unlink(leaf, dir_fd=pfd)
            finally:
                os.close(pfd)
        except FileNotFoundError:
            continue
