"""/1.0/instances/<name>/files?path=: read, write and delete files in an instance.

Path resolution is InstanceFS's job (never escapes the container root); this
module only speaks the X-LXD-* header protocol.
"""
import asyncio
import os

from aiohttp import web

from runtime.api import daemon, project, response
from runtime.auth import PROJECT
from runtime.errors import BadRequest

CHUNK = 256 * 1024


def _int_header(request: web.Request, name: str, base: int = 10) -> int | None:
    value = request.headers.get(name)
    if value is None or value == "" or value == "-1":
        return None
    try:
        n = int(value, base)
    except ValueError:
        raise BadRequest(f"Invalid {name} header {value!r}")
    if n < 0:
        raise BadRequest(f"Invalid {name} header {value!r}")
    return n


async def _fs(request: web.Request):
    d = daemon(request)
    inst = d.instances.load(project(request), request.match_info["name"])
    return await d.instances.mounted_fs(inst)


def _path(request: web.Request) -> str:
    path = request.query.get("path")
    if not path:
        raise BadRequest("Missing 'path' query parameter")
    return path


async def get_file(request: web.Request) -> web.StreamResponse:
    fs = await _fs(request)
    path = _path(request)
    info = fs.stat(path)
    headers = {"X-LXD-uid": str(info["uid"]), "X-LXD-gid": str(info["gid"]),
               "X-LXD-mode": f"{info['mode']:04o}", "X-LXD-type": info["type"]}
    if info["type"] == "directory":
        resp = response.sync(fs.listdir(path))
        resp.headers.update(headers)
        return resp
    if info["type"] == "symlink":
        return web.Response(body=info["target"].encode(), headers=headers,
                            content_type="application/octet-stream")
    fd = fs.open_read(path)
    resp = web.StreamResponse(headers={**headers, "Content-Type": "application/octet-stream"})
    resp.content_length = os.fstat(fd).st_size
    await resp.prepare(request)
    try:
        while True:
            data = await asyncio.to_thread(os.read, fd, CHUNK)
            if not data:
                break
            await resp.write(data)
    finally:
        os.close(fd)
    await resp.write_eof()
    return resp


async def post_file(request: web.Request) -> web.Response:
    fs = await _fs(request)
    path = _path(request)
    uid = _int_header(request, "X-LXD-uid")
    gid = _int_header(request, "X-LXD-gid")
    mode = _int_header(request, "X-LXD-mode", 8)
    if mode is not None and mode > 0o7777:
        raise BadRequest("Invalid X-LXD-mode header")
    kind = request.headers.get("X-LXD-type", "file") or "file"
    write = request.headers.get("X-LXD-write", "overwrite") or "overwrite"
    if write not in ("overwrite", "append"):
        raise BadRequest(f"Invalid X-LXD-write header {write!r}: use overwrite or append")
    if kind == "directory":
        fs.mkdir(path, uid, gid, mode)
    elif kind == "symlink":
        target = (await request.read()).decode(errors="strict")
        if not target:
            raise BadRequest("A symlink needs its target as the request body")
        fs.symlink(path, target, uid, gid)
    elif kind == "file":
        fd = fs.open_write(path, uid, gid, mode, append=write == "append")
        try:
            async for chunk in request.content.iter_chunked(CHUNK):
                view = memoryview(chunk)
                while view:
                    n = os.write(fd, view)
                    view = view[n:]
        finally:
            os.close(fd)
    else:
        raise BadRequest(f"Invalid X-LXD-type header {kind!r}: use file, directory or symlink")
    return response.sync({})


async def delete_file(request: web.Request) -> web.Response:
    fs = await _fs(request)
    fs.delete(_path(request))
    return response.sync({})


ROUTES = [
    ("GET", "/1.0/instances/{name}/files", get_file, PROJECT),
    ("POST", "/1.0/instances/{name}/files", post_file, PROJECT),
    ("DELETE", "/1.0/instances/{name}/files", delete_file, PROJECT),
]
