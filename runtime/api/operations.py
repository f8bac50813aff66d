"""/1.0/operations: list, get, wait, cancel, and the websocket handshake."""
from aiohttp import web

from runtime import auth, wsclient
from runtime.api import daemon, recursion, response
from runtime.auth import AUTHENTICATED, UNTRUSTED
from runtime.errors import BadRequest, Forbidden, NotFound
from runtime.operations import STATUS_NAMES


def visible(request: web.Request, op) -> bool:
    """Creators and administrators see an operation; others only if it belongs to one
    of their projects (trust tokens belong to none: administrators only)."""
    requestor = auth.of(request)
    if requestor.admin or op.owned_by(requestor):
        return True
    return not op.server_level and requestor.can_access(op.project)


def _load(request: web.Request):
    op = daemon(request).ops.get(request.match_info["id"])
    if not visible(request, op):
        raise NotFound("Operation not found")
    return op


async def list_operations(request: web.Request) -> web.Response:
    d = daemon(request)
    proj = request.query.get("project")
    if request.query.get("all-projects") == "true":
        if proj:
            raise BadRequest("Cannot specify a project when requesting all projects")
    elif proj:
        auth.require(request, proj)
    viewer = auth.of(request)
    out: dict[str, list] = {}
    for op in list(d.ops.ops.values()):
        if proj and op.project not in (proj, "") or not visible(request, op):
            continue
        key = STATUS_NAMES[op.status].lower()
        out.setdefault(key, []).append(op.render(viewer) if recursion(request) else op.url)
    return response.sync(out)


async def get_operation(request: web.Request) -> web.Response:
    return response.sync(_load(request).render(auth.of(request)))


async def wait_operation(request: web.Request) -> web.Response:
    op = _load(request)
    try:
        timeout = float(request.query.get("timeout", "-1"))
    except ValueError:
        raise BadRequest("Invalid 'timeout' parameter")
    await op.wait(None if timeout < 0 else timeout)
    return response.sync(op.render(auth.of(request)))


async def cancel_operation(request: web.Request) -> web.Response:
    op = _load(request)
    requestor = auth.of(request)
    if not (requestor.admin or op.owned_by(requestor)):
        raise Forbidden("Only the operation's creator or an administrator can cancel it")
    op.cancel()
    return response.sync({})


async def operation_websocket(request: web.Request) -> web.StreamResponse:
    """Hand a websocket to the operation that issued the secret; hold it until done."""
    op = daemon(request).ops.get(request.match_info["id"])
    name = op.claim(request.query.get("secret", ""))
    # Close quickly once the operation is over: clients (pylxd's ws4py) may never
    # answer the close frame, and nothing waits on that.
    # protocols: a migration offers its wire format to a peer that names it (the
    # other side of runtime/migration's choice between ours and LXD's).
    ws = web.WebSocketResponse(max_msg_size=wsclient.MAX_MESSAGE, autoping=True,
                               heartbeat=None, timeout=1.0,
                               protocols=getattr(op, "ws_protocols", ()))
    await ws.prepare(request)
    fut = op.sockets[name]
    if not fut.done():
        fut.set_result(ws)
    await op.done.wait()
    if not ws.closed:
        await ws.close()
    return ws


ROUTES = [
    ("GET", "/1.0/operations", list_operations, AUTHENTICATED),
    ("GET", "/1.0/operations/{id}", get_operation, AUTHENTICATED),
    ("DELETE", "/1.0/operations/{id}", cancel_operation, AUTHENTICATED),
    ("GET", "/1.0/operations/{id}/wait", wait_operation, AUTHENTICATED),
    # The secret authenticates: LXD lets untrusted clients use websocket secrets.
    ("GET", "/1.0/operations/{id}/websocket", operation_websocket, UNTRUSTED),
]
