"""The web app: mounts every resource module's endpoint table, with one error path.

Each module declares ROUTES as (method, path, handler, untrusted_ok). Instance
endpoints are mounted a second time under the legacy /1.0/containers prefix.
"""
import json
import logging

from aiohttp import web

from runtime import errors
from runtime.api import response

LOG = logging.getLogger(__name__)
MODULES = ["server", "instances", "console", "exec", "files", "images", "profiles", "storage",
           "networks", "operations", "events", "snapshots", "certificates", "projects",
           "resources", "volumes"]


async def read_json(request: web.Request) -> dict:
    """The request body as a JSON object, or a clear 400."""
    try:
        text = await request.text()
        body = json.loads(text) if text.strip() else {}
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
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


def project(request: web.Request) -> str:
    name = request.query.get("project") or "default"
    if not daemon(request).db.get("projects", name=name):
        raise errors.NotFound(f"Project {name!r} not found")
    return name


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


def build_app(d, trusted_check=None) -> web.Application:
    import importlib
    app = web.Application(middlewares=[error_middleware], client_max_size=0)
    app["daemon"] = d
    app["untrusted_ok"] = set()
    for modname in MODULES:
        try:
            mod = importlib.import_module(f"runtime.api.{modname}")
        except ModuleNotFoundError as exc:
            if exc.name == f"runtime.api.{modname}":
                continue
            raise
        for method, path, handler, untrusted in mod.ROUTES:
            paths = [path]
            if path.startswith("/1.0/instances"):
                paths.append("/1.0/containers" + path[len("/1.0/instances"):])
            for p in paths:
                app.router.add_route(method, p, handler)
                if untrusted:
                    app["untrusted_ok"].add((method, p))
    return app
