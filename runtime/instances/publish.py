"""Publish an instance or snapshot as an image (`POST /1.0/images`, source instance/snapshot).

A running instance is frozen only while its volume is snapshotted (nothing at
all on btrfs); the slow part, packing the tarball, reads that private snapshot
while the instance runs on. Owners are shifted back from the instance's id map
to plain 0-based ids as GNU tar writes them (`--owner-map`), so the image is a
normal unified LXD tarball (metadata.yaml, templates/, rootfs/) that any LXD
can import; its fingerprint is the sha256 of that file.
"""
from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import secrets
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable
from typing import Any

import yaml

from runtime import arch, crashpoint
from runtime.base.timefmt import parse_time
from runtime.base.idmap import IdMap
from runtime.errors import BadRequest, CommandFailed, Conflict
from runtime.images import metadata
from runtime.images.store import clean_properties
from runtime.instances.config import split_source
from runtime.storage import volume_name

LOG = logging.getLogger(__name__)
# What a checked request becomes: the body of its operation (`async run(op)`).
Job = Callable[[Any], Awaitable[Any]]
# gzip at level 1: publish time is mostly compression, and level 6 (LXD's) costs
# about three times as long for an image ~6% smaller.
_COMPRESSORS = {"gzip": ["gzip", "-1", "-c"], "pigz": ["pigz", "-1", "-c"],
                "xz": ["xz", "-c", "-T0"], "zstd": ["zstd", "-c", "-q", "-T0"],
                "bzip2": ["bzip2", "-c"],
                "lzma": ["xz", "--format=lzma", "-c"], "none": None}


def compressor(name: str | None, default: str | None = None) -> list[str] | None:
    """The compression command for LXD's `compression_algorithm` (gzip by default)."""
    name = (name or default or "gzip").strip().split()[0]
    if name not in _COMPRESSORS:
        raise BadRequest(f"Unsupported compression_algorithm {name!r} "
                         f"(use one of {', '.join(sorted(_COMPRESSORS))})")
    if name == "gzip" and shutil.which("pigz"):
        name = "pigz"
    argv = _COMPRESSORS[name]
    if argv and shutil.which(argv[0]) is None:
        raise BadRequest(f"compression_algorithm {name!r}: {argv[0]} is not installed")
    return argv


def owner_maps(root: str, idmap: IdMap) -> tuple[str, str]:
    """GNU tar --owner-map/--group-map text shifting every host id found back to 0-based."""
    uids, gids = set(), set()
    st = os.lstat(root)
    uids.add(st.st_uid)
    gids.add(st.st_gid)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            st = os.lstat(os.path.join(dirpath, name))
            uids.add(st.st_uid)
            gids.add(st.st_gid)

    def lines(ids: set[int]) -> str:
        out = []
        for host in sorted(ids):
            try:
                cid = idmap.to_container(host)
            except ValueError:
                cid = 65534  # not mapped into the container: nobody, as it saw it
            out.append(f"+{host} +{cid}")
        return "\n".join(out) + "\n"
    return lines(uids), lines(gids)


def new_metadata(voldir: str, architecture: str, properties: dict,
                 expires_at: float) -> dict:
    """The instance's metadata.yaml (from its image) refreshed for the new image."""
    try:
        meta = metadata.read(os.path.join(voldir, "metadata.yaml"))
    except BadRequest:
        meta = {}  # the instance's own copy is unusable: publish with fresh metadata
    meta["architecture"] = architecture
    meta["creation_date"] = int(time.time())
    if expires_at:
        meta["expiry_date"] = int(expires_at)
    else:
        meta.pop("expiry_date", None)
    props = clean_properties(meta.get("properties") or {}, "metadata.yaml")
    props.update(clean_properties(properties, "image"))
    meta["properties"] = props
    return meta


async def pack(voldir: str, rootfs: str, idmap: IdMap, meta: dict, dest: str,
               compress: list[str] | None) -> str:
    """Write the unified tarball to dest; returns its sha256."""
    work = tempfile.mkdtemp(prefix=".publish-", dir=os.path.dirname(dest))
    try:
        with open(os.path.join(work, "metadata.yaml"), "w") as f:
            yaml.safe_dump(meta, f, default_flow_style=False)
        umap, gmap = await asyncio.to_thread(owner_maps, rootfs, idmap)
        for name, text in (("owners", umap), ("groups", gmap)):
            with open(os.path.join(work, name), "w") as f:
                f.write(text)
        argv = ["tar", "-c", "-f", "-", "--numeric-owner", "--sparse",
                f"--owner-map={work}/owners", f"--group-map={work}/groups",
                "-C", work, "metadata.yaml"]
        if os.path.isdir(os.path.join(voldir, "templates")):
            argv += ["-C", voldir, "templates"]
        # rootfs may be a mount point elsewhere: name it "rootfs" in the archive.
        parent, base = os.path.split(rootfs.rstrip("/"))
        argv += ["-C", parent, f"--transform=s,^{base}\\(/\\|$\\),rootfs\\1,", base]
        return await _run_pipeline(argv, compress, dest)
    finally:
        shutil.rmtree(work, ignore_errors=True)


