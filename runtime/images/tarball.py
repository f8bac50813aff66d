"""Reading LXD image files: metadata.yaml from unified or split tarballs, unpacking.

An image is tenant input. Unpacking uses GNU tar (fast, xattrs, sparse files) but
never lets it read the archive: the file is decompressed by the matching tool,
every header is checked on its way through runtime.targuard (no absolute or `..`
names, nothing below a symlink, hard links only to earlier files, only
metadata.yaml/templates/rootfs at the top, entry and byte limits), device nodes
and FIFOs are removed once tar is done. A squashfs rootfs is listed first
(limits) and cleaned of special files after unsquashfs. Any failure leaves the
destination to the caller, which removes it whole.
"""
from __future__ import annotations

import asyncio
import dataclasses
import os
import stat
import tarfile

from runtime import proc, targuard
from runtime.errors import BadRequest, CommandFailed
from runtime.images import metadata

SQUASHFS_MAGIC = b"hsqs"
_DECOMPRESSORS = ((b"\x1f\x8b", ["gzip", "-dc"]), (b"BZh", ["bzip2", "-dc"]),
                  (b"\xfd7zXZ\x00", ["xz", "-dc"]), (b"\x28\xb5\x2f\xfd", ["zstd", "-dcq"]),
                  (b"\x5d\x00\x00", ["xz", "--format=lzma", "-dc"]),
                  (b"\x89LZO", ["lzop", "-dc"]), (b"\x04\x22\x4d\x18", ["lz4", "-dc"]))
_UNIFIED_TOP = frozenset({"metadata.yaml", "templates", "rootfs"})


@dataclasses.dataclass
class Limits:
    """What one image may unpack to (a bomb stops here, not when the disk is full)."""
    max_bytes: int
    max_entries: int
    free_bound: bool = False    # a limit is the pool's free space (passing it: pool full)


def is_squashfs(path: str) -> bool:
    with open(path, "rb") as f:
        return f.read(4) == SQUASHFS_MAGIC


def decompressor(path: str) -> list[str] | None:
    """The command that decompresses the file to stdout (None: a plain tar)."""
    with open(path, "rb") as f:
        head = f.read(8)
    for magic, argv in _DECOMPRESSORS:
        if head.startswith(magic):
            return argv
    return None


def read_metadata(path: str) -> dict:
    """metadata.yaml of a unified tarball or split metadata tarball (checked)."""
    try:
        with tarfile.open(path, "r|*") as tar:
            for member in tar:
                name = member.name.lstrip("./")
                if name == "metadata.yaml" and member.isfile():
                    if member.size > metadata.MAX_BYTES:
                        raise BadRequest(f"Invalid metadata.yaml: larger than "
                                         f"{metadata.MAX_BYTES} bytes")
                    data = tar.extractfile(member).read()
                    break
            else:
                raise BadRequest("Image has no metadata.yaml")
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise BadRequest(f"Image file is not a valid tarball: {exc}")
    return metadata.parse(data)


