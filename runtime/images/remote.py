"""Image servers: fetching from other runtimes (LXD protocol) and simplestreams,
the remote image cache (expiry and refresh), and serving our public images.

An image taken from a server is stored like any other, with `source` recording
where it came from (server, protocol, alias, certificate). Images cached because
an instance was created from a remote (`cached: true`) expire after
`images.remote_cache_expiry` days without use (default 10); images with
`auto_update` are refreshed every `images.auto_update_interval` hours (default 6,
0 disables) when the server's alias points at a newer image, and an instance
created from a remote alias always gets the server's current image.

`resolve()` is synchronous because instance creation validates its source
before the operation starts: it asks the server which image the alias names
(one small request) and the download itself happens in the operation, when the
store unpacks the image into a pool.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import ssl
import time
import urllib.parse
from collections.abc import Callable

import aiohttp

from runtime import arch
from runtime import db as dbmod
from runtime.errors import BadRequest, NotFound, RuntimeAPIError
from runtime.images.store import Hasher

LOG = logging.getLogger(__name__)
CHUNK = 1024 * 1024
DEFAULT_EXPIRY_DAYS = 10.0
DEFAULT_UPDATE_HOURS = 6.0
LOOKUP_TIMEOUT = 10.0
MAX_INDEX = 64 * 1024 * 1024   # a JSON document from an image server (simplestreams index)
# simplestreams file types: metadata, then rootfs candidates in order of preference
_SS_META = "lxd.tar.xz"
_SS_ROOTFS = (("root.tar.xz", "combined_rootxz_sha256", "combined_sha256"),
              ("squashfs", "combined_squashfs_sha256", None))
_SS_UNIFIED = ("lxd_combined.tar.gz", "lxd_combined.tar.xz")


class RemoteError(RuntimeAPIError):
    status = 400


def _ssl_context(certificate: str | None):
    if not certificate:
        return ssl.create_default_context()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.load_verify_locations(cadata=certificate)
    ctx.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    return ctx


def _server(source: dict) -> str:
    server = str(source.get("server") or "").rstrip("/")
    if not server.startswith(("https://", "http://")):
        raise BadRequest(f"Invalid image server {server!r}: use an https:// (or http://) URL")
    return server


class Remote:
    """One image server: looks images up and downloads them."""

    def __init__(self, source: dict):
        self.source = source
        self.server = _server(source)
        self.protocol = source.get("protocol") or "lxd"
        if self.protocol not in ("lxd", "simplestreams"):
            raise BadRequest(f"Unknown image server protocol {self.protocol!r} "
                             "(lxd or simplestreams)")
        self.certificate = source.get("certificate") or None
        self.ssl = _ssl_context(self.certificate) if self.server.startswith("https") else None

    # Synchronous lookups (small JSON documents) --------------------------------
    def _get_json(self, path: str) -> dict:
        import urllib.request  # lazily: only remote lookups need it (daemon RSS)
        req = urllib.request.Request(self.server + path, headers={"Accept": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=LOOKUP_TIMEOUT, context=self.ssl) as resp:
                data = resp.read(MAX_INDEX + 1)
            if len(data) > MAX_INDEX:
                raise RemoteError(f"Image server {self.server}: {path} is larger than "
                                  f"{MAX_INDEX} bytes")
            return json.loads(data)
        except urllib.error.HTTPError as exc:
            try:
                msg = json.loads(exc.read(65536)).get("error") or str(exc)
            except (ValueError, AttributeError):
                msg = str(exc)
            if exc.code == 404:
                raise NotFound(f"Image server {self.server}: {msg}")
            raise RemoteError(f"Image server {self.server}: {msg}")
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise RemoteError(f"Can't reach image server {self.server}: {exc}")

    def lookup(self) -> dict:
        """{fingerprint, architecture, properties, public, files...} of the wanted image."""
        if self.protocol == "lxd":
            return self._lookup_lxd()
        return self._lookup_simplestreams()

    def _lookup_lxd(self) -> dict:
        fp = self.source.get("fingerprint")
        alias = self.source.get("alias")
        if alias and not fp:
            meta = self._get_json(f"/1.0/images/aliases/{urllib.parse.quote(alias)}")
            fp = (meta.get("metadata") or {}).get("target")
        if not fp:
            raise BadRequest("Remote image source needs an 'alias' or 'fingerprint'")
        try:
            info = self._get_json(f"/1.0/images/{fp}").get("metadata") or {}
        except NotFound:
            if alias:
                raise
            # An alias given as `fingerprint` (LXD resolves those too).
            meta = self._get_json(f"/1.0/images/aliases/{urllib.parse.quote(fp)}")
            fp = (meta.get("metadata") or {}).get("target") or fp
            info = self._get_json(f"/1.0/images/{fp}").get("metadata") or {}
        return {"fingerprint": info.get("fingerprint") or fp,
                "architecture": arch.normalize(info.get("architecture") or arch.host()),
                "properties": info.get("properties") or {},
                "filename": info.get("filename") or "", "size": info.get("size") or 0}

    def _lookup_simplestreams(self) -> dict:
        index = self._get_json("/streams/v1/index.json")
        path = None
        for entry in (index.get("index") or {}).values():
            if entry.get("datatype") == "image-downloads":
                path = entry.get("path")
                break
        if not path:
            raise RemoteError(f"Image server {self.server} has no image-downloads stream")
        products = self._get_json("/" + path.lstrip("/")).get("products") or {}
        want_alias = self.source.get("alias")
        want_fp = self.source.get("fingerprint")
        try:
            return self._pick(products, want_alias, want_fp)
        except NotFound:
            if want_alias or not want_fp:
                raise
            # pylxd's create_from_simplestreams() sends the alias as `fingerprint`.
            return self._pick(products, want_fp, None)

    def _pick(self, products: dict, want_alias: str | None, want_fp: str | None) -> dict:
        host_archs = set(arch.supported())
        best = None
        for pname, product in products.items():
            try:
                parch = arch.normalize(product.get("arch") or "")
            except BadRequest:
                continue
            aliases = [a.strip() for a in str(product.get("aliases") or "").split(",")]
            if want_alias and want_alias not in aliases and want_alias != pname:
                continue
            if want_alias and parch not in host_archs:
                continue
            for vname, version in (product.get("versions") or {}).items():
                found = _ss_version(version)
                if found is None:
                    continue
                if want_fp and not found["fingerprint"].startswith(want_fp):
                    continue
                key = (parch == arch.host(), vname)
                if best is None or key > best[0]:
                    props = {k: str(product[k]) for k in ("os", "release", "variant",
                                                          "release_title") if k in product}
                    props["description"] = (f"{product.get('os', '')} "
                                            f"{product.get('release', '')} {vname}").strip()
                    best = (key, dict(found, architecture=parch, properties=props))
        if best is None:
            raise NotFound(f"Image {want_alias or want_fp!r} not found on {self.server}")
        return best[1]

    # Download ----------------------------------------------------------------
    async def download(self, info: dict, store, progress=None) -> tuple[str, str | None, str]:
        """Fetch the image file(s) into temporary files; returns (image, rootfs, sha)."""
        hasher = Hasher()
        image_tmp = store.new_tmp()
        rootfs_tmp = None
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(
                    total=None, sock_connect=LOOKUP_TIMEOUT)) as session:
                if self.protocol == "simplestreams":
                    await self._fetch(session, info["meta_path"], image_tmp, hasher, progress)
                    if info.get("rootfs_path"):
                        rootfs_tmp = store.new_tmp(".rootfs")
                        await self._fetch(session, info["rootfs_path"], rootfs_tmp, hasher,
                                          progress)
                else:
                    rootfs_tmp = await self._fetch_lxd(session, info, image_tmp, hasher,
                                                       store, progress)
        except BaseException:
            for tmp in (image_tmp, rootfs_tmp):
                if tmp and os.path.exists(tmp):
                    os.unlink(tmp)
            raise
        return image_tmp, rootfs_tmp, hasher.hexdigest()

    async def _fetch(self, session, path: str, dest: str, hasher: Hasher, progress) -> None:
        url = self.server + "/" + path.lstrip("/")
        try:
            async with session.get(url, ssl=self.ssl if self.ssl else False) as resp:
                if resp.status != 200:
                    raise RemoteError(f"Download of {url} failed: HTTP {resp.status}")
                await _save(resp.content, dest, hasher, progress)
        except (aiohttp.ClientError, OSError) as exc:
            raise RemoteError(f"Download of {url} failed: {exc}")

    async def _fetch_lxd(self, session, info: dict, image_tmp: str, hasher: Hasher, store,
                         progress) -> str | None:
        url = f"{self.server}/1.0/images/{info['fingerprint']}/export"
        try:
            async with session.get(url, ssl=self.ssl if self.ssl else False) as resp:
                if resp.status != 200:
                    raise RemoteError(f"Download of {url} failed: HTTP {resp.status}")
                if resp.content_type.startswith("multipart/"):
                    reader = aiohttp.MultipartReader.from_response(resp)
                    rootfs_tmp = None
                    while True:
                        part = await reader.next()
                        if part is None:
                            break
                        if part.name == "metadata":
                            await _save(part, image_tmp, hasher, progress)
                        elif part.name in ("rootfs", "rootfs.img"):
                            rootfs_tmp = store.new_tmp(".rootfs")
                            await _save(part, rootfs_tmp, hasher, progress)
                    return rootfs_tmp
                await _save(resp.content, image_tmp, hasher, progress)
                return None
        except (aiohttp.ClientError, OSError) as exc:
            raise RemoteError(f"Download of {url} failed: {exc}")


class UrlRemote(Remote):
    """`source.type: url`: the URL answers a HEAD with `LXD-Image-Hash` (the
    fingerprint) and `LXD-Image-URL` (where the unified tarball is), as for LXD."""

    def __init__(self, source: dict):
        url = str(source.get("url") or "")
        if not url.startswith(("https://", "http://")):
            raise BadRequest(f"Invalid image URL {url!r}: use https:// (or http://)")
        self.source = source
        self.url = url
        parts = urllib.parse.urlsplit(url)
        self.server = f"{parts.scheme}://{parts.netloc}"
        self.protocol = "direct"
        self.certificate = None
        self.ssl = ssl.create_default_context() if url.startswith("https") else None

    def lookup(self) -> dict:
        import urllib.request
        req = urllib.request.Request(self.url, method="HEAD")
        try:
            with urllib.request.urlopen(req, timeout=LOOKUP_TIMEOUT, context=self.ssl) as resp:
                fp = resp.headers.get("LXD-Image-Hash")
                target = resp.headers.get("LXD-Image-URL")
        except (urllib.error.URLError, OSError) as exc:
            raise RemoteError(f"Can't reach {self.url}: {exc}")
        if not fp or not target:
            raise RemoteError(f"{self.url} gave no LXD-Image-Hash/LXD-Image-URL headers")
        target = urllib.parse.urljoin(self.url, target)
        if urllib.parse.urlsplit(target).netloc != urllib.parse.urlsplit(self.url).netloc:
            self.server = "{0.scheme}://{0.netloc}".format(urllib.parse.urlsplit(target))
        return {"fingerprint": fp.lower(), "architecture": arch.host(), "properties": {},
                "meta_path": urllib.parse.urlsplit(target)._replace(
                    scheme="", netloc="").geturl(), "rootfs_path": None}

    async def download(self, info: dict, store, progress=None) -> tuple[str, str | None, str]:
        hasher = Hasher()
        image_tmp = store.new_tmp()
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(
                    total=None, sock_connect=LOOKUP_TIMEOUT)) as session:
                await self._fetch(session, info["meta_path"], image_tmp, hasher, progress)
        except BaseException:
            if os.path.exists(image_tmp):
                os.unlink(image_tmp)
            raise
        return image_tmp, None, hasher.hexdigest()


def _ss_version(version: dict) -> dict | None:
    """The files of one simplestreams version, with LXD's image fingerprint."""
    items = version.get("items") or {}
    by_type = {i.get("ftype"): i for i in items.values()}
    for ftype in _SS_UNIFIED:
        if ftype in by_type:
            item = by_type[ftype]
            return {"fingerprint": item["sha256"], "meta_path": item["path"],
                    "rootfs_path": None, "size": item.get("size", 0)}
    meta = by_type.get(_SS_META)
    if meta is None:
        return None
    for ftype, combined_key, alt_key in _SS_ROOTFS:
        rootfs = by_type.get(ftype)
        if rootfs is None:
            continue
        fp = meta.get(combined_key) or (meta.get(alt_key) if alt_key else None)
        if fp:
            return {"fingerprint": fp, "meta_path": meta["path"], "rootfs_path": rootfs["path"],
                    "size": meta.get("size", 0) + rootfs.get("size", 0)}
    return None


