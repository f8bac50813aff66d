"""/1.0/projects: CRUD, rename and state."""
from aiohttp import web

from runtime import auth, controlchars
from runtime.api import daemon, read_json, recursion, response
from runtime.auth import ADMIN, AUTHENTICATED


def _projects(request: web.Request):
    return daemon(request).projects


async def list_projects(request: web.Request) -> web.Response:
    p = _projects(request)
    rows = [r for r in daemon(request).project_rows.list()
            if auth.can_access(request, r["name"])]
    if recursion(request):
        return response.sync([p.render(r) for r in rows])
    return response.sync([f"/1.0/projects/{r['name']}" for r in rows])


def _config(body: dict) -> dict | None:
    """Project config keys and values are client input like any other (controlchars)."""
    config = body.get("config")
    return controlchars.check_config(config, "project config") \
        if isinstance(config, dict) else config


async def create_project(request: web.Request) -> web.Response:
    body = await read_json(request)
    _projects(request).create(body.get("name"), str(body.get("description") or ""),
                              _config(body) or {})
    return response.created(f"/1.0/projects/{body['name']}")


async def get_project(request: web.Request) -> web.Response:
    p = _projects(request)
    row = p.get(auth.require(request, request.match_info["name"]))
    return response.sync(p.render(row))


async def update_project(request: web.Request) -> web.Response:
    body = await read_json(request)
    desc = body.get("description")
    _projects(request).update(request.match_info["name"], _config(body),
                              None if desc is None else str(desc), request.method == "PATCH")
    return response.sync({})


async def rename_project(request: web.Request) -> web.Response:
    body = await read_json(request)
    _projects(request).rename(request.match_info["name"], body.get("name"))
    return response.created(f"/1.0/projects/{body['name']}")


async def delete_project(request: web.Request) -> web.Response:
    _projects(request).delete(request.match_info["name"])
    return response.sync({})


async def project_state(request: web.Request) -> web.Response:
    d = daemon(request)
    p = _projects(request)
    name = p.get(auth.require(request, request.match_info["name"]))["name"]
    n = len(d.db.select("instances", {"project": name}))
    return response.sync({"resources": {
        "containers": {"limit": -1, "usage": n}, "instances": {"limit": -1, "usage": n},
        "virtual-machines": {"limit": -1, "usage": 0}}})


ROUTES = [
    ("GET", "/1.0/projects", list_projects, AUTHENTICATED),
    ("POST", "/1.0/projects", create_project, ADMIN),
    ("GET", "/1.0/projects/{name}", get_project, AUTHENTICATED),
    ("PUT", "/1.0/projects/{name}", update_project, ADMIN),
    ("PATCH", "/1.0/projects/{name}", update_project, ADMIN),
    ("POST", "/1.0/projects/{name}", rename_project, ADMIN),
    ("DELETE", "/1.0/projects/{name}", delete_project, ADMIN),
    ("GET", "/1.0/projects/{name}/state", project_state, AUTHENTICATED),
]