async def _run_pipeline(tar_argv: list[str], compress: list[str] | None, dest: str) -> str:
    """tar | compressor > dest (kernel pipes), then the file's sha256."""
    with tempfile.TemporaryFile() as errs, open(dest, "wb") as out:
        if compress:
            rfd, wfd = os.pipe()
            try:
                tar = await asyncio.create_subprocess_exec(*tar_argv, stdout=wfd, stderr=errs)
                comp = await asyncio.create_subprocess_exec(*compress, stdin=rfd, stdout=out,
                                                            stderr=errs)
            finally:
                os.close(rfd)
                os.close(wfd)
            procs = [tar, comp]
        else:
            procs = [await asyncio.create_subprocess_exec(*tar_argv, stdout=out, stderr=errs)]
        codes = [await p.wait() for p in procs]
        if any(codes):
            errs.seek(0)
            err = errs.read().decode(errors="replace").strip()
            raise CommandFailed(f"packing the image failed (exit {codes}): {err[-2000:]}")
    return await asyncio.to_thread(_sha256, dest)


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


class Publisher:
    def __init__(self, daemon, snapshots):
        self.d = daemon
        self.snaps = snapshots

    def prepare(self, project: str, body: dict, require: Callable[[str], str]) -> Job:
        """Check a publish request whole; the job then packs and stores the image.

        `require(project)` is the caller's right to use the source's project (or raises).
        """
        source = body.get("source") or {}
        stype = source.get("type")
        inst_name, snap = split_source(source.get("name"))
        if stype == "snapshot" and not snap:
            raise BadRequest("A snapshot source is named 'instance/snapshot'")
        if stype in ("instance", "container") and snap:
            raise BadRequest("An instance source names an instance; use type 'snapshot' "
                             "for 'instance/snapshot'")
        src_project = require(source.get("project") or project)
        inst = self.d.instances.load(src_project, inst_name)
        row = self.snaps.row(inst, snap) if snap else None
        props = clean_properties(body.get("properties") or {}, "image")
        aliases = body.get("aliases") or []
        if not isinstance(aliases, list):
            raise BadRequest("'aliases' must be a list of {name, description}")
        iproj = self.d.image_project(project)
        for a in aliases:
            if not isinstance(a, dict) or not a.get("name"):
                raise BadRequest("Each alias needs a 'name'")
            if self.d.alias_rows.exists(iproj, a["name"]):
                raise Conflict(f"Alias {a['name']!r} already exists")
        compress = compressor(body.get("compression_algorithm"),
                              self.d.server_config.get("images.compression_algorithm"))
        expires_at = parse_time(body.get("expires_at")) if body.get("expires_at") else 0.0
        public = bool(body.get("public", False))
        filename = str(body.get("filename") or "")

        async def run(op):
            tmp = self.d.images.new_tmp()
            try:
                sha = await self._pack(inst, row, props, expires_at, tmp, compress)
                crashpoint.hit("publish.packed")
                fp = await self.d.images.add(project, tmp, None, sha, filename=filename,
                                             public=public, properties=props)
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
            if expires_at:
                self.d.image_rows.update(iproj, fp, expires_at=expires_at)
            for a in aliases:
                if self.d.alias_rows.exists(iproj, a["name"]):
                    raise Conflict(f"Alias {a['name']!r} already exists")
                self.d.alias_rows.create(iproj, a["name"], fp,
                                         str(a.get("description") or ""))
            LOG.info("published %s/%s%s as image %s", inst.project, inst.name,
                     f"/{snap}" if snap else "", fp)
            return {"fingerprint": fp, "size": self.d.images.get(project, fp)["size"]}
        return run

    async def _pack(self, inst, row: dict | None, props: dict, expires_at: float,
                    dest: str, compress: list[str] | None) -> str:
        mgr = self.d.instances
        pool = self.d.pool(inst.pool)
        vol = volume_name(inst.project, inst.name)
        if row is not None:
            snap, temporary = row["name"], False
            enc = row["config"].get("volatile.last_state.idmap")
            idmap = IdMap.decode(enc) if enc else mgr.idmap_of(inst)
            architecture = row["architecture"]
        else:
            # A private snapshot: the instance is frozen (if at all) only for this.
            snap, temporary = ".publish-" + secrets.token_hex(6), True
            async with mgr.lock(inst.project, inst.name):
                inst = mgr.load(inst.project, inst.name)
                idmap = mgr.idmap_of(inst)
                architecture = inst.architecture
                async with self.snaps.quiesced(inst):
                    await pool.create_snapshot(vol, snap)
        try:
            rootfs = await pool.mount_snapshot(vol, snap)
            crashpoint.hit("publish.snapshot")
            voldir = pool.snapshot_path(vol, snap)
            meta = new_metadata(voldir, arch.normalize(architecture), props, expires_at)
            try:
                return await pack(voldir, rootfs, idmap, meta, dest, compress)
            finally:
                await pool.unmount_snapshot(vol, snap)
        finally:
            if temporary:
                await pool.delete_snapshot(vol, snap)
