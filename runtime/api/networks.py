"""/1.0/networks: managed bridges (CRUD, rename, state, leases) and host interfaces.

Networks are host bridges, server-wide here (no `features.networks`): clients of a
project see them, only administrators create or change them, and `used_by` and
leases show each caller only its projects' instances.
"""
from aiohttp import web

from runtime import auth
from runtime.api import daemon, project, read_json, recursion, response
from runtime.auth import ADMIN, PROJECT


def _render(request: web.Request, nets, name: str) -> dict:
    out = nets.render(name)
    out["used_by"] = auth.visible(request, out["used_by"])
    return out


def _nets(request: web.Request):
    d = daemon(request)
    project(request)  # validates ?project=; networks are server-wide here
    return d.networks


async def list_networks(request: web.Request) -> web.Response:
    nets = _nets(request)
    names = nets.names()
    if recursion(request):
        out = []
        for n in names:
            try:
                out.append(_render(request, nets, n))
            except Exception:  # noqa: BLE001 - an interface vanished meanwhile
                continue
        return response.sync(out)
    return response.sync([f"/1.0/networks/{n}" for n in names])


async def create_network(request: web.Request) -> web.Response:
    nets = _nets(request)
    body = await read_json(request)
    await nets.create(body.get("name"), body.get("type") or "bridge",
                      str(body.get("description") or ""), body.get("config") or {})
    return response.created(f"/1.0/networks/{body['name']}")


async def get_network(request: web.Request) -> web.Response:
    return response.sync(_render(request, _nets(request), request.match_info["name"]))


async def update_network(request: web.Request) -> web.Response:
    nets = _nets(request)
    body = await read_json(request)
    desc = body.get("description")
    await nets.update(request.match_info["name"], body.get("config"),
                      None if desc is None else str(desc), request.method == "PATCH")
    return response.sync({})


async def rename_network(request: web.Request) -> web.Response:
    nets = _nets(request)
    body = await read_json(request)
    await nets.rename(request.match_info["name"], body.get("name"))
    return response.created(f"/1.0/networks/{body['name']}")


async def delete_network(request: web.Request) -> web.Response:
    await _nets(request).delete(request.match_info["name"])
    return response.sync({})


async def network_state(request: web.Request) -> web.Response:
    return response.sync(await _nets(request).state(request.match_info["name"]))


async def network_leases(request: web.Request) -> web.Response:
    d = daemon(request)
    leases = _nets(request).leases(request.match_info["name"])
    if not auth.of(request).admin:
        mine = {inst.config.get(f"volatile.{dev}.hwaddr") or spec.get("hwaddr")
                for inst in d.instances.list(None) if auth.can_access(request, inst.project)
                for dev, spec in inst.expanded_devices.items() if spec.get("type") == "nic"}
        leases = [lease for lease in leases if lease["hwaddr"] in mine - {None}]
    return response.sync(leases)


ROUTES = [
    ("GET", "/1.0/networks", list_networks, PROJECT),
    ("POST", "/1.0/networks", create_network, ADMIN),
    ("GET", "/1.0/networks/{name}", get_network, PROJECT),
    ("PUT", "/1.0/networks/{name}", update_network, ADMIN),
    ("PATCH", "/1.0/networks/{name}", update_network, ADMIN),
    ("POST", "/1.0/networks/{name}", rename_network, ADMIN),
    ("DELETE", "/1.0/networks/{name}", delete_network, ADMIN),
    ("GET", "/1.0/networks/{name}/state", network_state, PROJECT),
    ("GET", "/1.0/networks/{name}/leases", network_leases, PROJECT),
]
