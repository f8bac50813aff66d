"""Reading LXD image files: metadata.yaml from unified or split tarballs, unpacking.

Unpacking uses GNU tar (fast, knows every compression, xattrs, devices); only
the small metadata.yaml is read in Python, stopping as soon as it is found.
"""
import os
import tarfile

import yaml

from runtime import proc
from runtime.errors import BadRequest

SQUASHFS_MAGIC = b"hsqs"


def is_squashfs(path: str) -> bool:
    with open(path, "rb") as f:
        return f.read(4) == SQUASHFS_MAGIC


def read_metadata(path: str) -> dict:
    """metadata.yaml of a unified tarball or split metadata tarball."""
    try:
        with tarfile.open(path, "r|*") as tar:
            for member in tar:
                name = member.name.lstrip("./")
                if name == "metadata.yaml" and member.isfile():
                    data = tar.extractfile(member).read()
                    break
            else:
                raise BadRequest("Image has no metadata.yaml")
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise BadRequest(f"Image file is not a valid tarball: {exc}")
    try:
        meta = yaml.safe_load(data) or {}
    except yaml.YAMLError as exc:
        raise BadRequest(f"Invalid metadata.yaml: {exc}")
    if not isinstance(meta, dict):
        raise BadRequest("Invalid metadata.yaml: not a mapping")
    return meta


async def _untar(path: str, dest: str, *members: str, strip: int = 0) -> None:
    argv = ["tar", "-xf", path, "-C", dest, "--numeric-owner", "--xattrs",
            "--xattrs-include=*", "--same-permissions", "--same-owner"]
    if strip:
        argv.append(f"--strip-components={strip}")
    argv += list(members)
    await proc.run(argv)


async def unpack(image_file: str, rootfs_file: str | None, dest: str) -> None:
    """Unpack into dest: metadata.yaml, templates/ and rootfs/."""
    os.makedirs(os.path.join(dest, "rootfs"), exist_ok=True)
    if rootfs_file is None:
        await _untar(image_file, dest)
        return
    await _untar(image_file, dest)
    if is_squashfs(rootfs_file):
        await proc.run(["unsquashfs", "-f", "-n", "-d", os.path.join(dest, "rootfs"),
                        rootfs_file])
    else:
        await _untar(rootfs_file, os.path.join(dest, "rootfs"))
