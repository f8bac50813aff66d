"""/1.0/storage-pools/<pool>/volumes: custom volumes (create, list, get, update,
rename, copy, delete, snapshots) and a read-only view of instance and image volumes.

Handlers parse and render; the volumes themselves (rows, rules, driver calls) are
runtime.storage.volumes' business.
"""

from aiohttp import web

from runtime import auth, controlchars
from runtime.instances import restrictions
from runtime.api import daemon, field, project, read_json, recursion, response
from runtime.auth import PROJECT
from runtime.base.timefmt import parse_time, render_time, timestamp
from runtime.errors import BadRequest, NotFound
from runtime.storage.volumes import snap_name

_TYPES = {"custom": "custom", "container": "container", "containers": "container",
          "image": "image", "images": "image", "instance": "container"}


def _pool(request: web.Request):
    d = daemon(request)
    name = request.match_info["pool"]
    if not d.db.get("storage_pools", name=name):
        raise NotFound(f"Storage pool {name!r} not found")
    return d, d.pool(name)


def _url(pool, name: str) -> str:
    return f"/1.0/storage-pools/{pool.name}/volumes/custom/{name}"


def _render_custom(request: web.Request, d, pool, row: dict) -> dict:
    return {"name": row["name"], "type": "custom", "content_type": "filesystem",
            "description": row["description"], "config": row["config"],
            "used_by": auth.visible(request, d.volumes.used_by(pool.name, row["project"],
                                                               row["name"])),
            "location": "none", "created_at": timestamp(row["created_at"]),
            "pool": pool.name, "project": row["project"]}


def _instance_volumes(d, pool, proj: str) -> list[dict]:
    out = []
    for inst in d.instances.list(proj):
        if inst.pool == pool.name:
            out.append({"name": inst.name, "type": "container",
                        "content_type": "filesystem", "description": "", "config": {},
                        "used_by": [inst.url], "location": "none",
                        "created_at": timestamp(inst.created_at), "pool": pool.name,
                        "project": inst.project})
    return out


def _image_volumes(d, pool, proj: str) -> list[dict]:
    """The pool's unpacked images that this project's image list holds."""
    mine = set(d.image_rows.fingerprints(d.image_project(proj)))
    return [{"name": fp, "type": "image", "content_type": "filesystem", "description": "",
             "config": {}, "used_by": [f"/1.0/images/{fp}"], "location": "none",
             "created_at": timestamp(when), "pool": pool.name, "project": "default"}
            for fp, when in pool.ready_images().items() if fp in mine]


def _all(request: web.Request, d, pool, proj: str, vtype: str | None) -> list[dict]:
    items = []
    if vtype in (None, "container"):
        items += _instance_volumes(d, pool, proj)
    if vtype in (None, "image"):
        items += _image_volumes(d, pool, proj)
    if vtype in (None, "custom"):
        items += [_render_custom(request, d, pool, r) for r in d.volumes.rows(pool.name, proj)]
    return items


def _vtype(request: web.Request) -> str:
    raw = request.match_info["type"]
    if raw not in _TYPES:
        raise BadRequest(f"Unknown storage volume type {raw!r} (custom, container, image)")
    return _TYPES[raw]


async def list_volumes(request: web.Request) -> web.Response:
    d, pool = _pool(request)
    vtype = _vtype(request) if "type" in request.match_info else None
    items = _all(request, d, pool, project(request), vtype)
    if recursion(request):
        return response.sync(items)
    return response.sync([f"/1.0/storage-pools/{pool.name}/volumes/{v['type']}/{v['name']}"
                          for v in items])


async def create_volume(request: web.Request) -> web.Response:
    d, pool = _pool(request)
    proj = project(request)
    body = await read_json(request)
    vtype = _TYPES.get(request.match_info.get("type") or body.get("type") or "custom")
    if vtype != "custom":
        raise BadRequest("Only custom storage volumes can be created")
    config = controlchars.string_map(body.get("config") or {}, "volume config")
    ctype = body.get("content_type") or "filesystem"
    if ctype != "filesystem":
        raise BadRequest("Only 'filesystem' custom volumes are supported (no block volumes)")
    source = field(body, "source", dict, {})
    copy_of = None
    if source.get("type") == "copy":
        copy_of = {"pool": source.get("pool") or pool.name, "name": source.get("name"),
                   "project": auth.require(request, source.get("project") or proj)}
    elif source.get("type") not in (None, "", "none"):
        raise BadRequest(f"Unsupported volume source type {source.get('type')!r}")
    name, enforced = await d.volumes.create(pool, proj, body.get("name"),
                                            str(body.get("description") or ""), config, copy_of)
    d.bus.lifecycle("storage-volume-created", _url(pool, name), proj)
    return response.created(_url(pool, name))


