"""/1.0/networks: managed bridges (CRUD, rename, state, leases) and host interfaces."""
from aiohttp import web

from runtime.api import daemon, project, read_json, recursion, response
from runtime.errors import BadRequest


def _nets(request: web.Request):
    d = daemon(request)
    project(request)  # validates ?project=; networks are server-wide here
    if not hasattr(d, "networks"):
        raise BadRequest("Networks are not supported by this runtime build")
    return d.networks


async def list_networks(request: web.Request) -> web.Response:
    nets = _nets(request)
    names = nets.names()
    if recursion(request):
        out = []
        for n in names:
            try:
                out.append(nets.render(n))
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
    return response.sync(_nets(request).render(request.match_info["name"]))


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
    return response.sync(_nets(request).leases(request.match_info["name"]))


ROUTES = [
    ("GET", "/1.0/networks", list_networks, False),
    ("POST", "/1.0/networks", create_network, False),
    ("GET", "/1.0/networks/{name}", get_network, False),
    ("PUT", "/1.0/networks/{name}", update_network, False),
    ("PATCH", "/1.0/networks/{name}", update_network, False),
    ("POST", "/1.0/networks/{name}", rename_network, False),
    ("DELETE", "/1.0/networks/{name}", delete_network, False),
    ("GET", "/1.0/networks/{name}/state", network_state, False),
    ("GET", "/1.0/networks/{name}/leases", network_leases, False),
]
