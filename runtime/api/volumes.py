"""/1.0/storage-pools/<pool>/volumes: custom volumes (create, list, get, update,
rename, copy, delete) and a read-only view of instance and image volumes.

A custom volume is a directory (a subvolume on btrfs) under the pool's `custom/`,
owned by the default id map's root so an unprivileged container sees it as its
own root's. Instances use it as a `disk` device (`pool` + `source` + `path`);
while any instance or profile does, it can't be renamed or deleted. A `size`
is enforced where the pool can (btrfs qgroups); elsewhere it is stored, the
volume's state says it is not enforced and the daemon logs a warning.
"""
import logging
import os
import re
import time

from aiohttp import web

from runtime import auth, controlchars, proc, restrictions
from runtime.api import daemon, project, read_json, recursion, response
from runtime.auth import PROJECT
from runtime.errors import BadRequest, Conflict, NotFound
from runtime.base.timefmt import parse_time, render_time, timestamp
from runtime.base.values import parse_size
from runtime.storage import volume_name
from runtime.storage.base import remove_tree

LOG = logging.getLogger(__name__)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,62}$")
_TYPES = {"custom": "custom", "container": "container", "containers": "container",
          "image": "image", "images": "image", "instance": "container"}


def _pool(request: web.Request):
    d = daemon(request)
    name = request.match_info["pool"]
    if not d.db.get("storage_pools", name=name):
        raise NotFound(f"Storage pool {name!r} not found")
    return d, d.pool(name)


def _vproj(d, proj: str) -> str:
    """The project whose custom volumes a project sees (features.storage.volumes)."""
    return d.volume_project(proj)


def _disk_path(proj: str, name: str) -> str:
    return volume_name(proj, name)


