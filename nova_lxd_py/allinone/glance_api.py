"""A small Glance v2 image API over nova's in-process Glance stand-in.

Why: nova's ``GlanceFixture`` is what nova's services use for images here,
but it has no HTTP face, and an operator uploads images over HTTP. This
serves the part of the Glance v2 API an operator needs to add, list, show,
download and delete images (the same calls ``curl`` or any Glance client
makes), and stores them in the stand-in, so nova sees exactly what was
uploaded. Snapshots nova takes land in the same store and show up here.
It is not Glance: no image import, members, tasks or schemas.
"""
from __future__ import annotations

import datetime
import json
import re
import uuid
from collections.abc import Callable, Iterable
from typing import Any

# Top-level Glance v2 fields; everything else a client sends is a property.
_CORE = ("id", "name", "status", "disk_format", "container_format", "size", "min_disk",
         "min_ram", "visibility", "protected", "checksum", "created_at", "updated_at",
         "owner", "tags")
_READ_ONLY = ("status", "size", "checksum", "created_at", "updated_at")
_IMAGE = re.compile(r"^/v2/images/([0-9a-fA-F-]{36})(/file)?$")


def keep_snapshot_data(glance: Any) -> None:
    """Make the stand-in keep data given to ``update`` (nova's snapshot
    upload path), as Glance does; the stand-in drops it."""
    original = glance.update

    def update(context, image_id, metadata, data=None, purge_props=False):
        if data is not None:
            payload = data.read() if hasattr(data, "read") else b"".join(data)
            glance._imagedata[image_id] = payload
            metadata = dict(metadata, size=len(payload))
        return original(context, image_id, metadata, data=None, purge_props=purge_props)

    glance.update = update


def _iso(value: Any) -> str | None:
    if isinstance(value, datetime.datetime):
        return value.strftime("%Y-%m-%dT%H:%M:%SZ")
    return value


def to_wire(image: dict) -> dict:
    """The stand-in's nova-side image dict in Glance v2's flat JSON form."""
    properties = dict(image.get("properties") or {})
    owner = properties.pop("owner", image.get("owner"))
    body = {key: _iso(image.get(key)) for key in _CORE if key in image}
    body.setdefault("visibility", "public" if image.get("is_public", True) else "private")
    body.update({"owner": owner, "tags": image.get("tags", []),
                 "self": f"/v2/images/{image['id']}", "file": f"/v2/images/{image['id']}/file",
                 "schema": "/v2/schemas/image"})
    body.update(properties)
    return body


def from_wire(body: dict) -> dict:
    """A Glance v2 create/patch body to the stand-in's form."""
    image: dict[str, Any] = {"properties": {}}
    for key, value in body.items():
        if key in _READ_ONLY:
            continue
        if key in _CORE:
            image[key] = value
        else:
            image["properties"][key] = value
    return image


class GlanceV2:
    """WSGI app: /v2/images (GET, POST), /v2/images/<id> (GET, PATCH,
    DELETE), /v2/images/<id>/file (GET, PUT), and version discovery."""

    def __init__(self, glance: Any, owner: str):
        self.glance = glance
        self.owner = owner

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        method = environ["REQUEST_METHOD"]
        path = environ.get("PATH_INFO", "/").rstrip("/") or "/"
        try:
            if path in ("/", "/versions"):
                return self._json(start_response, 200, {"versions": [{
                    "id": "v2.9", "status": "CURRENT",
                    "links": [{"rel": "self", "href": self._url(environ, "/v2/")}]}]})
            if path == "/v2/images":
                if method == "GET":
                    images = [to_wire(i) for i in self.glance.detail(None)]
                    return self._json(start_response, 200, {"images": images,
                                                            "schema": "/v2/schemas/images"})
                if method == "POST":
                    return self._create(environ, start_response)
            match = _IMAGE.match(path)
            if match:
                image_id, file_part = match.group(1), match.group(2)
                image = self.glance.images.get(image_id)
                if image is None:
                    return self._error(start_response, 404, f"No image found with ID {image_id}")
                if file_part and method == "PUT":
                    return self._upload(environ, start_response, image_id)
                if file_part and method == "GET":
                    data = self.glance._imagedata.get(image_id, b"")
                    if not data:
                        return self._error(start_response, 204, "")
                    start_response("200 OK", [("Content-Type", "application/octet-stream"),
                                              ("Content-Length", str(len(data)))])
                    return [data]
                if not file_part and method == "GET":
                    return self._json(start_response, 200, to_wire(image))
                if not file_part and method == "DELETE":
                    self.glance.delete(None, image_id)
                    self.glance._imagedata.pop(image_id, None)
                    start_response("204 No Content", [])
                    return [b""]
            return self._error(start_response, 404 if method == "GET" else 405,
                               f"{method} {path} is not served by this image API")
        except (ValueError, KeyError) as exc:
            return self._error(start_response, 400, f"bad request: {exc}")

    def _create(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        body = json.loads(self._read(environ) or b"{}")
        image = from_wire(body)
        image.setdefault("id", str(uuid.uuid4()))
        image["status"] = "queued"
        image["size"] = 0
        image["properties"].setdefault("owner", self.owner)
        created = self.glance.create(None, image)
        return self._json(start_response, 201, to_wire(created))

    def _upload(self, environ: dict, start_response: Callable, image_id: str) -> Iterable[bytes]:
        data = self._read(environ)
        self.glance._imagedata[image_id] = data
        self.glance.images[image_id].update(status="active", size=len(data))
        start_response("204 No Content", [])
        return [b""]

    @staticmethod
    def _read(environ: dict) -> bytes:
        length = environ.get("CONTENT_LENGTH")
        if not length:  # wsgiref does not decode chunked bodies
            if environ.get("HTTP_TRANSFER_ENCODING"):
                raise ValueError("send a Content-Length (chunked uploads are not served)")
            return b""
        return environ["wsgi.input"].read(int(length))

    @staticmethod
    def _url(environ: dict, path: str) -> str:
        return f"http://{environ.get('HTTP_HOST', 'localhost')}{path}"

    @staticmethod
    def _json(start_response: Callable, status: int, body: dict) -> Iterable[bytes]:
        data = json.dumps(body).encode()
        reason = {200: "OK", 201: "Created"}.get(status, "OK")
        start_response(f"{status} {reason}", [("Content-Type", "application/json"),
                                              ("Content-Length", str(len(data)))])
        return [data]

    @staticmethod
    def _error(start_response: Callable, status: int, message: str) -> Iterable[bytes]:
        reasons = {204: "No Content", 400: "Bad Request", 404: "Not Found",
                   405: "Method Not Allowed"}
        if status == 204:
            start_response("204 No Content", [])
            return [b""]
        data = json.dumps({"code": status, "title": reasons.get(status, "Error"),
                           "message": message}).encode()
        start_response(f"{status} {reasons.get(status, 'Error')}",
                       [("Content-Type", "application/json"),
                        ("Content-Length", str(len(data)))])
        return [data]
