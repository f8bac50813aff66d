"""Background operations with the LXD operation object.

An operation runs a coroutine; its state changes are published as events.
Websocket operations hand out one-time secrets; a connection presenting a
secret is handed to the running coroutine. Secrets die with the operation, and
only the client that created an operation ever sees them: every other viewer
(in listings, on /wait, in events) gets the operation without them.
"""
import asyncio
import json
import logging
import secrets as _secrets
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import WSMsgType

from runtime import auth, errors
from runtime.base.timefmt import timestamp
from runtime.events import EventBus

LOG = logging.getLogger(__name__)

# LXD status codes
PENDING, RUNNING, CANCELLING = 105, 103, 104
SUCCESS, FAILURE, CANCELLED = 200, 400, 401
STATUS_NAMES = {PENDING: "Pending", RUNNING: "Running", CANCELLING: "Cancelling",
                SUCCESS: "Success", FAILURE: "Failure", CANCELLED: "Cancelled"}
# Seconds a finished operation stays queryable, as in LXD (its operations are
# dropped 5 s after they end): clients wait on an operation as they start it, and
# a longer window only holds memory under churn (2,000 soak cycles: RSS flat at
# 45.9 MB with 5 s; with 60 s it grew with the cycle rate to 54 MB).
KEEP_FINISHED = 5.0
# Metadata keys holding credentials: the websocket secrets (`fds`, or the names of
# the websockets themselves for migrations) and a trust token's `secret`.
SECRET_KEYS = frozenset({"fds", "secret"})

Runner = Callable[["Operation"], Awaitable[Any]]


