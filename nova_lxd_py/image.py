"""Glance images to runtime images: downloaded once, deduplicated by sha256.

A runtime image is aliased by its Glance id, so the common path of a spawn is
one alias lookup. The first spawn of an image takes a per-image lock,
downloads it into ``[lxd] image_cache_dir``, turns it into what the LXD image
API accepts and imports it; concurrent spawns of the same image wait on the
lock and then find the alias.

Glance disk formats:
- ``raw``: a unified LXD image tarball (metadata.yaml + rootfs/), as made by
  ``lxc image export``; imported as is. Accepted for compatibility, but the
  driver does not advertise COMPUTE_IMAGE_TYPE_RAW (a raw VM disk can't boot a
  container), so with nova's image-type prefilter on such images are not
  scheduled here: prefer root-tar.
- ``root-tar``: a tarball of a root filesystem, or a unified tarball (as this
  driver's snapshots are uploaded). If it has metadata.yaml it is imported as
  is; otherwise a metadata tarball is generated and the image is imported split
  (metadata + rootfs).
- ``squashfs``: a squashfs root filesystem, imported split with generated
  metadata.
"""
from __future__ import annotations

import hashlib
import io
import os
import tarfile
import tempfile
import time
from typing import Any, BinaryIO

import yaml
from oslo_concurrency import lockutils
from oslo_log import log as logging
from oslo_utils import timeutils, uuidutils
from pylxd import exceptions as lxd_exceptions

from nova_lxd_py import exception
from nova_lxd_py.host import CONTAINER_TRAIT, HOST_ARCH

LOG = logging.getLogger(__name__)

SUPPORTED_FORMATS = ("raw", "root-tar", "squashfs")
CHUNK = 1024 * 1024

# nova/glance architecture names that differ from the runtime's (LXD) names.
ARCH_ALIASES = {"i386": "i686", "x86": "i686", "amd64": "x86_64", "arm64": "aarch64",
                "ppc64el": "ppc64le", "armhf": "armv7l"}


def runtime_arch(hw_architecture: str | None) -> str:
    """The architecture name for metadata.yaml: the image's or the host's."""
    arch = hw_architecture or HOST_ARCH
    return ARCH_ALIASES.get(arch, arch)


def metadata_yaml(image_id: str, name: str | None, arch: str,
                  created: int | None = None) -> str:
    """metadata.yaml for an image that came without one (root-tar, squashfs)."""
    doc = {
        "architecture": arch,
        "creation_date": int(created if created is not None else time.time()),
        "properties": {
            "description": f"{name or image_id} (Glance image {image_id})",
            "architecture": arch,
            "glance_id": image_id,
        },
        "templates": {},
    }
    return yaml.safe_dump(doc, sort_keys=True)


def metadata_tarball(metadata: str) -> bytes:
    """An uncompressed tar holding only metadata.yaml (deterministic)."""
    buf = io.BytesIO()
    data = metadata.encode()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        info = tarfile.TarInfo("metadata.yaml")
        info.size, info.mode, info.mtime = len(data), 0o644, 0
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def is_unified_tarball(path: str, scan: int = 64) -> bool:
    """True when the tarball carries metadata.yaml at its top level.

    Only the first *scan* members are read: LXD writes metadata.yaml first,
    and reading a whole compressed root filesystem just to look is costly.
    """
    try:
        with tarfile.open(path, "r:*") as tar:
            for index, member in enumerate(tar):
                if os.path.normpath(member.name) == "metadata.yaml":
                    return True
                if index >= scan:
                    break
        return False
    except tarfile.TarError as exc:
        raise ValueError(f"not a tar archive: {exc}") from exc


def sha256_of(*parts: bytes | str) -> str:
    """sha256 over byte strings and file paths in order, as LXD fingerprints
    a split image (metadata then rootfs) or a unified one."""
    digest = hashlib.sha256()
    for part in parts:
        if isinstance(part, bytes):
            digest.update(part)
            continue
        with open(part, "rb") as f:
            while chunk := f.read(CHUNK):
                digest.update(chunk)
    return digest.hexdigest()


def unused_aliases(aliases: list[dict], uploaded: dict[str, float], in_use: set[str],
                   min_age: float, now: float) -> list[str]:
    """Glance-id aliases whose image no instance on this host boots from and
    that were imported at least *min_age* seconds ago (nova's
    [image_cache] remove_unused_original_minimum_age_seconds)."""
    stale = []
    for alias in aliases:
        name = alias.get("name", "")
        if not uuidutils.is_uuid_like(name) or name in in_use:
            continue
        if now - uploaded.get(alias.get("target", ""), now) >= min_age:
            stale.append(name)
    return stale


def scheduling_properties() -> dict[str, str]:
    """Image properties that send an image to container hosts only: nova's
    ImagePropertiesFilter matches hypervisor_type/vm_mode against the hosts'
    supported instances (VM hosts don't offer lxd/exe), and placement requires the
    trait every host of this driver has. Operators set the same on their images."""
    return {"hypervisor_type": "lxd", "vm_mode": "exe",
            f"trait:{CONTAINER_TRAIT}": "required"}


def snapshot_image_meta(disk_format: str) -> dict[str, Any]:
    """Glance metadata of a snapshot (a unified tarball, valid as root-tar or raw)."""
    return {"disk_format": disk_format, "container_format": "bare",
            "properties": scheduling_properties()}


def image_property(image_meta: Any, name: str) -> Any:
    props = getattr(image_meta, "properties", None)
    if props is not None and props.obj_attr_is_set(name):
        return getattr(props, name)
    return None