def _named(request: web.Request):
    d, pool = _pool(request)
    proj = project(request)
    vtype = _vtype(request)
    name = request.match_info["vol"]
    return d, pool, proj, vtype, name


def _custom(request: web.Request, what: str):
    """The custom volume a request names; `what` says what other types can't do."""
    d, pool, proj, vtype, name = _named(request)
    if vtype != "custom":
        raise BadRequest(what)
    return d, pool, proj, d.volumes.get(pool.name, proj, name)


async def get_volume(request: web.Request) -> web.Response:
    d, pool, proj, vtype, name = _named(request)
    if vtype != "custom":
        for item in _all(request, d, pool, proj, vtype):
            if item["name"] == name:
                return response.sync(item)
        raise NotFound(f"Storage volume {name!r} not found in pool {pool.name!r}")
    return response.sync(_render_custom(request, d, pool, d.volumes.get(pool.name, proj, name)))


async def get_volume_state(request: web.Request) -> web.Response:
    d, pool, _proj, row = _custom(request, "State is only reported for custom volumes")
    return response.sync({"usage": await d.volumes.usage(pool, row)})


async def update_volume(request: web.Request) -> web.Response:
    d, pool, proj, row = _custom(request, "Only custom storage volumes can be changed")
    body = await read_json(request)
    if request.method == "PUT" and body.get("restore"):
        snap = str(body["restore"])
        await d.volumes.restore(pool, row, snap)
        d.bus.lifecycle("storage-volume-restored", _url(pool, row["name"]), row["project"],
                        {"snapshot": snap})
        return response.sync({})
    config = description = None
    if "config" in body or request.method == "PUT":
        config = controlchars.string_map(body.get("config") or {}, "volume config")
        if request.method == "PATCH":
            config = {**row["config"], **config}
    if "description" in body or request.method == "PUT":
        description = str(body.get("description") or "")
    await d.volumes.update(pool, row, config, description)
    d.bus.lifecycle("storage-volume-updated", _url(pool, row["name"]), proj)
    return response.sync({})


async def rename_volume(request: web.Request) -> web.Response:
    d, pool, proj, row = _custom(request, "Only custom storage volumes can be renamed")
    body = await read_json(request)
    if body.get("migration"):
        raise BadRequest("Migrating storage volumes is not supported by this runtime")
    if body.get("pool") and body["pool"] != pool.name:
        raise BadRequest("Moving a volume to another pool is not supported: copy it "
                         "(source type 'copy') and delete the original")
    new = await d.volumes.rename(pool, row, body.get("name"))
    d.bus.lifecycle("storage-volume-renamed", _url(pool, new), proj, {"old_name": row["name"]})
    return response.created(_url(pool, new))


async def delete_volume(request: web.Request) -> web.Response:
    d, pool, proj, row = _custom(request, "Only custom storage volumes can be deleted here "
                                          "(delete the instance or image instead)")
    await d.volumes.delete(pool, row)
    d.bus.lifecycle("storage-volume-deleted", _url(pool, row["name"]), proj)
    return response.sync({})


# Snapshots of custom volumes --------------------------------------------------------
def _render_snap(srow: dict) -> dict:
    return {"name": srow["name"], "description": srow["description"],
            "config": {k: v for k, v in srow["config"].items() if k != "_expires_at"},
            "content_type": "filesystem", "created_at": timestamp(srow["created_at"]),
            "expires_at": render_time(float(srow["config"].get("_expires_at") or 0))}


def _vol_for_snapshots(request: web.Request):
    return _custom(request, "Only custom volumes have snapshots here (use the instance's)")


async def list_volume_snapshots(request: web.Request) -> web.Response:
    d, pool, proj, row = _vol_for_snapshots(request)
    rows = d.volumes.snapshots(pool, row)
    if recursion(request):
        return response.sync([_render_snap(r) for r in rows])
    base = _url(pool, row["name"]) + "/snapshots"
    return response.sync([f"{base}/{snap_name(r)}" for r in rows])


