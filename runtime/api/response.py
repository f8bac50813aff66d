"""LXD response envelopes: sync, async (operation) and error.

One module builds every response so that all endpoints share the exact shape
real LXD clients parse (pylxd, the lxc CLI).
"""
import json
from typing import Any

from aiohttp import web

_STATUS_TEXT = {200: "Success", 100: "Operation created"}


def _json(body: dict, status: int, headers: dict | None = None) -> web.Response:
    # Compact, as LXD writes it: listings of thousands of instances are megabytes.
    return web.Response(text=json.dumps(body, separators=(",", ":")), status=status,
                        content_type="application/json", headers=headers)


def sync(metadata: Any = None, status: int = 200, etag: str | None = None,
         location: str | None = None) -> web.Response:
    headers = {}
    if etag:
        headers["ETag"] = etag
    if location:
        headers["Location"] = location
    body = {"type": "sync", "status": "Success", "status_code": 200,
            "operation": "", "error_code": 0, "error": "", "metadata": metadata}
    return _json(body, status, headers)


def sync_list(items_json: list[str]) -> web.Response:
    """A sync response whose metadata is a list of objects already in JSON."""
    head = json.dumps({"type": "sync", "status": "Success", "status_code": 200,
                       "operation": "", "error_code": 0, "error": "", "metadata": None},
                      separators=(",", ":"))
    return web.Response(text=head[:-len("null}")] + "[" + ",".join(items_json) + "]}",
                        content_type="application/json")


def created(location: str, metadata: Any = None) -> web.Response:
    return sync(metadata, status=201, location=location)


def async_(op) -> web.Response:
    url = op.url
    body = {"type": "async", "status": "Operation created", "status_code": 100,
            "operation": url, "error_code": 0, "error": "", "metadata": op.render()}
    return _json(body, 202, {"Location": url})


def error(message: str, status: int) -> web.Response:
    body = {"type": "error", "status": "", "status_code": 0, "operation": "",
            "error_code": status, "error": message, "metadata": None}
    return _json(body, status)
