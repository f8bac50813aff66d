"""/1.0/instances/<name>/console: the interactive console and the console log.

POST attaches to the container's /dev/console as LXD 5.0 does: a websocket
operation ("Showing console") with fds `0` (data, binary frames both ways) and
`control` (window-resize messages; closing it detaches, which is how `lxc
console` leaves on Ctrl-a q). GET returns the console log, DELETE clears it.
"""
import asyncio
import contextlib
import logging
import os

from aiohttp import WSMsgType, web

from runtime.api import daemon, field, project, read_json, response
from runtime.auth import PROJECT
from runtime.errors import BadRequest
from runtime.instances.console import ConsoleSession

LOG = logging.getLogger(__name__)
CONNECT_TIMEOUT = 60.0


def _inst(request: web.Request):
    return daemon(request).instances.load(project(request), request.match_info["name"])


def _validate(body: dict) -> dict:
    ctype = field(body, "type", str, "") or "console"
    if ctype == "vga":
        raise BadRequest("VGA console is only supported by virtual machines")
    if ctype != "console":
        raise BadRequest(f"Unknown console type {ctype!r}")
    size = {}
    for key in ("width", "height"):
        value = field(body, key, int, 0)
        if value < 0:
            raise BadRequest(f"'{key}' must not be negative")
        size[key] = value
    return size


async def post_console(request: web.Request) -> web.Response:
    d = daemon(request)
    inst = _inst(request)
    _validate(await read_json(request))
    d.instances.require_running(inst)
    if d.instances.status(inst) == "Frozen":
        raise BadRequest(f"Instance {inst.name!r} is frozen")
    argv = d.instances.lxc.console_argv(d.instances.paths(inst).name)

    async def run(op):
        ws = (await op.connected(["0"], CONNECT_TIMEOUT, "console"))["0"]
        session = await ConsoleSession(argv, inst.name).start()
        d.bus.lifecycle("instance-console", inst.url, inst.project, {"type": "console"})
        LOG.info("console of %s attached (operation %s)", inst.name, op.id)
        await _relay(op, ws, session)
    op = d.ops.create("websocket", "Showing console", run, project=inst.project,
                      websockets=["0", "control"],
                      resources={"instances": [inst.url], "containers": [inst.url]})
    return response.async_(op)


async def _relay(op, ws, session: ConsoleSession) -> None:
    """Until the console ends, the client closes `0` or `control`, or falls behind."""
    output = asyncio.ensure_future(_output(session, ws))
    overflow = asyncio.ensure_future(session.overflowed.wait())
    tasks = [output, overflow, asyncio.ensure_future(_input(ws, session)),
             asyncio.ensure_future(_control(op))]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        if overflow.done():
            raise session.overflow_error()
        if output.done() and output.result():
            failure = await session.failure()  # lxc-console ended: why?
            if failure is not None:
                raise failure
    finally:
        for task in tasks:
            task.cancel()
        await session.close()
        LOG.info("console of %s detached (operation %s)", session.instance, op.id)
        if not ws.closed:
            with contextlib.suppress(ConnectionError, TimeoutError):
                await asyncio.wait_for(ws.send_str(""), 1.0)  # end of stream, as LXD's


async def _output(session: ConsoleSession, ws) -> bool:
    """Console output to the client; True when the console side ended."""
    while data := await session.read():
        if ws.closed:
            return False
        await ws.send_bytes(data)
    return True


async def _input(ws, session: ConsoleSession) -> None:
    """Client bytes to the console; an empty text frame (LXD's end of stream) or a
    close detaches."""
    async for msg in ws:
        if msg.type == WSMsgType.BINARY:
            await session.write(msg.data)
        elif msg.type == WSMsgType.TEXT:
            if msg.data == "":
                return
            await session.write(msg.data.encode())
        else:
            return


async def _control(op) -> None:
    """Returns when the client closes the control websocket (its way to detach).

    window-resize is accepted as LXD accepts it; liblxc passes no window size from
    an attached client to the container's console, so there is nothing to set.
    """
    async for command in op.control_messages():
        LOG.debug("console control message %r ignored", command.get("command"))


def _log_path(request: web.Request) -> str:
    d = daemon(request)
    return d.instances.paths(_inst(request)).console_log


async def get_console(request: web.Request) -> web.StreamResponse:
    """The console log (what init and getty wrote to /dev/console)."""
    path = _log_path(request)
    data = b""
    if os.path.exists(path):
        with open(path, "rb") as f:
            data = f.read()
    return web.Response(body=data, content_type="application/octet-stream")


async def delete_console(request: web.Request) -> web.Response:
    d = daemon(request)
    inst = _inst(request)
    path = d.instances.paths(inst).console_log
    if os.path.exists(path):
        open(path, "w").close()  # liblxc appends (O_APPEND): truncating is safe
    d.bus.lifecycle("instance-console-reset", inst.url, inst.project)
    return response.sync({})


ROUTES = [
    ("POST", "/1.0/instances/{name}/console", post_console, PROJECT),
    ("GET", "/1.0/instances/{name}/console", get_console, PROJECT),
    ("DELETE", "/1.0/instances/{name}/console", delete_console, PROJECT),
]
