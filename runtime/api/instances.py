"""/1.0/instances: list, create, get, update, rename, delete, state, logs
(the console is in runtime.api.console)."""
import asyncio
import os

from aiohttp import web

from runtime import auth
from runtime.api import daemon, field, project, read_json, recursion, response
from runtime.auth import PROJECT
from runtime.errors import BadRequest, NotFound, PreconditionFailed
from runtime.instances import state as inst_state
from runtime.migration.native import create_from_migration, migrate_source


def _inst(request: web.Request):
    return daemon(request).instances.load(project(request), request.match_info["name"])


def _matches(item: dict, expr: str) -> bool:
    """LXD's api_filtering, the common subset: `key eq value` clauses joined by `and`."""
    for clause in expr.split(" and "):
        parts = clause.strip().split(None, 2)
        if len(parts) != 3 or parts[1] not in ("eq", "ne"):
            raise BadRequest(f"Unsupported filter clause {clause!r} (use: key eq value)")
        key, op, want = parts
        value = item
        for part in key.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if (str(value).lower() == want.strip("'\"").lower()) != (op == "eq"):
            return False
    return True


async def list_instances(request: web.Request) -> web.Response:
    d = daemon(request)
    all_projects = request.query.get("all-projects") == "true"
    flt = request.query.get("filter", "").strip()
    level = recursion(request)
    if level == 1 and not flt:
        items = d.instances.listing(None if all_projects else project(request))
        return response.sync_list([text for proj, text in items
                                   if not all_projects or auth.can_access(request, proj)])
    insts = d.instances.list(None if all_projects else project(request))
    if all_projects:
        insts = [i for i in insts if auth.can_access(request, i.project)]
    if flt:
        insts = [i for i in insts if _matches(i.render(d.instances.status(i)), flt)]
    if level == 0:
        return response.sync([i.url for i in insts])
    if level == 1:
        return response.sync([await _render(d, inst, full=False) for inst in insts])
    # Each state reads the instance's network namespace in a reader thread
    # (runtime.network.netlink): overlap them, bounded, instead of one after another.
    gate = asyncio.Semaphore(8)

    async def one(inst):
        async with gate:
            return await _render(d, inst, full=True, listing=True)
    return response.sync(list(await asyncio.gather(*(one(i) for i in insts))))


async def _render(d, inst, full: bool, listing: bool = False) -> dict:
    """The instance object; full adds state, snapshots and backups (LXD's recursion)."""
    status = d.instances.status(inst)
    item = inst.render(status)
    if full:
        item["state"] = await inst_state.render(d, inst, listing=listing, status=status)
        item["snapshots"] = d.snapshots.render_all(inst)
        item["backups"] = None
    return item


async def create_instance(request: web.Request) -> web.Response:
    d = daemon(request)
    proj = project(request)
    body = await read_json(request)
    stype = field(field(body, "source", dict, {}), "type", str, "none")
    if stype == "migration":
        return response.async_(await create_from_migration(d, proj, body))
    if stype == "copy":
        name, run = d.copier.prepare(proj, body, lambda p: auth.require(request, p))
        return response.async_(d.ops.create("task", "Creating instance", run, project=proj,
                                            resources=_resources(name)))
    source = body.get("source")
    image = None
    if stype == "image" and source.get("server") and source.get("mode", "pull") == "pull":
        image = await d.remote_images.resolve_async(proj, source)  # network: off the loop
    spec = d.instances.validate_new(proj, body, image)
    reserved = d.instances.reserve(proj, spec)

    async def run(op):
        inst = await d.instances.create(proj, spec, reserved)
        if spec["start"]:
            await d.instances.change_state(inst, "start", False, 0)
    op = d.ops.create("task", "Creating instance", run, project=proj,
                      resources=_resources(spec["name"]))
    return response.async_(op)


def _resources(name: str) -> dict:
    return {"instances": [f"/1.0/instances/{name}"], "containers": [f"/1.0/containers/{name}"]}


async def get_instance(request: web.Request) -> web.Response:
    d = daemon(request)
    inst = _inst(request)
    item = await _render(d, inst, full=recursion(request) > 0)
    return response.sync(item, etag=inst.etag())


async def update_instance(request: web.Request) -> web.Response:
    d = daemon(request)
    inst = _inst(request)
    match = request.headers.get("If-Match")
    if match and match.strip('"') != inst.etag():
        raise PreconditionFailed("ETag doesn't match: the instance changed meanwhile")
    body = await read_json(request)
    if request.method == "PUT" and body.get("restore"):
        snap = body["restore"]

        async def run_restore(op):
            await d.snapshots.restore(inst, snap)
        op = d.ops.create("task", "Restoring snapshot", run_restore, project=inst.project,
                          resources={"instances": [inst.url]})
        return response.async_(op)
    await d.instances.update(inst, body, patch=request.method == "PATCH")

    return response.async_(d.ops.completed("Updating instance", project=inst.project,
                                           resources={"instances": [inst.url]}))