async def create_volume_snapshot(request: web.Request) -> web.Response:
    d, pool, proj, row = _vol_for_snapshots(request)
    restrictions.rules(d, proj).check_snapshots(f"storage volume {row['name']!r}")
    body = await read_json(request)
    snap = d.volumes.next_snapshot_name(pool, row, body.get("name"))
    expires = parse_time(body.get("expires_at"))
    url = f"{_url(pool, row['name'])}/snapshots/{snap}"

    async def run(op):
        await d.volumes.create_snapshot(pool, row, snap, str(body.get("description") or ""),
                                        expires)
        if expires:
            d.snapshots.wake.set()
        d.bus.lifecycle("storage-volume-snapshot-created", url, proj)
    return response.async_(d.ops.create("task", "Snapshotting storage volume", run,
                                        project=proj,
                                        resources={"storage_volume_snapshots": [url]}))


def _named_snapshot(request: web.Request):
    d, pool, proj, row = _vol_for_snapshots(request)
    snap = request.match_info["snap"]
    return d, pool, proj, row, d.volumes.snapshot(pool, row, snap)


async def get_volume_snapshot(request: web.Request) -> web.Response:
    srow = _named_snapshot(request)[-1]
    return response.sync(_render_snap(srow))


async def update_volume_snapshot(request: web.Request) -> web.Response:
    d, pool, _proj, _row, srow = _named_snapshot(request)
    body = await read_json(request)
    expires = parse_time(body["expires_at"]) if "expires_at" in body else None
    description = str(body["description"] or "") if "description" in body else None
    d.volumes.update_snapshot(pool, srow, expires, description)
    d.snapshots.wake.set()
    return response.sync({})


async def rename_volume_snapshot(request: web.Request) -> web.Response:
    d, pool, proj, row, srow = _named_snapshot(request)
    body = await read_json(request)
    d.volumes.rename_snapshot(pool, row, srow, body.get("name"))
    return response.async_(d.ops.completed("Renaming storage volume snapshot", project=proj))


async def delete_volume_snapshot(request: web.Request) -> web.Response:
    d, pool, proj, row, srow = _named_snapshot(request)

    async def run(op):
        await d.volumes.delete_snapshot(pool, row, srow)
    return response.async_(d.ops.create("task", "Deleting storage volume snapshot", run,
                                        project=proj))


_BASE = "/1.0/storage-pools/{pool}/volumes"
ROUTES = [
    ("GET", _BASE, list_volumes, PROJECT),
    ("POST", _BASE, create_volume, PROJECT),
    ("GET", _BASE + "/{type}", list_volumes, PROJECT),
    ("POST", _BASE + "/{type}", create_volume, PROJECT),
    ("GET", _BASE + "/{type}/{vol}", get_volume, PROJECT),
    ("PUT", _BASE + "/{type}/{vol}", update_volume, PROJECT),
    ("PATCH", _BASE + "/{type}/{vol}", update_volume, PROJECT),
    ("POST", _BASE + "/{type}/{vol}", rename_volume, PROJECT),
    ("DELETE", _BASE + "/{type}/{vol}", delete_volume, PROJECT),
    ("GET", _BASE + "/{type}/{vol}/state", get_volume_state, PROJECT),
    ("GET", _BASE + "/{type}/{vol}/snapshots", list_volume_snapshots, PROJECT),
    ("POST", _BASE + "/{type}/{vol}/snapshots", create_volume_snapshot, PROJECT),
    ("GET", _BASE + "/{type}/{vol}/snapshots/{snap}", get_volume_snapshot, PROJECT),
    ("PUT", _BASE + "/{type}/{vol}/snapshots/{snap}", update_volume_snapshot, PROJECT),
    ("PATCH", _BASE + "/{type}/{vol}/snapshots/{snap}", update_volume_snapshot, PROJECT),
    ("POST", _BASE + "/{type}/{vol}/snapshots/{snap}", rename_volume_snapshot, PROJECT),
    ("DELETE", _BASE + "/{type}/{vol}/snapshots/{snap}", delete_volume_snapshot, PROJECT),
]