async def _save(reader, dest: str, hasher: Hasher, progress) -> None:
    with open(dest, "wb") as f:
        while True:
            chunk = (await reader.read_chunk(CHUNK) if hasattr(reader, "read_chunk")
                     else await reader.read(CHUNK))
            if not chunk:
                break
            hasher.update(chunk)
            await asyncio.to_thread(f.write, chunk) if len(chunk) >= CHUNK else f.write(chunk)
            if progress:
                progress(len(chunk))


def _same_source(a: dict, b: dict) -> bool:
    keys = ("server", "protocol", "alias")
    return all((a.get(k) or "") == (b.get(k) or "") for k in keys)


class RemoteImages:
    # Server configuration keys whose change calls for a maintenance pass at once.
    CONFIG_KEYS = ("images.remote_cache_expiry", "images.auto_update_interval")

    def __init__(self, daemon):
        self.d = daemon
        self.pending: dict[str, tuple[Remote, dict, str]] = {}  # fp -> (remote, info, project)
        self.locks: dict[str, asyncio.Lock] = {}
        self.task: asyncio.Task | None = None

    # Config --------------------------------------------------------------------
    def _conf(self, key: str, default: float) -> float:
        try:
            return float(self.d.server_config.get(key) or default)
        except ValueError:
            return default

    @property
    def expiry_seconds(self) -> float:
        return self._conf("images.remote_cache_expiry", DEFAULT_EXPIRY_DAYS) * 86400

    @property
    def update_seconds(self) -> float:
        return self._conf("images.auto_update_interval", DEFAULT_UPDATE_HOURS) * 3600

    # Instance creation from a remote image ------------------------------------
    async def resolve_async(self, project: str, source: dict) -> dict:
        """resolve() with the network lookup in a thread, off the event loop."""
        remote = Remote(source)
        return self.resolve(project, source, remote, await asyncio.to_thread(remote.lookup))

    def resolve(self, project: str, source: dict, remote=None, info: dict | None = None) -> dict:
        """The image row to build from; the download (if needed) happens in ensure_volume."""
        remote = remote or Remote(source)
        info = info or remote.lookup()
        store = self.d.images
        proj = store.project_of(project)
        row = self.d.image_rows.get(proj, info["fingerprint"])
        if row is not None:
            return row
        self.pending[info["fingerprint"]] = (remote, info, project)
        return {"fingerprint": info["fingerprint"], "architecture": info["architecture"],
                "properties": info.get("properties") or {}, "project": proj,
                "remote": True}

    async def fetch(self, project: str, remote: Remote, info: dict, cached: bool,
                    public: bool = False, auto_update: bool = False, progress=None) -> str:
        """Download and register an image once (concurrent callers share the work)."""
        fp = info["fingerprint"]
        lock = self.locks.setdefault(fp, asyncio.Lock())
        async with lock:
            proj = self.d.images.project_of(project)
            if self.d.image_rows.exists(proj, fp):
                return fp
            image_tmp, rootfs_tmp, sha = await remote.download(info, self.d.images, progress)
            source = {"server": remote.server, "protocol": remote.protocol,
                      "alias": remote.source.get("alias") or "",
                      "certificate": remote.certificate or "", "image_type": "container"}
            fp = await self.d.images.add(project, image_tmp, rootfs_tmp, sha,
                                         filename=info.get("filename") or "",
                                         public=public, properties=info.get("properties"),
                                         expected=fp, cached=cached, source=source)
            self.d.image_rows.update(proj, fp, auto_update=auto_update,
                                     last_used_at=dbmod.now())
            LOG.info("image %s fetched from %s (%s)", fp[:12], remote.server, remote.protocol)
            return fp

    async def ensure_downloaded(self, fingerprint: str) -> None:
        pending = self.pending.get(fingerprint)
        if pending is None or os.path.exists(self.d.images.file(fingerprint)):
            return
        remote, info, project = pending
        auto = self.d.server_config.get("images.auto_update_cached", "true") == "true"
        await self.fetch(project, remote, info, cached=True, auto_update=auto)
        self.pending.pop(fingerprint, None)

    # POST /1.0/images with source.type image ---------------------------------
    def prepare_import(self, project: str, body: dict, require: Callable[[str], str]):
        """Check an image import request; the job (`async run(op)`) downloads it.

        `require(project)` is the caller's right to use a project (or raises).
        """
        source = body.get("source") or {}
        if source.get("project") is not None:
            # Only the server's public images are fetched (anonymously), whatever
            # project is named; still, a caller names only projects of its own.
            require(str(source["project"]))
        if (source.get("mode") or "pull") != "pull":
            raise BadRequest("Only pull mode is supported for image sources")
        remote = UrlRemote(source) if source.get("type") == "url" else Remote(source)
        aliases = body.get("aliases") or []
        public = bool(body.get("public", False))
        auto_update = bool(body.get("auto_update", False))

        async def run(op):
            info = await asyncio.to_thread(remote.lookup)
            done = [0]

            def progress(n: int) -> None:
                done[0] += n
                if info.get("size"):
                    op.metadata["download_progress"] = \
                        f"rootfs: {min(100, done[0] * 100 // max(1, info['size']))}%"
            fp = await self.fetch(project, remote, info, cached=False, public=public,
                                  auto_update=auto_update, progress=progress)
            proj = self.d.images.project_of(project)
            self.d.image_rows.update(proj, fp, cached=False, public=public,
                                     auto_update=auto_update)
            for alias in aliases:
                name = alias.get("name") if isinstance(alias, dict) else alias
                if name and not self.d.alias_rows.exists(proj, name):
                    self.d.alias_rows.create(proj, name, fp,
                                             (alias.get("description") or "")
                                             if isinstance(alias, dict) else "")
            return {"fingerprint": fp, "size": self.d.images.get(project, fp)["size"]}
        return run

    # Cache maintenance -----------------------------------------------------------
    async def prune_expired(self) -> list[str]:
        """Delete cached images nobody used for images.remote_cache_expiry days."""
        expiry = self.expiry_seconds
        if expiry <= 0:
            return []
        now = time.time()
        gone = []
        for row in self.d.image_rows.cached():
            last = row["last_used_at"] or row["uploaded_at"]
            if now - last > expiry:
                await self.d.images.delete(row["project"], row["fingerprint"])
                gone.append(row["fingerprint"])
                LOG.info("cached image %s expired", row["fingerprint"][:12])
        return gone

    async def refresh(self) -> list[str]:
        """Replace auto-updating images whose source alias now names a newer image."""
        new = []
        for row in self.d.image_rows.auto_updating():
            source = row["source"] or {}
            if not source.get("server") or not source.get("alias"):
                continue
            try:
                remote = Remote(source)
                info = await asyncio.to_thread(remote.lookup)
            except RuntimeAPIError as exc:
                LOG.warning("refresh of image %s: %s", row["fingerprint"][:12], exc)
                continue
            if info["fingerprint"] == row["fingerprint"]:
                continue
            try:
                fp = await self.fetch(row["project"], remote, info, cached=bool(row["cached"]),
                                      public=bool(row["public"]), auto_update=True)
            except RuntimeAPIError as exc:
                LOG.warning("refresh of image %s: %s", row["fingerprint"][:12], exc)
                continue
            self.d.alias_rows.retarget(row["project"], row["fingerprint"], fp)
            self.d.image_rows.update(row["project"], fp,
                                     last_used_at=row["last_used_at"] or dbmod.now())
            await self.d.images.delete(row["project"], row["fingerprint"])
            self.d.bus.lifecycle("image-refreshed", f"/1.0/images/{fp}", row["project"])
            LOG.info("image %s refreshed to %s from %s", row["fingerprint"][:12], fp[:12],
                     remote.server)
            new.append(fp)
        return new

    async def maintain(self) -> None:
        try:
            await self.prune_expired()
            if self.update_seconds > 0:
                await self.refresh()
        except Exception:  # noqa: BLE001 - maintenance must never take the daemon down
            LOG.exception("image cache maintenance failed")

    async def running(self, app):
        """aiohttp cleanup context: a maintenance pass now, then one periodically."""
        loop = asyncio.get_running_loop()
        self.task = loop.create_task(self._loop())
        loop.create_task(self.maintain())
        yield
        if self.task:
            self.task.cancel()

    async def _loop(self) -> None:
        last_refresh = time.monotonic()
        while True:
            await asyncio.sleep(min(3600.0, max(60.0, self.update_seconds or 3600.0)))
            await self.prune_expired()
            interval = self.update_seconds
            if interval > 0 and time.monotonic() - last_refresh >= interval:
                await self.refresh()
                last_refresh = time.monotonic()
