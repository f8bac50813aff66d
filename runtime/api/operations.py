"""/1.0/operations: list, get, wait, cancel, and the websocket handshake."""
from aiohttp import web

from runtime.api import daemon, recursion, response
from runtime.errors import BadRequest
from runtime.operations import STATUS_NAMES


async def list_operations(request: web.Request) -> web.Response:
    d = daemon(request)
    proj = request.query.get("project")
    out: dict[str, list] = {}
    for op in d.ops.ops.values():
        if proj and op.project != proj:
            continue
        key = STATUS_NAMES[op.status].lower()
        out.setdefault(key, []).append(op.render() if recursion(request) else op.url)
    return response.sync(out)


async def get_operation(request: web.Request) -> web.Response:
    return response.sync(daemon(request).ops.get(request.match_info["id"]).render())


async def wait_operation(request: web.Request) -> web.Response:
    op = daemon(request).ops.get(request.match_info["id"])
    try:
        timeout = float(request.query.get("timeout", "-1"))
    except ValueError:
        raise BadRequest("Invalid 'timeout' parameter")
    await op.wait(None if timeout < 0 else timeout)
    return response.sync(op.render())


async def cancel_operation(request: web.Request) -> web.Response:
    daemon(request).ops.get(request.match_info["id"]).cancel()
    return response.sync({})


async def operation_websocket(request: web.Request) -> web.StreamResponse:
    """Hand a websocket to the operation that issued the secret; hold it until done."""
    op = daemon(request).ops.get(request.match_info["id"])
    name = op.claim(request.query.get("secret", ""))
    # Close quickly once the operation is over: clients (pylxd's ws4py) may never
    # answer the close frame, and nothing waits on that.
    # protocols: a migration offers its wire format to a peer that names it (the
    # other side of runtime/migration's choice between ours and LXD's).
    ws = web.WebSocketResponse(max_msg_size=0, autoping=True, heartbeat=None, timeout=1.0,
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
    ("GET", "/1.0/operations", list_operations, False),
    ("GET", "/1.0/operations/{id}", get_operation, False),
    ("DELETE", "/1.0/operations/{id}", cancel_operation, False),
    ("GET", "/1.0/operations/{id}/wait", wait_operation, False),
    # The secret authenticates: LXD lets untrusted clients use websocket secrets.
    ("GET", "/1.0/operations/{id}/websocket", operation_websocket, True),
]