def _check_name(name: object, vproj: str) -> str:
    """On disk a volume is `<project>_<name>`, but plain `<name>` in the default
    project: there a `_` could make it another project's (project names have none)."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise BadRequest(f"Invalid storage volume name {name!r}")
    if vproj == "default" and "_" in name:
        raise BadRequest(f"Invalid storage volume name {name!r}: no '_' in the default "
                         "project (it would collide with another project's volumes)")
    return name


def _row(d, pool: str, proj: str, name: str) -> dict:
    row = d.db.get("storage_volumes", pool=pool, project=_vproj(d, proj), type="custom",
                   name=name)
    if row is None:
        raise NotFound(f"Storage volume {name!r} not found in pool {pool!r}")
    return row


def _used_by(d, pool: str, vproj: str, name: str) -> list[str]:
    """Instances and profiles with a disk device on this volume."""
    out = []
    for inst in d.instances.list(None):
        if _vproj(d, inst.project) != vproj:
            continue
        for dev in inst.expanded_devices.values():
            if dev.get("type") == "disk" and dev.get("pool") == pool and \
                    dev.get("source") == name and dev.get("path") != "/":
                out.append(inst.url)
                break
    for prof in d.db.select("profiles"):
        if _vproj(d, prof["project"]) != vproj:
            continue
        if any(dev.get("type") == "disk" and dev.get("pool") == pool and
               dev.get("source") == name for dev in prof["devices"].values()):
            suffix = "" if prof["project"] == "default" else f"?project={prof['project']}"
            out.append(f"/1.0/profiles/{prof['name']}{suffix}")
    return sorted(out)


def _render_custom(request: web.Request, d, pool, row: dict) -> dict:
    return {"name": row["name"], "type": "custom", "content_type": "filesystem",
            "description": row["description"], "config": row["config"],
            "used_by": auth.visible(request, _used_by(d, pool.name, row["project"],
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
    base = os.path.join(pool.path, "images")
    mine = set(d.db.names("images", "fingerprint", project=d.image_project(proj)))
    out = []
    if os.path.isdir(base):
        for fp in sorted(os.listdir(base)):
            if fp in mine and pool.image_ready(fp):
                out.append({"name": fp, "type": "image", "content_type": "filesystem",
                            "description": "", "config": {},
                            "used_by": [f"/1.0/images/{fp}"], "location": "none",
                            "created_at": timestamp(os.path.getmtime(pool.image_path(fp))),
                            "pool": pool.name, "project": "default"})
    return out


def _all(request: web.Request, d, pool, proj: str, vtype: str | None) -> list[dict]:
    items = []
    if vtype in (None, "container"):
        items += _instance_volumes(d, pool, proj)
    if vtype in (None, "image"):
        items += _image_volumes(d, pool, proj)
    if vtype in (None, "custom"):
        rows = d.db.select("storage_volumes", {"pool": pool.name, "project": _vproj(d, proj),
                                               "type": "custom"}, order="name")
        items += [_render_custom(request, d, pool, r) for r in rows]
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


async def _apply_size(pool, disk_name: str, size: str | None, name: str) -> bool:
    nbytes = parse_size(size) if size else None
    setter = getattr(pool, "set_custom_size", None)
    if setter is None:
        if size:
            LOG.warning("storage volume %s: size %s is not enforced by pool %s (driver %s)",
                        name, size, pool.name, pool.driver)
        return False
    return await setter(disk_name, nbytes)


async def create_volume(request: web.Request) -> web.Response:
    d, pool = _pool(request)
    proj = project(request)
    body = await read_json(request)
    vtype = _TYPES.get(request.match_info.get("type") or body.get("type") or "custom")
    if vtype != "custom":
        raise BadRequest("Only custom storage volumes can be created")
    vproj = _vproj(d, proj)
    name = _check_name(body.get("name"), vproj)
    if d.db.get("storage_volumes", pool=pool.name, project=vproj, type="custom", name=name):
        raise Conflict(f"Storage volume {name!r} already exists in pool {pool.name!r}")
    config = controlchars.string_map(body.get("config") or {}, "volume config")
    if config.get("size"):
        parse_size(config["size"])
    ctype = body.get("content_type") or "filesystem"
    if ctype != "filesystem":
        raise BadRequest("Only 'filesystem' custom volumes are supported (no block volumes)")
    source = body.get("source") or {}
    src_path = None
    if source.get("type") == "copy":
        src_pool = d.pool(source.get("pool") or pool.name)
        src_proj = auth.require(request, source.get("project") or proj)
        src_row = _row(d, src_pool.name, src_proj, source.get("name"))
        src_path = src_pool.custom_path(_disk_path(src_row["project"], src_row["name"]))
    elif source.get("type") not in (None, "", "none"):
        raise BadRequest(f"Unsupported volume source type {source.get('type')!r}")
    disk = _disk_path(vproj, name)
    path = pool.custom_path(disk)
    if os.path.lexists(path):
        raise Conflict(f"Storage volume path {path} already exists on disk")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    creator = getattr(pool, "create_custom", None)
    try:
        if creator is not None:
            await creator(disk, d.default_idmap)
        else:
            os.makedirs(path)
            os.chown(path, d.default_idmap.base, d.default_idmap.base)
        os.chmod(path, 0o711)
        if src_path:
            await proc.run(["rsync", "-aHAX", "--numeric-ids", src_path + "/", path + "/"])
        enforced = await _apply_size(pool, disk, config.get("size"), name)
        d.db.insert("storage_volumes", pool=pool.name, project=vproj, type="custom",
                    name=name, description=str(body.get("description") or ""),
                    config=config, created_at=time.time())
    except BaseException:
        await _remove(pool, disk)
        raise
    d.bus.lifecycle("storage-volume-created",
                    f"/1.0/storage-pools/{pool.name}/volumes/custom/{name}", proj)
    LOG.info("storage volume %s/%s created (size %s%s)", pool.name, name,
             config.get("size") or "unlimited",
             "" if enforced or not config.get("size") else ", not enforced")
    return response.created(f"/1.0/storage-pools/{pool.name}/volumes/custom/{name}")


async def _remove(pool, disk: str) -> None:
    remover = getattr(pool, "delete_custom", None)
    if remover is not None:
        await remover(disk)
    else:
        await remove_tree(pool.custom_path(disk))


def _named(request: web.Request):
    d, pool = _pool(request)
    proj = project(request)
    vtype = _vtype(request)
    name = request.match_info["vol"]
    return d, pool, proj, vtype, name


async def get_volume(request: web.Request) -> web.Response:
    d, pool, proj, vtype, name = _named(request)
    if vtype != "custom":
        for item in _all(request, d, pool, proj, vtype):
            if item["name"] == name:
                return response.sync(item)
        raise NotFound(f"Storage volume {name!r} not found in pool {pool.name!r}")
    row = _row(d, pool.name, proj, name)
    out = _render_custom(request, d, pool, row)
    return response.sync(out)


async def get_volume_state(request: web.Request) -> web.Response:
    d, pool, proj, vtype, name = _named(request)
    if vtype != "custom":
        raise BadRequest("State is only reported for custom volumes")
    row = _row(d, pool.name, proj, name)
    disk = _disk_path(row["project"], name)
    usage = getattr(pool, "custom_usage", None)
    if usage is not None:
        used = await usage(disk)
    else:
        _rc, out, _ = await proc.run(["du", "-sxb", pool.custom_path(disk)], check=False)
        used = int(out.split()[0]) if out.split() else 0
    return response.sync({"usage": {"used": used,
                                    "total": parse_size(row["config"]["size"])
                                    if row["config"].get("size") else -1,
                                    "quota_enforced": hasattr(pool, "set_custom_size")}})


async def update_volume(request: web.Request) -> web.Response:
    d, pool, proj, vtype, name = _named(request)
    if vtype != "custom":
        raise BadRequest("Only custom storage volumes can be changed")
    row = _row(d, pool.name, proj, name)
    body = await read_json(request)
    if request.method == "PUT" and body.get("restore"):
        await _restore(d, pool, row, str(body["restore"]))
        return response.sync({})
    values = {}
    if "config" in body or request.method == "PUT":
        config = controlchars.string_map(body.get("config") or {}, "volume config")
        if request.method == "PATCH":
            config = {**row["config"], **config}
        if config.get("size") != row["config"].get("size"):
            if config.get("size"):
                parse_size(config["size"])
            await _apply_size(pool, _disk_path(row["project"], name), config.get("size"),
                              name)
        values["config"] = config
    if "description" in body or request.method == "PUT":
        values["description"] = str(body.get("description") or "")
    if values:
        d.db.update("storage_volumes", {"pool": pool.name, "project": row["project"],
                                        "type": "custom", "name": name}, **values)
    d.bus.lifecycle("storage-volume-updated",
                    f"/1.0/storage-pools/{pool.name}/volumes/custom/{name}", proj)
    return response.sync({})


async def rename_volume(request: web.Request) -> web.Response:
    d, pool, proj, vtype, name = _named(request)
    if vtype != "custom":
        raise BadRequest("Only custom storage volumes can be renamed")
    row = _row(d, pool.name, proj, name)
    body = await read_json(request)
    if body.get("migration"):
        raise BadRequest("Migrating storage volumes is not supported by this runtime")
    if body.get("pool") and body["pool"] != pool.name:
        raise BadRequest("Moving a volume to another pool is not supported: copy it "
                         "(source type 'copy') and delete the original")
    new = _check_name(body.get("name"), row["project"])
    used = _used_by(d, pool.name, row["project"], name)
    if used:
        raise BadRequest(f"Storage volume {name!r} is in use by {', '.join(used)}")
    if d.db.get("storage_volumes", pool=pool.name, project=row["project"], type="custom",
                name=new):
        raise Conflict(f"Storage volume {new!r} already exists")
    os.rename(pool.custom_path(_disk_path(row["project"], name)),
              pool.custom_path(_disk_path(row["project"], new)))
    old_snaps = _snap_dir(pool, row["project"], name)
    if os.path.isdir(old_snaps):
        os.rename(old_snaps, _snap_dir(pool, row["project"], new))
    for snap in _snap_rows(d, pool.name, row):
        d.db.update("storage_volumes", {"pool": pool.name, "project": row["project"],
                                        "type": _SNAP_TYPE, "name": snap["name"]},
                    name=new + "/" + snap["name"].split("/", 1)[1])
    d.db.update("storage_volumes", {"pool": pool.name, "project": row["project"],
                                    "type": "custom", "name": name}, name=new)
    d.bus.lifecycle("storage-volume-renamed",
                    f"/1.0/storage-pools/{pool.name}/volumes/custom/{new}", proj,
                    {"old_name": name})
    return response.created(f"/1.0/storage-pools/{pool.name}/volumes/custom/{new}")


async def delete_volume(request: web.Request) -> web.Response:
    d, pool, proj, vtype, name = _named(request)
    if vtype != "custom":
        raise BadRequest("Only custom storage volumes can be deleted here (delete the "
                         "instance or image instead)")
    row = _row(d, pool.name, proj, name)
    used = _used_by(d, pool.name, row["project"], name)
    if used:
        raise BadRequest(f"Storage volume {name!r} is in use by {', '.join(used)}")
    for snap in _snap_rows(d, pool.name, row):
        await _remove_snapshot(pool, row, snap["name"].split("/", 1)[1])
        d.db.delete("storage_volumes", pool=pool.name, project=row["project"],
                    type=_SNAP_TYPE, name=snap["name"])
    await remove_tree(_snap_dir(pool, row["project"], name))
    await _remove(pool, _disk_path(row["project"], name))
    d.db.delete("storage_volumes", pool=pool.name, project=row["project"], type="custom",
                name=name)
    d.bus.lifecycle("storage-volume-deleted",
                    f"/1.0/storage-pools/{pool.name}/volumes/custom/{name}", proj)
    return response.sync({})


# Snapshots of custom volumes --------------------------------------------------------
# Stored as rows of type "custom-snapshot" named "<volume>/<snapshot>" (as LXD names
# them); on disk under custom-snapshots/<volume>/<snapshot> (a read-only subvolume on
# btrfs). Restore copies back in place with rsync, so a volume that is bind-mounted
# into a running instance stays the same mount.
_SNAP_TYPE = "custom-snapshot"


def _snap_dir(pool, vproj: str, name: str, snap: str | None = None) -> str:
    base = os.path.join(pool.path, "custom-snapshots", _disk_path(vproj, name))
    return os.path.join(base, snap) if snap else base


def _snap_rows(d, pool: str, row: dict) -> list[dict]:
    rows = d.db.select("storage_volumes", {"pool": pool, "project": row["project"],
                                           "type": _SNAP_TYPE}, order="created_at")
    return [r for r in rows if r["name"].startswith(row["name"] + "/")]


def _snap_row(d, pool: str, row: dict, snap: str) -> dict:
    srow = d.db.get("storage_volumes", pool=pool, project=row["project"], type=_SNAP_TYPE,
                    name=f"{row['name']}/{snap}")
    if srow is None:
        raise NotFound(f"Snapshot {snap!r} of storage volume {row['name']!r} not found")
    return srow


def _render_snap(srow: dict) -> dict:
    return {"name": srow["name"], "description": srow["description"],
            "config": {k: v for k, v in srow["config"].items() if k != "_expires_at"},
            "content_type": "filesystem", "created_at": timestamp(srow["created_at"]),
            "expires_at": render_time(float(srow["config"].get("_expires_at") or 0))}


async def _remove_snapshot(pool, row: dict, snap: str) -> None:
    path = _snap_dir(pool, row["project"], row["name"], snap)
    remover = getattr(pool, "_remove_dir", None)
    if remover is not None:
        await remover(path)
    else:
        await remove_tree(path)


async def _restore(d, pool, row: dict, snap: str) -> None:
    _snap_row(d, pool.name, row, snap)
    src = _snap_dir(pool, row["project"], row["name"], snap)
    dst = pool.custom_path(_disk_path(row["project"], row["name"]))
    await proc.run(["rsync", "-aHAX", "--checksum", "--numeric-ids", "--delete",
                    src + "/", dst + "/"])
    d.bus.lifecycle("storage-volume-restored",
                    f"/1.0/storage-pools/{pool.name}/volumes/custom/{row['name']}",
                    row["project"], {"snapshot": snap})


async def expire_volume_snapshots(d, now: float) -> float:
    """Delete custom volume snapshots past expires_at; seconds until the next one."""
    nxt = float("inf")
    for srow in d.db.select("storage_volumes", {"type": _SNAP_TYPE}):
        when = float(srow["config"].get("_expires_at") or 0)
        if not when:
            continue
        if when > now:
            nxt = min(nxt, when - now)
            continue
        vol, _, snap = srow["name"].partition("/")
        row = d.db.get("storage_volumes", pool=srow["pool"], project=srow["project"],
                       type="custom", name=vol)
        if row is not None and srow["pool"] in d.pools:
            await _remove_snapshot(d.pools[srow["pool"]], row, snap)
        d.db.delete("storage_volumes", pool=srow["pool"], project=srow["project"],
                    type=_SNAP_TYPE, name=srow["name"])
        LOG.info("storage volume snapshot %s/%s expired", srow["pool"], srow["name"])
    return nxt


def _vol_for_snapshots(request: web.Request):
    d, pool, proj, vtype, name = _named(request)
    if vtype != "custom":
        raise BadRequest("Only custom volumes have snapshots here (use the instance's)")
    return d, pool, proj, _row(d, pool.name, proj, name)


async def list_volume_snapshots(request: web.Request) -> web.Response:
    d, pool, proj, row = _vol_for_snapshots(request)
    rows = _snap_rows(d, pool.name, row)
    if recursion(request):
        return response.sync([_render_snap(r) for r in rows])
    base = f"/1.0/storage-pools/{pool.name}/volumes/custom/{row['name']}/snapshots"
    return response.sync([f"{base}/{r['name'].split('/', 1)[1]}" for r in rows])


async def create_volume_snapshot(request: web.Request) -> web.Response:
    from runtime.instances.config import validate_snapshot_name
    d, pool, proj, row = _vol_for_snapshots(request)
    restrictions.rules(d, proj).check_snapshots(f"storage volume {row['name']!r}")
    body = await read_json(request)
    existing = {r["name"].split("/", 1)[1] for r in _snap_rows(d, pool.name, row)}
    snap = body.get("name")
    if not snap:
        n = 0
        while f"snap{n}" in existing:
            n += 1
        snap = f"snap{n}"
    validate_snapshot_name(snap)
    if snap in existing:
        raise Conflict(f"Snapshot {snap!r} of storage volume {row['name']!r} already exists")
    expires = parse_time(body.get("expires_at"))
    src = pool.custom_path(_disk_path(row["project"], row["name"]))
    target = _snap_dir(pool, row["project"], row["name"], snap)
    os.makedirs(os.path.dirname(target), exist_ok=True)

    async def run(op):
        try:
            if getattr(pool, "atomic_snapshots", False):
                await pool._snapshot(src, target, readonly=True)
            else:
                await proc.run(["cp", "-a", "--reflink=auto", "--", src, target])
            d.db.insert("storage_volumes", pool=pool.name, project=row["project"],
                        type=_SNAP_TYPE, name=f"{row['name']}/{snap}",
                        description=str(body.get("description") or ""),
                        config={**row["config"], "_expires_at": str(expires)},
                        created_at=time.time())
        except BaseException:
            await _remove_snapshot(pool, row, snap)
            raise
        if expires:
            d.snapshots.wake.set()
        d.bus.lifecycle("storage-volume-snapshot-created",
                        f"/1.0/storage-pools/{pool.name}/volumes/custom/{row['name']}"
                        f"/snapshots/{snap}", proj)
    url = f"/1.0/storage-pools/{pool.name}/volumes/custom/{row['name']}/snapshots/{snap}"
    return response.async_(d.ops.create("task", "Snapshotting storage volume", run,
                                        project=proj,
                                        resources={"storage_volume_snapshots": [url]}))


def _named_snapshot(request: web.Request):
    d, pool, proj, row = _vol_for_snapshots(request)
    snap = request.match_info["snap"]
    return d, pool, proj, row, snap, _snap_row(d, pool.name, row, snap)


async def get_volume_snapshot(request: web.Request) -> web.Response:
    _d, _pool, _proj, _row_, _snap, srow = _named_snapshot(request)
    return response.sync(_render_snap(srow))


async def update_volume_snapshot(request: web.Request) -> web.Response:
    d, pool, _proj, row, _snap, srow = _named_snapshot(request)
    body = await read_json(request)
    config = dict(srow["config"])
    if "expires_at" in body:
        config["_expires_at"] = str(parse_time(body["expires_at"]))
    values = {"config": config}
    if "description" in body:
        values["description"] = str(body["description"] or "")
    d.db.update("storage_volumes", {"pool": pool.name, "project": row["project"],
                                    "type": _SNAP_TYPE, "name": srow["name"]}, **values)
    d.snapshots.wake.set()
    return response.sync({})


async def rename_volume_snapshot(request: web.Request) -> web.Response:
    from runtime.instances.config import validate_snapshot_name
    d, pool, proj, row, snap, srow = _named_snapshot(request)
    body = await read_json(request)
    new = validate_snapshot_name(body.get("name"))
    if d.db.get("storage_volumes", pool=pool.name, project=row["project"], type=_SNAP_TYPE,
                name=f"{row['name']}/{new}"):
        raise Conflict(f"Snapshot {new!r} already exists")
    os.rename(_snap_dir(pool, row["project"], row["name"], snap),
              _snap_dir(pool, row["project"], row["name"], new))
    d.db.update("storage_volumes", {"pool": pool.name, "project": row["project"],
                                    "type": _SNAP_TYPE, "name": srow["name"]},
                name=f"{row['name']}/{new}")

    return response.async_(d.ops.completed("Renaming storage volume snapshot", project=proj))


async def delete_volume_snapshot(request: web.Request) -> web.Response:
    d, pool, proj, row, snap, srow = _named_snapshot(request)

    async def run(op):
        await _remove_snapshot(pool, row, snap)
        d.db.delete("storage_volumes", pool=pool.name, project=row["project"],
                    type=_SNAP_TYPE, name=srow["name"])
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
