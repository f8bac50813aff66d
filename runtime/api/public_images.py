"""Public images for clients the server does not trust (LXD's image server role).

`runtime.auth` falls back to these handlers when an untrusted client may not call
an image endpoint: such a client sees only the images marked public, their aliases
and their files, and nothing else of the project.
"""
import urllib.parse

from aiohttp import web

from runtime.api import daemon, recursion, requested_project, response
from runtime.api.images import export_response
from runtime.errors import NotFound, RuntimeAPIError


def untrusted_handler(request: web.Request):
    """A handler for an untrusted GET of public images, or None."""
    if request.method not in ("GET", "HEAD"):
        return None
    path = request.path
    if path in ("/1.0/images", "/1.0/images/aliases"):
        return _public_list
    if path.startswith("/1.0/images/aliases/"):
        return _public_alias
    if path.startswith("/1.0/images/") and path.count("/") in (3, 4):
        return _public_image
    return None


def _public_rows(d, project: str) -> list[dict]:
    return d.image_rows.list(d.images.project_of(project), public_only=True)


async def _public_list(request: web.Request):
    d = daemon(request)
    proj = requested_project(request)
    rows = _public_rows(d, proj)
    if request.path.endswith("/aliases"):
        fps = {r["fingerprint"] for r in rows}
        aliases = [a for a in d.alias_rows.list(d.images.project_of(proj))
                   if a["fingerprint"] in fps]
        if recursion(request):
            return response.sync([{"name": a["name"], "target": a["fingerprint"],
                                   "description": a["description"], "type": a["type"]}
                                  for a in aliases])
        return response.sync([f"/1.0/images/aliases/{a['name']}" for a in aliases])
    if recursion(request):
        return response.sync([d.images.render(proj, r) for r in rows])
    return response.sync([f"/1.0/images/{r['fingerprint']}" for r in rows])


async def _public_alias(request: web.Request):
    d = daemon(request)
    proj = requested_project(request)
    name = urllib.parse.unquote(request.path[len("/1.0/images/aliases/"):])
    row = d.alias_rows.get(d.images.project_of(proj), name)
    if row is None or not _is_public(d, proj, row["fingerprint"]):
        raise NotFound(f"Image alias {name!r} not found")
    return response.sync({"name": row["name"], "target": row["fingerprint"],
                          "description": row["description"], "type": row["type"]})


def _is_public(d, proj: str, fp: str) -> bool:
    row = d.image_rows.get(d.images.project_of(proj), fp)
    return bool(row and row["public"])


async def _public_image(request: web.Request):
    d = daemon(request)
    parts = request.path.split("/")
    proj = requested_project(request)
    try:
        row = d.images.get(proj, parts[3])
    except RuntimeAPIError:
        raise NotFound("Image not found")
    if not row["public"] or (len(parts) == 5 and parts[4] != "export"):
        raise NotFound("Image not found")
    if len(parts) == 4:
        return response.sync(d.images.render(proj, row))
    return await export_response(request, d.images, row)
