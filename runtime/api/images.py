"""/1.0/images and /1.0/images/aliases: upload, list, update, export, delete, aliases."""
import asyncio
import os
import urllib.parse

from aiohttp import web

from runtime import auth, crashpoint
from runtime.api import daemon, project, read_json, recursion, response
from runtime.auth import PROJECT
from runtime.errors import BadRequest, Conflict
from runtime.images.store import Hasher, clean_properties

CHUNK = 1024 * 1024


def _bool(value: str | None) -> bool:
    return str(value or "").lower() in ("1", "true", "yes")


async def list_images(request: web.Request) -> web.Response:
    d = daemon(request)
    proj = project(request)
    rows = d.image_rows.list(d.image_project(proj))
    if recursion(request):
        return response.sync([d.images.render(proj, r) for r in rows])
    return response.sync([f"/1.0/images/{r['fingerprint']}" for r in rows])


async def _stream_to(path: str, reader, hasher: Hasher) -> int:
    size = 0
    with open(path, "wb") as f:
        while True:
            chunk = (await reader.content.read(CHUNK) if isinstance(reader, web.Request)
                     else await reader.read_chunk(CHUNK))
            if not chunk:
                break
            hasher.update(chunk)
            await asyncio.to_thread(f.write, chunk)   # disk writes off the event loop
            size += len(chunk)
    return size


async def create_image(request: web.Request) -> web.Response:
    d = daemon(request)
    proj = project(request)
    ctype = request.content_type
    if ctype == "application/json":
        body = await read_json(request)
        return await _create_from_source(request, d, proj, body)
    hasher = Hasher()
    image_tmp = d.images.new_tmp()
    rootfs_tmp = None
    try:
        if ctype.startswith("multipart/"):
            reader = await request.multipart()
            parts = {}
            while True:
                part = await reader.next()
                if part is None:
                    break
                if part.name not in ("metadata", "rootfs", "rootfs.img"):
                    raise BadRequest(f"Unexpected multipart field {part.name!r}")
                target = image_tmp if part.name == "metadata" else d.images.new_tmp(".rootfs")
                if part.name != "metadata":
                    rootfs_tmp = target
                parts[part.name] = await _stream_to(target, part, hasher)
            if "metadata" not in parts or rootfs_tmp is None:
                raise BadRequest("A split image upload needs 'metadata' and 'rootfs' parts")
        else:
            size = await _stream_to(image_tmp, request, hasher)
            if size == 0:
                raise BadRequest("Empty image upload")
    except BaseException:
        for tmp in (image_tmp, rootfs_tmp):
            if tmp and os.path.exists(tmp):
                os.unlink(tmp)
        raise
    props = clean_properties(dict(urllib.parse.parse_qsl(
        request.headers.get("X-LXD-properties", ""))), "X-LXD-properties")
    sha = hasher.hexdigest()
    filename = request.headers.get("X-LXD-filename", "")
    public = _bool(request.headers.get("X-LXD-public"))
    expected = request.headers.get("X-LXD-fingerprint")
    aliases = [a for a in request.headers.get("X-LXD-aliases", "").split(",") if a]

    async def run(op):
        crashpoint.hit("image.received")
        fp = await d.images.add(proj, image_tmp, rootfs_tmp, sha, filename=filename,
                                public=public, properties=props, expected=expected)
        for alias in aliases:
            _add_alias(d, proj, alias, fp, "")
        return {"fingerprint": fp, "size": d.images.get(proj, fp)["size"]}
    return response.async_(d.ops.create("task", "Downloading image", run, project=proj))


async def _create_from_source(request, d, proj: str, body: dict) -> web.Response:
    source = body.get("source") or {}
    if not isinstance(source, dict) or not source.get("type"):
        raise BadRequest("JSON image creation needs a 'source' with a 'type'")
    stype = source["type"]
    if stype in ("instance", "container", "snapshot"):
        run = d.publisher.prepare(proj, body, lambda p: auth.require(request, p))
        return response.async_(d.ops.create("task", "Publishing instance", run, project=proj))
    if stype in ("image", "url"):
        run = d.remote_images.prepare_import(proj, body, lambda p: auth.require(request, p))
        return response.async_(d.ops.create("task", "Downloading image", run, project=proj))
    raise BadRequest(f"Unknown image source type {stype!r}")


async def get_image(request: web.Request) -> web.Response:
    d = daemon(request)
    proj = project(request)
    row = d.images.get(proj, request.match_info["fingerprint"])
    return response.sync(d.images.render(proj, row))


async def update_image(request: web.Request) -> web.Response:
    d = daemon(request)
    proj = project(request)
    row = d.images.get(proj, request.match_info["fingerprint"])
    body = await read_json(request)
    patch = request.method == "PATCH"
    values = {}
    if "properties" in body or not patch:
        props = clean_properties(body.get("properties") or {}, "image")
        values["properties"] = {**row["properties"], **props} if patch else props
    for key in ("public", "auto_update"):
        if key in body or not patch:
            values[key] = bool(body.get(key, False))
    d.image_rows.update(row["project"], row["fingerprint"], **values)
    d.bus.lifecycle("image-updated", f"/1.0/images/{row['fingerprint']}", proj)
    return response.sync({})


async def delete_image(request: web.Request) -> web.Response:
    d = daemon(request)
    proj = project(request)
    row = d.images.get(proj, request.match_info["fingerprint"])

    async def run(op):
        await d.images.delete(proj, row["fingerprint"])
    return response.async_(d.ops.create("task", "Deleting image", run, project=proj,
                                        resources={"images": [
                                            f"/1.0/images/{row['fingerprint']}"]}))