async def post_instance(request: web.Request) -> web.Response:
    """Rename, or (with migration: true) export the instance to another host."""
    d = daemon(request)
    inst = _inst(request)
    body = await read_json(request)
    if body.get("migration"):
        return response.async_(await migrate_source(d, inst, body))
    new_name = body.get("name")
    if not new_name:
        raise BadRequest("Body needs a new 'name' (or 'migration': true)")
    await d.instances.rename(inst, new_name)

    return response.async_(d.ops.completed("Renaming instance", project=inst.project,
                                           resources={"instances": [inst.url]}))


async def delete_instance(request: web.Request) -> web.Response:
    d = daemon(request)
    inst = _inst(request)
    # Validate synchronously so the client gets a clear 4xx, not a failed operation.
    if d.instances.pid(inst):
        raise BadRequest(f"Instance {inst.name!r} is running: stop it first")

    async def run(op):
        await d.instances.delete(inst)
    return response.async_(d.ops.create("task", "Deleting instance", run,
                                        project=inst.project,
                                        resources={"instances": [inst.url]}))


async def get_state(request: web.Request) -> web.Response:
    d = daemon(request)
    return response.sync(await inst_state.render(d, _inst(request)))


async def put_state(request: web.Request) -> web.Response:
    d = daemon(request)
    inst = _inst(request)
    body = await read_json(request)
    action = body.get("action")
    if action not in ("start", "stop", "restart", "freeze", "unfreeze"):
        raise BadRequest(f"Invalid action {action!r}: use start, stop, restart, freeze "
                         "or unfreeze")
    try:
        timeout = float(body.get("timeout", -1) if body.get("timeout") is not None else -1)
    except (TypeError, ValueError):
        raise BadRequest("'timeout' must be a number of seconds")
    force = bool(body.get("force", False))
    status = d.instances.status(inst)
    if action == "start" and status != "Stopped":
        raise BadRequest(f"Instance {inst.name!r} is already running")
    if action in ("stop", "restart", "freeze") and status == "Stopped":
        raise BadRequest(f"Instance {inst.name!r} is not running")

    async def run(op):
        await d.instances.change_state(inst, action, force, timeout,
                                       bool(body.get("stateful", False)))
    return response.async_(d.ops.create("task", _DESCRIPTIONS[action],
                                        run, project=inst.project,
                                        resources={"instances": [inst.url]}))


_DESCRIPTIONS = {"start": "Starting instance", "stop": "Stopping instance",
                 "restart": "Restarting instance", "freeze": "Freezing instance",
                 "unfreeze": "Unfreezing instance"}


def _log_dir(request: web.Request) -> str:
    d = daemon(request)
    return d.instances.paths(_inst(request)).log_dir


async def list_logs(request: web.Request) -> web.Response:
    inst = _inst(request)
    logdir = _log_dir(request)
    files = sorted(os.listdir(logdir)) if os.path.isdir(logdir) else []
    base = f"/1.0/instances/{inst.name}/logs/"
    return response.sync([base + f for f in files if f.endswith(".log")
                          or f.startswith("exec_")])


def _log_file(request: web.Request) -> str:
    fname = request.match_info["file"]
    if "/" in fname or fname.startswith(".") or not (fname.endswith(".log")
                                                     or fname.startswith("exec_")):
        raise BadRequest(f"Invalid log file name {fname!r}")
    path = os.path.join(_log_dir(request), fname)
    if not os.path.isfile(path):
        raise NotFound(f"Log file {fname!r} not found")
    return path


async def get_log(request: web.Request) -> web.StreamResponse:
    return web.FileResponse(_log_file(request), headers={
        "Content-Type": "application/octet-stream"})


async def delete_log(request: web.Request) -> web.Response:
    path = _log_file(request)
    if os.path.basename(path) in ("lxc.log", "console.log"):
        raise BadRequest("Only exec output files can be deleted")
    os.unlink(path)
    return response.sync({})


ROUTES = [
    ("GET", "/1.0/instances", list_instances, PROJECT),
    ("POST", "/1.0/instances", create_instance, PROJECT),
    ("GET", "/1.0/instances/{name}", get_instance, PROJECT),
    ("PUT", "/1.0/instances/{name}", update_instance, PROJECT),
    ("PATCH", "/1.0/instances/{name}", update_instance, PROJECT),
    ("POST", "/1.0/instances/{name}", post_instance, PROJECT),
    ("DELETE", "/1.0/instances/{name}", delete_instance, PROJECT),
    ("GET", "/1.0/instances/{name}/state", get_state, PROJECT),
    ("PUT", "/1.0/instances/{name}/state", put_state, PROJECT),
    ("GET", "/1.0/instances/{name}/logs", list_logs, PROJECT),
    ("GET", "/1.0/instances/{name}/logs/{file}", get_log, PROJECT),
    ("DELETE", "/1.0/instances/{name}/logs/{file}", delete_log, PROJECT),
]