class Operation:
    def __init__(self, registry: "Operations", cls: str, description: str,
                 resources: dict | None, run: Runner, project: str = "default",
                 websockets: list[str] | None = None, metadata: dict | None = None,
                 cancellable: bool = False):
        self.registry = registry
        self.id = str(uuid.uuid4())
        self.cls = cls
        self.description = description
        self.resources = resources or {}
        self.project = project
        self.run_fn = run
        self.metadata: dict = dict(metadata or {})
        self.created_at = self.updated_at = time.time()
        self.status = PENDING
        self.err = ""
        self.may_cancel = cancellable
        requestor = auth.current()
        # Who asked for it: only they see its secrets (None: the daemon itself).
        self.owner = requestor.identity if requestor is not None and requestor.trusted \
            else None
        self.done = asyncio.Event()
        self.task: asyncio.Task | None = None
        self.secrets: dict[str, str] = {}
        self.sockets: dict[str, asyncio.Future] = {}
        for name in websockets or []:
            self.secrets[name] = _secrets.token_hex(32)
            self.sockets[name] = asyncio.get_running_loop().create_future()
        if self.secrets:
            self.metadata["fds"] = dict(self.secrets)
        self.secret_keys = SECRET_KEYS | set(self.secrets)

    @property
    def url(self) -> str:
        return f"/1.0/operations/{self.id}"

    def owned_by(self, requestor: "auth.Requestor | None") -> bool:
        return requestor is not None and self.owner == requestor.identity

    def render(self, viewer: "auth.Requestor | None" = None) -> dict:
        """The LXD operation object; without secrets unless `viewer` created it
        (viewer None: the creator's own view, as in the response that made it)."""
        meta = self.metadata
        if self.cls == "websocket" and self.status != RUNNING and self.status != PENDING:
            meta = {k: v for k, v in meta.items() if k != "fds"}
        if viewer is not None and not self.owned_by(viewer):
            meta = {k: v for k, v in meta.items() if k not in self.secret_keys}
        return {
            "id": self.id, "class": self.cls, "description": self.description,
            "created_at": timestamp(self.created_at), "updated_at": timestamp(self.updated_at),
            "status": STATUS_NAMES[self.status], "status_code": self.status,
            "resources": self.resources, "metadata": meta or None,
            "may_cancel": self.may_cancel, "err": self.err, "location": "none",
        }

    def changed(self, status: int | None = None) -> None:
        if status is not None:
            self.status = status
        self.updated_at = time.time()
        bus = self.registry.bus
        if bus.subscribers:
            bus.publish("operation", self.render(), self.project, owner=self.owner,
                        public=self.render(auth.ANONYMOUS), admin_only=self.server_level)

    @property
    def server_level(self) -> bool:
        """Not part of any project (trust tokens): only administrators see it."""
        return self.project == ""

    def update_metadata(self, **values: Any) -> None:
        self.metadata.update(values)
        self.changed()

    def start(self) -> "Operation":
        self.task = asyncio.get_running_loop().create_task(self._run())
        return self

    async def _run(self) -> None:
        self.changed(RUNNING)
        try:
            result = await self.run_fn(self)
            if isinstance(result, dict):
                self.metadata.update(result)
            self.changed(SUCCESS)
        except asyncio.CancelledError:
            self.err = "Operation cancelled"
            self.changed(CANCELLED)
        except errors.RuntimeAPIError as exc:
            self.err = str(exc)
            self.changed(FAILURE)
        except Exception as exc:
            LOG.exception("operation %s (%s) failed", self.id, self.description)
            self.err = f"{type(exc).__name__}: {exc}"
            self.changed(FAILURE)
        finally:
            for fut in self.sockets.values():
                if not fut.done():
                    fut.cancel()
            self.secrets.clear()
            # A finished operation stays queryable for a while: without what its
            # coroutine closed over (request bodies, specs, instances), or a busy
            # daemon's memory grows with every operation of the last minute.
            self.run_fn = None
            self.done.set()
            self.registry.retire(self)

    async def wait(self, timeout: float | None) -> None:
        if timeout is not None and timeout < 0:
            timeout = None
        try:
            await asyncio.wait_for(self.done.wait(), timeout)
        except TimeoutError:
            pass

    def cancel(self) -> None:
        if not self.may_cancel or self.task is None:
            raise errors.BadRequest("This operation can't be cancelled")
        self.changed(CANCELLING)
        self.task.cancel()

    # Websocket handshake ---------------------------------------------------
    def claim(self, secret: str):
        """Return the fd name a secret belongs to and forget the secret."""
        for name, value in list(self.secrets.items()):
            if _secrets.compare_digest(value, secret):
                del self.secrets[name]
                return name
        raise errors.Forbidden("Invalid websocket secret")

    async def socket(self, name: str, timeout: float | None = None):
        return await asyncio.wait_for(asyncio.shield(self.sockets[name]), timeout)

    async def control_messages(self):
        """The JSON objects a client sends on its `control` websocket, until it closes
        it (LXD clients send signals and window sizes there, and close it to detach)."""
        ws = await self.socket("control")
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                continue
            try:
                data = json.loads(msg.data)
            except json.JSONDecodeError:
                continue
            if isinstance(data, dict):
                yield data

    async def connected(self, names: list[str], timeout: float, what: str) -> dict:
        """The websockets of these fds once all are connected, or a clear 400."""
        try:
            socks = await asyncio.gather(*(self.socket(n, timeout) for n in names))
        except TimeoutError:
            raise errors.BadRequest(f"Timed out waiting for the {what} websockets to connect")
        return dict(zip(names, socks, strict=True))


class Operations:
    def __init__(self, bus: EventBus):
        self.bus = bus
        self.ops: dict[str, Operation] = {}

    def create(self, cls: str, description: str, run: Runner, **kw: Any) -> Operation:
        op = Operation(self, cls, description, kw.pop("resources", None), run, **kw)
        self.ops[op.id] = op
        op.changed(PENDING)
        return op.start()

    def completed(self, description: str, **kw: Any) -> Operation:
        """An operation for work already done synchronously (LXD answers some
        updates asynchronously; clients then wait on an operation that has finished)."""
        async def nothing(op: Operation) -> None:
            return None
        return self.create("task", description, nothing, **kw)

    def get(self, op_id: str) -> Operation:
        op = self.ops.get(op_id)
        if op is None:
            raise errors.NotFound("Operation not found")
        return op

    def retire(self, op: Operation) -> None:
        asyncio.get_running_loop().call_later(KEEP_FINISHED, self.ops.pop, op.id, None)

    def running(self) -> list[Operation]:
        return [op for op in self.ops.values() if not op.done.is_set()]