class ImageStore:
    """Makes sure a Glance image exists in the runtime, once."""

    def __init__(self, clients, glance_api, cache_dir: str):
        self._clients = clients
        self._glance = glance_api
        self._cache_dir = cache_dir

    # -- lookups -------------------------------------------------------------
    def alias_target(self, alias: str) -> str | None:
        client = self._clients.get()
        try:
            response = client.api.images.aliases[alias].get()
        except lxd_exceptions.NotFound:
            return None
        return response.json()["metadata"]["target"]

    def _exists(self, fingerprint: str) -> bool:
        client = self._clients.get()
        try:
            client.api.images[fingerprint].get()
            return True
        except lxd_exceptions.NotFound:
            return False

    # -- the spawn path --------------------------------------------------------
    def ensure(self, context: Any, image_meta: Any) -> str:
        """Return the fingerprint of the runtime image for *image_meta*."""
        image_id = image_meta.id
        fingerprint = self.alias_target(image_id)
        if fingerprint:
            return fingerprint
        with lockutils.lock(f"nova-lxd-py-image-{image_id}"):
            fingerprint = self.alias_target(image_id)
            if fingerprint:
                return fingerprint
            disk_format = getattr(image_meta, "disk_format", None)
            if disk_format not in SUPPORTED_FORMATS:
                raise exception.UnsupportedImage(
                    image_id=image_id,
                    reason=f"disk_format {disk_format!r} is not one of "
                           f"{', '.join(SUPPORTED_FORMATS)}")
            os.makedirs(self._cache_dir, exist_ok=True)
            fd, path = tempfile.mkstemp(prefix=f"{image_id}.", dir=self._cache_dir)
            os.close(fd)
            try:
                start = time.monotonic()
                self._glance.download(context, image_id, dest_path=path)
                LOG.info("Downloaded image %s (%s, %d bytes) in %.2fs", image_id,
                         disk_format, os.path.getsize(path), time.monotonic() - start)
                fingerprint = self._import(image_meta, disk_format, path)
            finally:
                os.unlink(path)
            self.add_alias(image_id, fingerprint)
            return fingerprint

    def _import(self, image_meta: Any, disk_format: str, path: str) -> str:
        image_id = image_meta.id
        if os.path.getsize(path) == 0:
            raise exception.UnsupportedImage(image_id=image_id, reason="image has no data")
        metadata = None
        if disk_format in ("raw", "root-tar"):
            try:
                unified = is_unified_tarball(path)
            except ValueError as exc:
                raise exception.UnsupportedImage(image_id=image_id, reason=str(exc))
            if disk_format == "raw" and not unified:
                raise exception.UnsupportedImage(
                    image_id=image_id,
                    reason="a raw image must be a unified LXD image tarball "
                           "(metadata.yaml and rootfs/); upload a root "
                           "filesystem tarball as disk_format root-tar")
            if not unified:
                metadata = self._metadata_for(image_meta)
        else:  # squashfs
            metadata = self._metadata_for(image_meta)
        fingerprint = sha256_of(metadata, path) if metadata else sha256_of(path)
        if self._exists(fingerprint):
            return fingerprint
        with open(path, "rb") as rootfs:
            return self._upload(rootfs, metadata, image_id)

    def _metadata_for(self, image_meta: Any) -> bytes:
        arch = runtime_arch(image_property(image_meta, "hw_architecture"))
        return metadata_tarball(metadata_yaml(image_meta.id, getattr(image_meta, "name", None),
                                              arch))

    def _upload(self, data: BinaryIO, metadata: bytes | None, image_id: str) -> str:
        from pylxd.models.image import Image

        client = self._clients.get()
        try:
            image = Image.create(client, data, metadata=metadata)
        except lxd_exceptions.LXDAPIException as exc:
            raise exception.UnsupportedImage(image_id=image_id,
                                             reason=f"the runtime refused it: {exc}")
        return image.fingerprint

    def add_alias(self, alias: str, fingerprint: str) -> None:
        client = self._clients.get()
        try:
            client.api.images.aliases.post(json={
                "name": alias, "target": fingerprint,
                "description": "Glance image " + alias})
        except lxd_exceptions.LXDAPIException:
            # Already aliased (another worker won a race we don't lock
            # against, e.g. a second compute process on this runtime).
            if self.alias_target(alias) != fingerprint:
                raise

    # -- cache ---------------------------------------------------------------
    def prune(self, in_use: set[str], min_age: float) -> list[str]:
        """Forget images no instance uses any more (nova's image cache task)."""
        client = self._clients.get()
        aliases = client.api.images.aliases.get(params={"recursion": 1}).json()["metadata"]
        uploaded = {}
        for image in client.api.images.get(params={"recursion": 1}).json()["metadata"]:
            stamp = image.get("uploaded_at") or image.get("created_at")
            try:
                uploaded[image["fingerprint"]] = timeutils.parse_isotime(stamp).timestamp()
            except (ValueError, TypeError):
                continue
        stale = unused_aliases(aliases, uploaded, in_use, min_age, time.time())
        for alias in stale:
            LOG.info("Removing unused cached image %s", alias)
            self.forget(alias)
        return stale

    # -- snapshots -----------------------------------------------------------
    def forget(self, alias: str) -> None:
        """Drop an alias and its image unless another alias still names it."""
        fingerprint = self.alias_target(alias)
        if not fingerprint:
            return
        client = self._clients.get()
        try:
            client.api.images.aliases[alias].delete()
            image = client.api.images[fingerprint].get().json()["metadata"]
            if not image.get("aliases"):
                client.api.images[fingerprint].delete()
        except lxd_exceptions.NotFound:
            pass
