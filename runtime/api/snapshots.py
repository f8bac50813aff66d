"""/1.0/instances/<n>/snapshots: create, list, get, update expiry, rename, delete.

Requests are checked completely before an operation starts, so a client gets a
clear 4xx (bad name, duplicate, stateful without CRIU) instead of a failed
operation. The work itself lives in runtime.instances.snapshots.
"""
from aiohttp import web

from runtime.api import daemon, project, read_json, recursion, response
from runtime.auth import PROJECT
from runtime.errors import BadRequest
from runtime.migration.native import migrate_snapshot


def _snaps(request: web.Request):
    d = daemon(request)
    return d, d.snapshots


def _inst(request: web.Request):
    return daemon(request).instances.load(project(request), request.match_info["name"])


def _base(request: web.Request) -> str:
    """Collection URL under the prefix the client used (/1.0/containers or /instances)."""
    kind = "containers" if request.path.startswith("/1.0/containers") else "instances"
    return f"/1.0/{kind}/{request.match_info['name']}/snapshots"


async def list_snapshots(request: web.Request) -> web.Response:
    d, snaps = _snaps(request)
    inst = _inst(request)
    if recursion(request):
        return response.sync(snaps.render_all(inst))
    base = _base(request)
    return response.sync([f"{base}/{r['name']}" for r in snaps.rows(inst)])


async def create_snapshot(request: web.Request) -> web.Response:
    d, snaps = _snaps(request)
    inst = _inst(request)
    body = await read_json(request)
    spec = await snaps.validate_create(inst, body)

    async def run(op):
        await snaps.create(inst, spec)
    url = f"{_base(request)}/{spec['name']}"
    return response.async_(d.ops.create(
        "task", "Snapshotting instance", run, project=inst.project,
        resources={"instances": [inst.url], "instances_snapshots": [url]}))


async def get_snapshot(request: web.Request) -> web.Response:
    d, snaps = _snaps(request)
    inst = _inst(request)
    row = snaps.row(inst, request.match_info["snap"])
    return response.sync(snaps.render(inst, row))


async def update_snapshot(request: web.Request) -> web.Response:
    d, snaps = _snaps(request)
    inst = _inst(request)
    body = await read_json(request)
    snaps.update(inst, request.match_info["snap"], body, patch=request.method == "PATCH")

    return response.async_(d.ops.completed("Updating snapshot", project=inst.project,
                                           resources={"instances": [inst.url]}))


async def post_snapshot(request: web.Request) -> web.Response:
    """Rename, or (migration: true) send the snapshot to another host as a new instance."""
    d, snaps = _snaps(request)
    inst = _inst(request)
    old = request.match_info["snap"]
    snaps.row(inst, old)
    body = await read_json(request)
    if body.get("migration"):
        return response.async_(await migrate_snapshot(d, inst, old, body))
    new = body.get("name")
    if not new:
        raise BadRequest("Body needs a new 'name'")
    if d.snapshot_rows.get(inst.id, new):
        from runtime.errors import Conflict
        raise Conflict(f"Snapshot {new!r} already exists")

    async def run(op):
        await snaps.rename(inst, old, new)
    return response.async_(d.ops.create("task", "Renaming snapshot", run,
                                        project=inst.project,
                                        resources={"instances": [inst.url]}))


async def delete_snapshot(request: web.Request) -> web.Response:
    d, snaps = _snaps(request)
    inst = _inst(request)
    name = request.match_info["snap"]
    snaps.row(inst, name)

    async def run(op):
        await snaps.delete(inst, name)
    return response.async_(d.ops.create("task", "Deleting snapshot", run,
                                        project=inst.project,
                                        resources={"instances": [inst.url]}))


ROUTES = [
    ("GET", "/1.0/instances/{name}/snapshots", list_snapshots, PROJECT),
    ("POST", "/1.0/instances/{name}/snapshots", create_snapshot, PROJECT),
    ("GET", "/1.0/instances/{name}/snapshots/{snap}", get_snapshot, PROJECT),
    ("PUT", "/1.0/instances/{name}/snapshots/{snap}", update_snapshot, PROJECT),
    ("PATCH", "/1.0/instances/{name}/snapshots/{snap}", update_snapshot, PROJECT),
    ("POST", "/1.0/instances/{name}/snapshots/{snap}", post_snapshot, PROJECT),
    ("DELETE", "/1.0/instances/{name}/snapshots/{snap}", delete_snapshot, PROJECT),
]
