"""/1.0/profiles: CRUD and rename; edits reach running instances live where they can."""
from aiohttp import web

from runtime import auth
from runtime.instances import restrictions
from runtime.api import daemon, project, read_json, recursion, response
from runtime.auth import PROJECT
from runtime.errors import BadRequest, Conflict, NotFound
from runtime.instances import config as cfg


def _used_by(d, proj: str, name: str) -> list[str]:
    out = []
    for row in d.db.select("instances"):
        if d.profile_project(row["project"]) == proj and name in row["profiles"]:
            suffix = "" if row["project"] == "default" else f"?project={row['project']}"
            out.append(f"/1.0/instances/{row['name']}{suffix}")
    return sorted(out)


def _render(request: web.Request, d, row: dict) -> dict:
    return {"name": row["name"], "description": row["description"], "config": row["config"],
            "devices": row["devices"],
            "used_by": auth.visible(request, _used_by(d, row["project"], row["name"])),
            "project": row["project"]}


def _load(request: web.Request) -> dict:
    d = daemon(request)
    proj = d.profile_project(project(request))
    row = d.profile_rows.get(proj, request.match_info["name"])
    if row is None:
        raise NotFound(f"Profile {request.match_info['name']!r} not found")
    return row


async def list_profiles(request: web.Request) -> web.Response:
    d = daemon(request)
    proj = d.profile_project(project(request))
    rows = d.profile_rows.list(proj)
    if recursion(request):
        return response.sync([_render(request, d, r) for r in rows])
    return response.sync([f"/1.0/profiles/{r['name']}" for r in rows])


async def create_profile(request: web.Request) -> web.Response:
    d = daemon(request)
    proj = d.profile_project(project(request))
    body = await read_json(request)
    name = cfg.validate_profile_name(body.get("name"))
    if d.profile_rows.exists(proj, name):
        raise Conflict(f"Profile {name!r} already exists")
    config = cfg.validate_config(body.get("config") or {}, "profile")
    devices = cfg.validate_devices(body.get("devices") or {}, "profile")
    restrictions.check_profile(d, proj, project(request), name, config, devices)
    d.profile_rows.create(proj, name, str(body.get("description") or ""), config=config,
                          devices=devices)
    d.bus.lifecycle("profile-created", f"/1.0/profiles/{name}", proj)
    return response.created(f"/1.0/profiles/{name}")


async def get_profile(request: web.Request) -> web.Response:
    return response.sync(_render(request, daemon(request), _load(request)))


async def update_profile(request: web.Request) -> web.Response:
    d = daemon(request)
    row = _load(request)
    body = await read_json(request)
    patch = request.method == "PATCH"
    config = cfg.validate_config(body.get("config") or {}, "profile")
    devices = cfg.validate_devices(body.get("devices") or {}, "profile")
    if patch:
        config = {**row["config"], **config}
        devices = {**row["devices"], **devices}
    restrictions.check_profile(d, row["project"], project(request), row["name"], config,
                               devices)
    description = str(body.get("description", row["description"] if patch else ""))
    # Running instances using the profile get what can change live: limits, and
    # devices plugged or unplugged against what they had before the edit.
    running = [(inst, inst.expanded_devices) for inst in d.instances.list(None)
               if row["name"] in inst.profiles and d.instances.pid(inst)
               and d.profile_project(inst.project) == row["project"]]
    d.profile_rows.update(row["project"], row["name"], config=config, devices=devices,
                          description=description)
    for inst, old_devices in running:
        async with d.instances.lock(inst.project, inst.name):
            await d.instances.apply_live(d.instances.load(inst.project, inst.name),
                                         old_devices)
    d.bus.lifecycle("profile-updated", f"/1.0/profiles/{row['name']}", row["project"])
    return response.sync({})


async def rename_profile(request: web.Request) -> web.Response:
    d = daemon(request)
    row = _load(request)
    body = await read_json(request)
    new = body.get("name")
    if row["name"] == "default":
        raise BadRequest("The default profile can't be renamed")
    cfg.validate_profile_name(new)
    if d.profile_rows.exists(row["project"], new):
        raise Conflict(f"Profile {new!r} already exists")
    with d.db.transaction():
        d.profile_rows.rename(row["project"], row["name"], new)
        for inst in d.db.select("instances"):
            if row["name"] in inst["profiles"] and \
                    d.profile_project(inst["project"]) == row["project"]:
                profiles = [new if p == row["name"] else p for p in inst["profiles"]]
                d.db.update("instances", {"id": inst["id"]}, profiles=profiles)
    return response.created(f"/1.0/profiles/{new}")


async def delete_profile(request: web.Request) -> web.Response:
    d = daemon(request)
    row = _load(request)
    if row["name"] == "default":
        raise BadRequest("The default profile can't be deleted")
    used = _used_by(d, row["project"], row["name"])
    if used:
        raise Conflict(f"Profile {row['name']!r} is in use by {', '.join(used)}")
    d.profile_rows.delete(row["project"], row["name"])
    d.bus.lifecycle("profile-deleted", f"/1.0/profiles/{row['name']}", row["project"])
    return response.sync({})


ROUTES = [
    ("GET", "/1.0/profiles", list_profiles, PROJECT),
    ("POST", "/1.0/profiles", create_profile, PROJECT),
    ("GET", "/1.0/profiles/{name}", get_profile, PROJECT),
    ("PUT", "/1.0/profiles/{name}", update_profile, PROJECT),
    ("PATCH", "/1.0/profiles/{name}", update_profile, PROJECT),
    ("POST", "/1.0/profiles/{name}", rename_profile, PROJECT),
    ("DELETE", "/1.0/profiles/{name}", delete_profile, PROJECT),
]
