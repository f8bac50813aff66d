"""/1.0/storage-pools: pools (dir, btrfs) with their resources and state.

Pools are server-wide: any trusted client lists them (as in LXD), but only
administrators see their config or change them, and `used_by` shows each caller
only its projects' objects.
"""
from aiohttp import web

from runtime import auth, controlchars
from runtime.api import daemon, read_json, recursion, response
from runtime.auth import ADMIN, AUTHENTICATED
from runtime.errors import BadRequest, Conflict, NotFound


def _view(request: web.Request, d, row: dict) -> dict:
    out = _render(d, row)
    if not auth.of(request).admin:
        out["config"] = {}
        out["used_by"] = auth.visible(request, out["used_by"])
    return out


def _in(project: str) -> str:
    return "" if project == "default" else f"?project={project}"


def _render(d, row: dict) -> dict:
    used = [f"/1.0/instances/{r['name']}{_in(r['project'])}"
            for r in d.db.select("instances", {"pool": row["name"]})]
    used += [f"/1.0/profiles/{p['name']}{_in(p['project'])}" for p in d.profile_rows.list()
             if any(dev.get("type") == "disk" and dev.get("pool") == row["name"]
                    for dev in p["devices"].values())]
    for vol in d.db.select("storage_volumes", {"pool": row["name"]}):
        used.append(f"/1.0/storage-pools/{row['name']}/volumes/{vol['type']}/"
                    f"{vol['name']}{_in(vol['project'])}")
    return {"name": row["name"], "driver": row["driver"], "description": row["description"],
            "config": row["config"], "status": row["status"], "locations": ["none"],
            "used_by": sorted(used)}


def _load(request: web.Request) -> dict:
    row = daemon(request).db.get("storage_pools", name=request.match_info["name"])
    if row is None:
        raise NotFound(f"Storage pool {request.match_info['name']!r} not found")
    return row


async def list_pools(request: web.Request) -> web.Response:
    d = daemon(request)
    rows = d.db.select("storage_pools", order="name")
    if recursion(request):
        return response.sync([_view(request, d, r) for r in rows])
    return response.sync([f"/1.0/storage-pools/{r['name']}" for r in rows])


async def create_pool(request: web.Request) -> web.Response:
    d = daemon(request)
    body = await read_json(request)
    name = body.get("name")
    if not isinstance(name, str) or not name or "/" in name or name in (".", "..") or \
            not name.isprintable():
        raise BadRequest(f"Invalid storage pool name {name!r}")
    if d.db.get("storage_pools", name=name):
        raise Conflict(f"Storage pool {name!r} already exists")
    config = controlchars.string_map(body.get("config") or {}, "storage pool config")
    await d.add_pool(name, str(body.get("driver") or ""), config,
                     str(body.get("description") or ""))
    return response.created(f"/1.0/storage-pools/{name}")


async def get_pool(request: web.Request) -> web.Response:
    d = daemon(request)
    out = _view(request, d, _load(request))
    out["state"] = d.pool(out["name"]).state()
    return response.sync(out)


async def get_resources(request: web.Request) -> web.Response:
    d = daemon(request)
    return response.sync(d.pool(_load(request)["name"]).resources())


async def update_pool(request: web.Request) -> web.Response:
    d = daemon(request)
    row = _load(request)
    body = await read_json(request)
    values = {}
    if "description" in body:
        values["description"] = str(body["description"] or "")
    if body.get("config"):
        given = controlchars.string_map(body["config"], "storage pool config")
        new = {**row["config"], **given} if request.method == "PATCH" else given
        if any(new.get(k) != row["config"].get(k) for k in ("source", "size")):
            raise BadRequest("A pool's 'source' and 'size' can't be changed")
        values["config"] = new
    if values:
        d.db.update("storage_pools", {"name": row["name"]}, **values)
    return response.sync({})


async def delete_pool(request: web.Request) -> web.Response:
    d = daemon(request)
    row = _load(request)
    used = _render(d, row)["used_by"]
    if used:
        raise Conflict(f"Storage pool {row['name']!r} is in use by {', '.join(used)}")
    await d.remove_pool(row["name"])
    return response.sync({})


ROUTES = [
    ("GET", "/1.0/storage-pools", list_pools, AUTHENTICATED),
    ("POST", "/1.0/storage-pools", create_pool, ADMIN),
    ("GET", "/1.0/storage-pools/{name}", get_pool, AUTHENTICATED),
    ("PUT", "/1.0/storage-pools/{name}", update_pool, ADMIN),
    ("PATCH", "/1.0/storage-pools/{name}", update_pool, ADMIN),
    ("DELETE", "/1.0/storage-pools/{name}", delete_pool, ADMIN),
    ("GET", "/1.0/storage-pools/{name}/resources", get_resources, AUTHENTICATED),
]
