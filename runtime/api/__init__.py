"""The LXD REST API: one module per resource, and what their handlers share here.

Each resource module declares ROUTES as (method, path, handler, access), access
being one of runtime.auth's levels (who may call it; checked for every request by
runtime.auth before the handler runs); `runtime.api.app` mounts them. Handlers
parse, authorise and call the daemon's subsystems; they reach the daemon with
`daemon(request)`.
"""
from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from runtime import auth, errors
from runtime.appkeys import DAEMON

# JSON request bodies are read whole, so they are capped: the largest real ones
# (an instance with cloud-init user data, a migration target) are tens of KB.
# Only image uploads and file pushes are streamed, never held in memory.
MAX_JSON_BODY = 4 * 1024 * 1024


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


def daemon(request: web.Request) -> Any:
    """The runtime.daemon.Daemon serving the request: its subsystems are attributes."""
    return request.app[DAEMON]


def requested_project(request: web.Request) -> str:
    """The request's project (`?project=`, default "default"), which must exist."""
    name = request.query.get("project") or "default"
    if not daemon(request).project_rows.exists(name):
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
