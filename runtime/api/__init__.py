"""The web app: mounts every resource module's endpoint table, with one error path.

Each module declares ROUTES as (method, path, handler, access), access being one
of runtime.auth's levels (who may call it; checked for every request by
runtime.auth before the handler runs). Instance endpoints are mounted a second
time under the legacy /1.0/containers prefix.
"""
import json
import logging

from aiohttp import web

from runtime import auth, errors
from runtime.api import response

LOG = logging.getLogger(__name__)
# JSON request bodies are read whole, so they are capped: the largest real ones
# (an instance with cloud-init user data, a migration target) are tens of KB.
# Only image uploads and file pushes are streamed, never held in memory.
MAX_JSON_BODY = 4 * 1024 * 1024
MODULES = ["server", "instances", "console", "exec", "files", "images", "profiles", "storage",
           "networks", "operations", "events", "snapshots", "certificates", "projects",
           "resources", "volumes", "metrics"]


async def read_body(request: web.Request, limit: int = MAX_JSON_BODY) -> bytes:
    """The whole request body, refused with a 413 as soon as it passes limit bytes."""
    if request.content_length is not None and request.content_length > limit:
        raise errors.RequestTooLarge(f"Request body larger than {limit} bytes")
    data = bytearray()
    while chunk := await request.content.read(64 * 1024):
        data += chunk
        if len(data) > limit:
            raise errors.RequestTooLarge(f"Request body larger than {limit} bytes")
    return bytes(data)


async def read_json(request: web.Request) -> dict:
    """The request body as a JSON object, or a clear 400 (413 when too large)."""
    try:
        text = (await read_body(request)).decode()
        body = json.loads(text) if text.strip() else {}
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise errors.BadRequest(f"Invalid JSON in request body: {exc}")
    if not isinstance(body, dict):
        raise errors.BadRequest("Request body must be a JSON object")
    return body


_KINDS = {dict: "an object", str: "a string", list: "a list", bool: "true or false",
          int: "an integer"}


def field(body: dict, key: str, kind: type, default=None):
    """body[key] when it is of that kind, default when absent or null, else a clear 400."""
    value = body.get(key)
    if value is None:
        return default
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise errors.BadRequest(f"'{key}' must be {_KINDS[kind]}")
    return value


def daemon(request: web.Request):
    return request.app["daemon"]


def requested_project(request: web.Request) -> str:
    """The request's project (`?project=`, default "default"), which must exist."""
    name = request.query.get("project") or "default"
    if not daemon(request).db.get("projects", name=name):
        raise errors.NotFound(f"Project {name!r} not found")
    return name


def project(request: web.Request) -> str:
    """The request's project, which the caller must be allowed to use."""
    return auth.require(request, requested_project(request))


def recursion(request: web.Request) -> int:
    try:
        return int(request.query.get("recursion", "0"))
    except ValueError:
        raise errors.BadRequest("Invalid 'recursion' parameter")


@web.middleware
async def error_middleware(request: web.Request, handler):
    try:
        return await handler(request)
    except errors.RuntimeAPIError as exc:
        if exc.status >= 500:
            LOG.error("%s %s: %s", request.method, request.path, exc)
        return response.error(str(exc), exc.status)
    except web.HTTPNotFound:
        return response.error("not found", 404)
    except web.HTTPMethodNotAllowed:
        return response.error("method not allowed", 405)
    except web.HTTPException:
        raise
    except Exception as exc:
        LOG.exception("%s %s failed", request.method, request.path)
        return response.error(f"Internal error: {type(exc).__name__}: {exc}", 500)


@web.middleware
async def unix_middleware(request: web.Request, handler):
    """The unix socket is root's (0660 root:root): its callers are administrators."""
    return await auth.authorize(request, handler, auth.UNIX)


def build_app(d) -> web.Application:
    import importlib
    app = web.Application(middlewares=[error_middleware, unix_middleware],
                          client_max_size=MAX_JSON_BODY)
    app["daemon"] = d
    app["access"] = {}
    for modname in MODULES:
        try:
            mod = importlib.import_module(f"runtime.api.{modname}")
        except ModuleNotFoundError as exc:
            if exc.name == f"runtime.api.{modname}":
                continue
            raise
        for method, path, handler, access in mod.ROUTES:
            if not isinstance(access, auth.Access):
                raise TypeError(f"{modname}: {method} {path} needs an access level")
            paths = [path]
            if path.startswith("/1.0/instances"):
                paths.append("/1.0/containers" + path[len("/1.0/instances"):])
            for p in paths:
                route = app.router.add_route(method, p, handler)
                app["access"][(method, route.resource.canonical)] = access
    return app
