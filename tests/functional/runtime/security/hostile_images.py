"""Building hostile LXD images from the bundled busybox image, member by member.

Python's tarfile writes whatever member we describe (absolute names, `..`, links
out of the tree, device nodes, FIFOs, setuid files, huge pax headers), which GNU
tar would refuse to create from a real directory.
"""
from __future__ import annotations

import dataclasses
import gzip
import io
import os
import tarfile
import time

import yaml

from tests.functional.runtime.harness import BUSYBOX

_BASE: list[tuple[tarfile.TarInfo, bytes | None]] | None = None


def busybox_members() -> list[tuple[tarfile.TarInfo, bytes | None]]:
    global _BASE
    if _BASE is None:
        out = []
        with tarfile.open(BUSYBOX, "r:*") as tar:
            for m in tar:
                out.append((m, tar.extractfile(m).read() if m.isfile() else None))
        _BASE = out
    return list(_BASE)


def busybox_metadata() -> dict:
    for m, data in busybox_members():
        if m.name.lstrip("./") == "metadata.yaml":
            return yaml.safe_load(data)
    raise AssertionError("busybox image has no metadata.yaml")


def member(name: str, kind: bytes = tarfile.REGTYPE, data: bytes | None = None,
           mode: int = 0o644, linkname: str = "", dev: tuple[int, int] = (0, 0),
           pax: dict | None = None) -> tuple[tarfile.TarInfo, bytes | None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.mtime = int(time.time())
    info.linkname = linkname
    info.devmajor, info.devminor = dev
    if pax:
        info.pax_headers = dict(pax)
    if kind in (tarfile.REGTYPE, tarfile.AREGTYPE):
        data = data or b""
        info.size = len(data)
    return info, data


@dataclasses.dataclass
class Image:
    """A unified image: busybox's members, some replaced or added."""
    metadata: dict | bytes | None = None     # None: busybox's
    templates: dict[str, bytes] = dataclasses.field(default_factory=dict)
    extra: list = dataclasses.field(default_factory=list)
    drop: tuple[str, ...] = ()                # member names (normalised) to leave out

    def tarball(self) -> bytes:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
            meta = self.metadata if self.metadata is not None else busybox_metadata()
            if isinstance(meta, dict):
                meta = yaml.safe_dump(meta).encode()
            if "metadata.yaml" not in self.drop:
                info, data = member("metadata.yaml", data=meta)
                tar.addfile(info, io.BytesIO(data))
            for m, data in busybox_members():
                name = m.name.lstrip("./").rstrip("/")
                if name == "metadata.yaml" or name in self.drop or \
                        name.startswith("templates/") and name[10:] in self.templates:
                    continue
                tar.addfile(m, io.BytesIO(data) if data is not None else None)
            for name, data in self.templates.items():
                info, data = member(f"templates/{name}", data=data)
                tar.addfile(info, io.BytesIO(data))
            for info, data in self.extra:
                tar.addfile(info, io.BytesIO(data) if data is not None else None)
        return gzip.compress(buf.getvalue(), compresslevel=1)


def with_template(template_name: str, source: bytes | None = None,
                  target: str = "/etc/hostname", when=("create", "start")) -> Image:
    meta = busybox_metadata()
    meta["templates"] = {target: {"when": list(when), "template": template_name}}
    return Image(metadata=meta, templates={template_name: source} if source is not None
                 else {})


def raw_tar(members: list) -> bytes:
    """A tarball of just these members (split image rootfs and such)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return gzip.compress(buf.getvalue(), compresslevel=1)


def pool_images(lxd_dir: str, pool: str = "default") -> set[str]:
    path = os.path.join(lxd_dir, "storage-pools", pool, "images")
    return set(os.listdir(path)) if os.path.isdir(path) else set()
