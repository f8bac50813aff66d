"""/1.0/events: a websocket streaming operation, lifecycle and logging events.

Each listener gets what its caller may see (runtime.events filters per viewer):
a restricted certificate only its projects' events, even with `all-projects`.
"""
import asyncio
import json

from aiohttp import WSMsgType, web

from runtime import auth
from runtime.api import daemon
from runtime.auth import AUTHENTICATED
from runtime.errors import BadRequest

TYPES = {"operation", "logging", "lifecycle"}


async def events(request: web.Request) -> web.StreamResponse:
    d = daemon(request)
    types = {t for t in request.query.get("type", "").split(",") if t}
    if types - TYPES:
        raise BadRequest(f"Unknown event types: {', '.join(sorted(types - TYPES))}")
    project = None if request.query.get("all-projects") == "true" else \
        request.query.get("project") or None
    if project is not None:
        auth.require(request, project)
    ws = web.WebSocketResponse(heartbeat=None)
    await ws.prepare(request)
    sub = d.bus.subscribe(types, project, viewer=auth.of(request))

    async def drain_incoming() -> None:
        async for msg in ws:
            if msg.type in (WSMsgType.CLOSE, WSMsgType.ERROR):
                break
    reader = asyncio.ensure_future(drain_incoming())
    try:
        while not ws.closed:
            getter = asyncio.ensure_future(sub.queue.get())
            done, _ = await asyncio.wait({getter, reader}, return_when=asyncio.FIRST_COMPLETED)
            if getter not in done:
                getter.cancel()
                break
            await ws.send_str(json.dumps(getter.result()))
    finally:
        d.bus.unsubscribe(sub)
        reader.cancel()
        if not ws.closed:
            await ws.close()
    return ws


ROUTES = [("GET", "/1.0/events", events, AUTHENTICATED)]
