"""/1.0/instances/<name>/files?path=: read, write and delete files in an instance.

Path resolution is InstanceFS's job (never escapes the container root); this
module only speaks the X-LXD-* header protocol. Every filesystem call runs on a
small pool of threads of its own, never on the event loop: a running container
can put a FUSE mount (or a stuck network filesystem) under any path, and one
open that never returns must not freeze the daemon, nor use up the threads the
rest of the daemon relies on.
"""
import asyncio
import functools
import os
from concurrent.futures import ThreadPoolExecutor

from aiohttp import web

from runtime.api import daemon, project, response
from runtime.auth import PROJECT
from runtime.errors import BadRequest

CHUNK = 256 * 1024
MAX_SYMLINK_TARGET = 4096
_POOL = ThreadPoolExecutor(max_workers=8, thread_name_prefix="instance-files")


async def _io(fn, *args, **kwargs):
    """fn(*args) on the files pool."""
    return await asyncio.get_running_loop().run_in_executor(
        _POOL, functools.partial(fn, *args, **kwargs))


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


def _with_fs(handler):
    """handler(request, fs) with the instance's files view for the request's length."""
    @functools.wraps(handler)
    async def wrapped(request: web.Request) -> web.StreamResponse:
        d = daemon(request)
        inst = d.instances.load(project(request), request.match_info["name"])
        async with d.instances.files_view(inst) as fs:
            return await handler(request, fs)
    return wrapped


def _path(request: web.Request) -> str:
    path = request.query.get("path")
    if not path:
        raise BadRequest("Missing 'path' query parameter")
    return path


@_with_fs
async def get_file(request: web.Request, fs) -> web.StreamResponse:
    path = _path(request)
    info = await _io(fs.stat, path)
    headers = {"X-LXD-uid": str(info["uid"]), "X-LXD-gid": str(info["gid"]),
               "X-LXD-mode": f"{info['mode']:04o}", "X-LXD-type": info["type"]}
    if info["type"] == "directory":
        resp = response.sync(await _io(fs.listdir, path))
        resp.headers.update(headers)
        return resp
    if info["type"] == "symlink":
        return web.Response(body=info["target"].encode(), headers=headers,
                            content_type="application/octet-stream")
    fd = await _io(fs.open_read, path)
    try:
        size = (await _io(os.fstat, fd)).st_size
        resp = web.StreamResponse(headers={**headers,
                                           "Content-Type": "application/octet-stream"})
        resp.content_length = size
        await resp.prepare(request)
        while True:
            data = await _io(os.read, fd, CHUNK)
            if not data:
                break
            await resp.write(data)
    finally:
        os.close(fd)
    await resp.write_eof()
    return resp


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


@_with_fs
async def post_file(request: web.Request, fs) -> web.Response:
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
        await _io(fs.mkdir, path, uid, gid, mode)
    elif kind == "symlink":
        raw = await request.content.read(MAX_SYMLINK_TARGET + 1)
        if len(raw) > MAX_SYMLINK_TARGET:
            raise BadRequest(f"A symlink target is at most {MAX_SYMLINK_TARGET} bytes")
        try:
            target = raw.decode(errors="strict")
        except UnicodeDecodeError:
            raise BadRequest("A symlink target must be UTF-8 text")
        if not target or "\x00" in target:
            raise BadRequest("A symlink needs its target as the request body")
        await _io(fs.symlink, path, target, uid, gid)
    elif kind == "file":
        fd = await _io(fs.open_write, path, uid, gid, mode, append=write == "append")
        try:
            async for chunk in request.content.iter_chunked(CHUNK):
                await _io(_write_all, fd, chunk)
        finally:
            os.close(fd)
    else:
        raise BadRequest(f"Invalid X-LXD-type header {kind!r}: use file, directory or symlink")
    return response.sync({})


@_with_fs
async def delete_file(request: web.Request, fs) -> web.Response:
    await _io(fs.delete, _path(request))
    return response.sync({})


ROUTES = [
    ("GET", "/1.0/instances/{name}/files", get_file, PROJECT),
    ("POST", "/1.0/instances/{name}/files", post_file, PROJECT),
    ("DELETE", "/1.0/instances/{name}/files", delete_file, PROJECT),
]