async def _guarded_untar(path: str, dest: str, policy: targuard.Policy) -> targuard.Result:
    """path (any compression) -> decompressor -> targuard -> `tar -x -C dest`."""
    guard = targuard.Guard(policy)
    dec_argv = decompressor(path)
    procs: list[asyncio.subprocess.Process] = []
    fds: list[int] = []
    try:
        r_tar, w_tar = os.pipe2(os.O_CLOEXEC)
        fds += [r_tar, w_tar]
        tar = await asyncio.create_subprocess_exec(
            "tar", "-x", "-f", "-", "-C", dest, "--numeric-owner", "--xattrs",
            "--xattrs-include=*", "--same-permissions", "--same-owner",
            stdin=r_tar, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
        procs.append(tar)
        errors = [asyncio.ensure_future(tar.stderr.read())]  # read now: a full pipe stalls tar
        if dec_argv:
            r_src, w_src = os.pipe2(os.O_CLOEXEC)
            fds += [r_src, w_src]
            dec = await asyncio.create_subprocess_exec(
                *dec_argv, path, stdin=asyncio.subprocess.DEVNULL, stdout=w_src,
                stderr=asyncio.subprocess.PIPE)
            procs.append(dec)
            errors.append(asyncio.ensure_future(dec.stderr.read()))
            os.close(w_src)
            fds.remove(w_src)
            src = r_src
        else:
            src = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            fds.append(src)
        os.close(r_tar)
        fds.remove(r_tar)

        def pump() -> targuard.Result:
            try:
                return guard.pump(src, w_tar)
            finally:
                os.close(w_tar)
                fds.remove(w_tar)
        try:
            result = await asyncio.to_thread(pump)
        except BrokenPipeError:
            result = None   # tar -x stopped reading: its own error says why
        err = (await errors[0]).decode(errors="replace").strip()
        if await tar.wait() != 0 or result is None:
            raise CommandFailed(f"Unpacking the {policy.what} failed: {err[-2000:]}")
        if dec_argv:
            derr = (await errors[1]).decode(errors="replace").strip()
            if await procs[1].wait() != 0:
                raise BadRequest(f"The {policy.what} is not a valid compressed file: "
                                 f"{derr[-500:]}")
        return result
    finally:
        for p in procs:
            if p.returncode is None:
                p.kill()
                await p.wait()
        for fd in fds:
            os.close(fd)


async def _unsquash(path: str, dest: str, limits: Limits) -> None:
    """A squashfs rootfs: sizes and entries checked from its listing, specials removed."""
    _rc, out, _ = await proc.run(["unsquashfs", "-lls", "-n", "-d", "", path])
    entries = total = 0
    for line in out.splitlines():
        fields = line.split(None, 5)
        if len(fields) < 6 or len(fields[0]) != 10:
            continue
        entries += 1
        if fields[0][0] == "-" and fields[2].isdigit():
            total += int(fields[2])
    if entries > limits.max_entries:
        raise targuard.TooLarge(f"Image has more than {limits.max_entries} entries")
    if total > limits.max_bytes:
        raise targuard.TooLarge(f"Image unpacks to more than {limits.max_bytes} bytes")
    await proc.run(["unsquashfs", "-f", "-n", "-d", dest, path])
    await asyncio.to_thread(_remove_specials, dest)


def _remove_specials(root: str) -> None:
    for dirpath, dirnames, filenames in os.walk(root):
        for name in filenames + dirnames:
            full = os.path.join(dirpath, name)
            mode = os.lstat(full).st_mode
            if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode) or stat.S_ISLNK(mode)):
                os.unlink(full)


async def unpack(image_file: str, rootfs_file: str | None, dest: str,
                 limits: Limits) -> targuard.Result:
    """Unpack into dest: metadata.yaml, templates/ and rootfs/ (special files dropped)."""
    os.makedirs(os.path.join(dest, "rootfs"), exist_ok=True)
    if rootfs_file is None:
        policy = targuard.Policy("image", limits.max_bytes, limits.max_entries,
                                 top_level=_UNIFIED_TOP,
                                 directories=frozenset({"templates", "rootfs"}),
                                 files=frozenset({"metadata.yaml"}))
        result = await _guarded_untar(image_file, dest, policy)
        await asyncio.to_thread(targuard.remove_dropped, dest, result.dropped)
        return result
    meta_policy = targuard.Policy("image metadata", metadata.MAX_BYTES * 64, 10000,
                                  top_level=frozenset({"metadata.yaml", "templates"}),
                                  directories=frozenset({"templates"}),
                                  files=frozenset({"metadata.yaml"}))
    result = await _guarded_untar(image_file, dest, meta_policy)
    await asyncio.to_thread(targuard.remove_dropped, dest, result.dropped)
    rootfs = os.path.join(dest, "rootfs")
    if is_squashfs(rootfs_file):
        await _unsquash(rootfs_file, rootfs, limits)
        return result
    policy = targuard.Policy("image", limits.max_bytes, limits.max_entries)
    result = await _guarded_untar(rootfs_file, rootfs, policy)
    await asyncio.to_thread(targuard.remove_dropped, rootfs, result.dropped)
    return result