async def export_image(request: web.Request) -> web.StreamResponse:
    d = daemon(request)
    row = d.images.get(project(request), request.match_info["fingerprint"])
    return await export_response(request, d.images, row)


async def export_response(request: web.Request, store, row: dict) -> web.StreamResponse:
    """The image as uploaded: one file, or multipart metadata + rootfs (split images)."""
    from aiohttp import MultipartWriter
    fp = row["fingerprint"]
    rootfs = store.rootfs_file(fp)
    if rootfs is None:
        return web.FileResponse(store.file(fp), headers={
            "Content-Type": "application/octet-stream",
            "Content-Disposition": f"attachment; filename={row['filename'] or fp}"})
    with MultipartWriter("form-data") as mp:
        for field, path in (("metadata", store.file(fp)), ("rootfs", rootfs)):
            part = mp.append(open(path, "rb"))  # noqa: SIM115 - the writer closes it
            part.set_content_disposition("form-data", name=field,
                                         filename=os.path.basename(path))
    resp = web.StreamResponse(headers={"Content-Type": mp.content_type})
    await resp.prepare(request)
    await mp.write(resp)
    await resp.write_eof()
    return resp


# Aliases ---------------------------------------------------------------------
def _add_alias(d, proj: str, name: str, target: str, description: str) -> None:
    iproj = d.image_project(proj)
    validate_alias_name(name)
    if d.alias_rows.exists(iproj, name):
        raise Conflict(f"Alias {name!r} already exists")
    fp = d.images.get(proj, target)["fingerprint"]
    d.alias_rows.create(iproj, name, fp, description or "")


def validate_alias_name(name: object) -> str:
    if not name or not isinstance(name, str) or name.strip() != name or ":" in name or \
            not name.isprintable():
        raise BadRequest(f"Invalid alias name {name!r}")
    return name


def _render_alias(row: dict) -> dict:
    return {"name": row["name"], "target": row["fingerprint"],
            "description": row["description"], "type": row["type"]}


async def list_aliases(request: web.Request) -> web.Response:
    d = daemon(request)
    proj = project(request)
    rows = d.alias_rows.list(d.image_project(proj))
    if recursion(request):
        return response.sync([_render_alias(r) for r in rows])
    return response.sync([f"/1.0/images/aliases/{r['name']}" for r in rows])


async def create_alias(request: web.Request) -> web.Response:
    d = daemon(request)
    proj = project(request)
    body = await read_json(request)
    if not body.get("target"):
        raise BadRequest("Alias needs a 'target' fingerprint")
    _add_alias(d, proj, body.get("name"), body["target"], body.get("description", ""))
    d.bus.lifecycle("image-alias-created", f"/1.0/images/aliases/{body['name']}", proj)
    return response.created(f"/1.0/images/aliases/{body['name']}")


async def get_alias(request: web.Request) -> web.Response:
    d = daemon(request)
    return response.sync(_render_alias(d.images.alias(project(request),
                                                      request.match_info["name"])))


async def update_alias(request: web.Request) -> web.Response:
    d = daemon(request)
    proj = project(request)
    row = d.images.alias(proj, request.match_info["name"])
    body = await read_json(request)
    values = {}
    if "target" in body or request.method == "PUT":
        if not body.get("target"):
            raise BadRequest("Alias needs a 'target' fingerprint")
        values["fingerprint"] = d.images.get(proj, body["target"])["fingerprint"]
    if "description" in body or request.method == "PUT":
        values["description"] = str(body.get("description") or "")
    d.alias_rows.update(row["project"], row["name"], **values)
    return response.sync({})


async def rename_alias(request: web.Request) -> web.Response:
    d = daemon(request)
    proj = project(request)
    row = d.images.alias(proj, request.match_info["name"])
    body = await read_json(request)
    new = validate_alias_name(body.get("name"))
    if d.alias_rows.exists(row["project"], new):
        raise Conflict(f"Alias {new!r} already exists")
    d.alias_rows.rename(row["project"], row["name"], new)
    return response.created(f"/1.0/images/aliases/{new}")


async def delete_alias(request: web.Request) -> web.Response:
    d = daemon(request)
    proj = project(request)
    row = d.images.alias(proj, request.match_info["name"])
    d.alias_rows.delete(row["project"], row["name"])
    return response.sync({})


ROUTES = [
    ("GET", "/1.0/images", list_images, PROJECT),
    ("POST", "/1.0/images", create_image, PROJECT),
    ("GET", "/1.0/images/aliases", list_aliases, PROJECT),
    ("POST", "/1.0/images/aliases", create_alias, PROJECT),
    ("GET", "/1.0/images/aliases/{name:.+}", get_alias, PROJECT),
    ("PUT", "/1.0/images/aliases/{name:.+}", update_alias, PROJECT),
    ("PATCH", "/1.0/images/aliases/{name:.+}", update_alias, PROJECT),
    ("POST", "/1.0/images/aliases/{name:.+}", rename_alias, PROJECT),
    ("DELETE", "/1.0/images/aliases/{name:.+}", delete_alias, PROJECT),
    ("GET", "/1.0/images/{fingerprint}", get_image, PROJECT),
    ("PUT", "/1.0/images/{fingerprint}", update_image, PROJECT),
    ("PATCH", "/1.0/images/{fingerprint}", update_image, PROJECT),
    ("DELETE", "/1.0/images/{fingerprint}", delete_image, PROJECT),
    ("GET", "/1.0/images/{fingerprint}/export", export_image, PROJECT),
]
