"""The image store: image files by sha256 fingerprint, aliases, and pool volumes.

Files live in $LXD_DIR/images/<fingerprint> (plus `.rootfs` for split images), as
uploaded, so export returns exactly what was imported. A pool unpacks an image
once, under a per-image lock, the first time an instance needs it.
"""
import asyncio
import hashlib
import logging
import os
import shutil
import time

from runtime import arch, controlchars, crashpoint
from runtime import db as dbmod
from runtime.errors import BadRequest, Conflict, NotFound
from runtime.base.timefmt import timestamp
from runtime.images import tarball
from runtime.base.values import parse_size

_HEX = set("0123456789abcdef")
LOG = logging.getLogger(__name__)
DEFAULT_MAX_UNPACKED = 32 * 1024**3     # bytes one image may unpack to
DEFAULT_MAX_FILES = 2_000_000           # entries one image may unpack to


class ImageStore:
    def __init__(self, daemon):
        self.d = daemon
        self.dir = daemon.paths.images
        self.locks: dict[str, asyncio.Lock] = {}

    # Files -------------------------------------------------------------------
    def file(self, fingerprint: str) -> str:
        return os.path.join(self.dir, fingerprint)

    def rootfs_file(self, fingerprint: str) -> str | None:
        path = self.file(fingerprint) + ".rootfs"
        return path if os.path.exists(path) else None

    # Lookup ----------------------------------------------------------------
    def project_of(self, project: str) -> str:
        return self.d.image_project(project)

    def get(self, project: str, fingerprint: str) -> dict:
        """An image by full fingerprint or unique prefix."""
        fp = str(fingerprint).lower()
        if not fp or not set(fp) <= _HEX:
            raise NotFound(f"Image {fingerprint!r} not found")
        proj = self.project_of(project)
        found = self.d.image_rows.matching(proj, fp)
        if not found:
            raise NotFound(f"Image {fingerprint!r} not found")
        if len(found) > 1:
            raise BadRequest(f"Image prefix {fingerprint!r} is ambiguous")
        return self.d.image_rows.get(proj, found[0])

    def alias(self, project: str, name: str) -> dict:
        row = self.d.alias_rows.get(self.project_of(project), name)
        if row is None:
            raise NotFound(f"Image alias {name!r} not found")
        return row

    def resolve_source(self, project: str, source: dict) -> dict:
        """The local image an instance source names (alias, fingerprint or properties)."""
        if source.get("server") and source.get("mode", "pull") == "pull":
            return self.d.remote_images.resolve(project, source)
        if source.get("alias"):
            return self.get(project, self.alias(project, source["alias"])["fingerprint"])
        if source.get("fingerprint"):
            return self.get(project, source["fingerprint"])
        props = source.get("properties")
        if isinstance(props, dict) and props:
            for row in self.d.image_rows.newest_first(self.project_of(project)):
                if all(str(row["properties"].get(k)) == str(v) for k, v in props.items()):
                    return row
            raise NotFound(f"No image matches properties {props}")
        raise BadRequest("Image source needs an 'alias', 'fingerprint' or 'properties'")

    def aliases_of(self, project: str, fingerprint: str) -> list[dict]:
        return [{"name": a["name"], "description": a["description"]}
                for a in self.d.alias_rows.of_image(self.project_of(project),
                                                    fingerprint)]

    def render(self, project: str, row: dict) -> dict:
        return {
            "aliases": self.aliases_of(project, row["fingerprint"]),
            "architecture": row["architecture"], "auto_update": bool(row["auto_update"]),
            "cached": bool(row["cached"]), "fingerprint": row["fingerprint"],
            "filename": row["filename"], "properties": row["properties"],
            "public": bool(row["public"]), "size": row["size"], "type": row["type"],
            "created_at": timestamp(row["created_at"]),
            "uploaded_at": timestamp(row["uploaded_at"]),
            "last_used_at": timestamp(row["last_used_at"]),
            "expires_at": timestamp(row["expires_at"]),
            "update_source": row["source"] or None, "profiles": ["default"],
            "project": project,
        }

    # Import ------------------------------------------------------------------
    async def add(self, project: str, image_tmp: str, rootfs_tmp: str | None, sha: str,
                  filename: str = "", public: bool = False, properties: dict | None = None,
                  expected: str | None = None, cached: bool = False,
                  source: dict | None = None) -> str:
        """Register uploaded file(s) (already hashed into sha); returns the fingerprint."""
        try:
            if expected and expected.lower() != sha:
                raise BadRequest(f"Fingerprint mismatch: got {sha}, expected {expected}")
            meta = await asyncio.to_thread(tarball.read_metadata, image_tmp)
            arch_name = arch.normalize(meta.get("architecture") or arch.host())
            proj = self.project_of(project)
            if self.d.image_rows.exists(proj, sha):
                raise Conflict(f"Image with fingerprint {sha} already exists")
            props = clean_properties(meta.get("properties") or {}, "metadata.yaml")
            props.update(clean_properties(properties or {}, "image"))
            size = os.path.getsize(image_tmp) + (os.path.getsize(rootfs_tmp)
                                                 if rootfs_tmp else 0)
            # Durable before the database row says the image exists.
            await asyncio.to_thread(_fsync_files, image_tmp, rootfs_tmp)
            os.replace(image_tmp, self.file(sha))
            if rootfs_tmp:
                os.replace(rootfs_tmp, self.file(sha) + ".rootfs")
            await asyncio.to_thread(fsync_dir, self.dir)
            crashpoint.hit("image.stored")
            created = float(meta.get("creation_date") or time.time())
            self.d.image_rows.create(proj, sha, filename=filename, size=size, public=public,
                                     architecture=arch_name, created_at=created,
                                     uploaded_at=dbmod.now(),
                                     expires_at=float(meta.get("expiry_date") or 0),
                                     properties=props, cached=cached, source=source or {})
        finally:
            for tmp in (image_tmp, rootfs_tmp):
                if tmp and os.path.exists(tmp):
                    os.unlink(tmp)
        self.d.bus.lifecycle("image-created", f"/1.0/images/{sha}", project)
        return sha

    def new_tmp(self, suffix: str = "") -> str:
        return os.path.join(self.dir, f"{TMP_PREFIX}{os.urandom(6).hex()}{suffix}")

    def sweep(self) -> None:
        """At daemon start: uploads, downloads and publishes a dead daemon left behind."""
        for name in os.listdir(self.dir):
            if name.startswith((TMP_PREFIX, ".publish-")):
                path = os.path.join(self.dir, name)
                if os.path.isdir(path) and not os.path.islink(path):
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    os.unlink(path)
                LOG.info("removed leftover %s", path)

    # Pool volumes ------------------------------------------------------------
    async def ensure_volume(self, pool, fingerprint: str) -> None:
        """The image unpacked on the pool (downloaded first if it came from a server)."""
        await self.d.remote_images.ensure_downloaded(fingerprint)
        lock = self.locks.setdefault(f"{pool.name}/{fingerprint}", asyncio.Lock())
        async with lock:
            if pool.image_ready(fingerprint):
                return
            image_file, rootfs_file = self.file(fingerprint), self.rootfs_file(fingerprint)
            if not os.path.exists(image_file):
                raise NotFound(f"Image file for {fingerprint} is missing from the store")

            limits = self.unpack_limits(pool)

            async def unpack(dest: str) -> None:
                result = await tarball.unpack(image_file, rootfs_file, dest, limits)
                if result.dropped:
                    LOG.warning("image %s: %d device nodes/FIFOs dropped (e.g. %s)",
                                fingerprint[:12], len(result.dropped), result.dropped[0])
            await pool.create_image(fingerprint, unpack, self.d.default_idmap)

    def unpack_limits(self, pool) -> tarball.Limits:
        """images.max_unpacked_size / _files, never more than the pool has free."""
        conf = self.d.server_config.all()
        max_bytes = parse_size(conf.get("images.max_unpacked_size") or DEFAULT_MAX_UNPACKED)
        max_entries = int(conf.get("images.max_unpacked_files") or DEFAULT_MAX_FILES)
        st = os.statvfs(pool.path)
        free = st.f_bavail * st.f_frsize
        max_bytes = min(max_bytes, int(free * 0.95))
        if st.f_files:  # btrfs reports no inode count: only the configured limit applies
            max_entries = min(max_entries, int(st.f_favail * 0.95))
        return tarball.Limits(max_bytes, max_entries)

    async def collect(self, pool) -> None:
        """Drop image volumes kept only for instances that are now gone.

        A pool keeps an image's unpacked volume while instances clone it, even
        after the image itself was deleted; the last such instance frees it.
        """
        root = os.path.join(pool.path, "images")
        if not os.path.isdir(root):
            return
        for fp in os.listdir(root):
            if len(fp) == 64 and not self.d.image_rows.held(fp):
                await pool.delete_image(fp)

    def mark_used(self, fingerprint: str) -> None:
        self.d.image_rows.mark_used(fingerprint, dbmod.now())

    # Delete ------------------------------------------------------------------
    async def delete(self, project: str, fingerprint: str) -> None:
        proj = self.project_of(project)
        self.d.image_rows.delete(proj, fingerprint)
        self.d.alias_rows.delete_of_image(proj, fingerprint)
        if self.d.image_rows.held(fingerprint):
            return  # still referenced by another project
        for pool in self.d.pools.values():
            await pool.delete_image(fingerprint)
        for path in (self.file(fingerprint), self.file(fingerprint) + ".rootfs"):
            if os.path.exists(path):
                os.unlink(path)
        self.d.bus.lifecycle("image-deleted", f"/1.0/images/{fingerprint}", project)


def clean_properties(props: object, where: str) -> dict[str, str]:
    """Image properties as str -> str; each becomes an `image.<key>` instance config key."""
    if not isinstance(props, dict):
        raise BadRequest(f"Invalid {where} properties: must be a mapping")
    out = {}
    for key, value in props.items():
        if isinstance(value, (dict, list)):
            raise BadRequest(f"Invalid {where} property {key!r}: must be a plain value")
        key = controlchars.check_key(str(key), f"{where} property")
        out[key] = controlchars.check_value(f"image.{key}", "" if value is None else str(value),
                                            f"{where} property")
    return out


TMP_PREFIX = ".upload-"


def _fsync_files(*paths: str | None) -> None:
    for path in paths:
        if path:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


def fsync_dir(path: str) -> None:
    """A rename or creation in path survives a power loss."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Hasher:
    """sha256 over everything written, for streaming uploads."""

    def __init__(self):
        self.h = hashlib.sha256()

    def update(self, data: bytes) -> None:
        self.h.update(data)

    def hexdigest(self) -> str:
        return self.h.hexdigest()
