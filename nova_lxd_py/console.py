"""Serial consoles for nova-serialproxy: a TCP port per running instance.

nova-serialproxy (and anything that validated a console token) connects to the
host and port that `get_serial_console` returns and relays raw bytes, as it
does for libvirt's TCP chardev. Here each running instance gets a listener on
`[serial_console] proxyclient_address`, on a port from `[serial_console]
port_range` taken through nova's own allocator (`nova.console.serial`), and
each TCP connection becomes one attachment to the container's /dev/console
through the runtime's console websocket (LXD's `POST .../console`, fds `0` and
`control`). Closing the TCP connection detaches; the getty goes on.

Threads: nova-compute runs native threads (no eventlet). All listeners and
connections of one driver live on one asyncio loop in one daemon thread; the
driver's threads only start and stop listeners through thread-safe calls. Every
direction is flow-controlled (TCP drain, websocket drain), so a slow or stalled
peer holds at most a socket buffer here; the runtime cuts off a client that
falls behind the console output instead of stalling the container.

Who may connect: as with libvirt's TCP chardev there is no authentication on
the port itself: whoever reaches proxyclient_address:port gets the console.
Only proxyclient_address is bound (127.0.0.1 by default; with a separate
nova-serialproxy host, an address on the management network that only that host
reaches). nova hands out the host and port only with a console token, and
nova-serialproxy checks the token and the port (validate_console_port).
"""
from __future__ import annotations

import asyncio
import contextlib
import errno
import ssl
import threading
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp
import nova.conf
from nova.console import serial as nova_serial
from nova.console import type as console_type
from oslo_log import log as logging

from nova import exception as nova_exception
from nova_lxd_py import client as lxd_client

CONF = nova.conf.CONF
LOG = logging.getLogger(__name__)
CHUNK = 64 * 1024
CALL_TIMEOUT = 30.0      # seconds a driver thread waits for the loop thread
CONNECT_TIMEOUT = 30.0   # seconds to get the runtime's console operation going
BIND_ATTEMPTS = 5


class ConsoleError(Exception):
    """The runtime refused the console; the message is shown to the user."""


@dataclass
class _Listener:
    host: str
    port: int
    container: str
    server: asyncio.AbstractServer | None = None
    tasks: set[asyncio.Task] = field(default_factory=set)


class RuntimeConsole:
    """Opens console sessions on the runtime (unix socket or HTTPS)."""

    def __init__(self, endpoint: lxd_client.Endpoint):
        self.endpoint = endpoint
        self._session: aiohttp.ClientSession | None = None

    def _base(self) -> str:
        return "http://lxd" if self.endpoint.is_unix else self.endpoint.url.rstrip("/")

    def _connector(self) -> aiohttp.BaseConnector:
        if self.endpoint.is_unix:
            return aiohttp.UnixConnector(path=self.endpoint.url.removeprefix("unix://"))
        return aiohttp.TCPConnector(ssl=ssl_context(self.endpoint))

    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            # trust_env stays off: no proxy or CA variables for a hypervisor-local API.
            self._session = aiohttp.ClientSession(
                connector=self._connector(),
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=CONNECT_TIMEOUT))
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def open(self, container: str) -> tuple[str, aiohttp.ClientWebSocketResponse,
                                                  aiohttp.ClientWebSocketResponse]:
        """(operation id, data websocket, control websocket) of a new attachment."""
        session = self.session()
        name = urllib.parse.quote(container, safe="")
        async with session.post(f"{self._base()}/1.0/instances/{name}/console",
                                json={"type": "console", "width": 80, "height": 24},
                                timeout=aiohttp.ClientTimeout(total=CONNECT_TIMEOUT)) as resp:
            body = await resp.json(content_type=None)
        if body.get("type") == "error" or resp.status >= 400:
            raise ConsoleError(body.get("error") or f"HTTP {resp.status}")
        op = body["metadata"]
        fds = (op.get("metadata") or {}).get("fds") or {}
        url = f"{self._base()}/1.0/operations/{op['id']}/websocket?secret="
        control = await session.ws_connect(url + fds["control"], timeout=CONNECT_TIMEOUT)
        try:
            data = await session.ws_connect(url + fds["0"], timeout=CONNECT_TIMEOUT,
                                            max_msg_size=0)
        except BaseException:
            await control.close()
            raise
        return op["id"], data, control

    async def outcome(self, op_id: str) -> str:
        """The operation's error once it is over ("" when it succeeded)."""
        async with self.session().get(
                f"{self._base()}/1.0/operations/{op_id}/wait", params={"timeout": "5"},
                timeout=aiohttp.ClientTimeout(total=15)) as resp:
            body = await resp.json(content_type=None)
        meta = body.get("metadata") or {}
        return "" if meta.get("status") == "Success" else (meta.get("err") or "failed")


def ssl_context(endpoint: lxd_client.Endpoint) -> ssl.SSLContext:
    """TLS as the driver's pylxd client does it: the pinned server certificate
    when set (else the system store) and the client certificate."""
    ctx = ssl.create_default_context(cafile=endpoint.server_cert or None)
    if endpoint.client_cert:
        ctx.load_cert_chain(endpoint.client_cert, endpoint.client_key)
    return ctx


class SerialConsoles:
    """Listeners by instance name; thread-safe, one loop thread started lazily."""

    def __init__(self, endpoint: lxd_client.Endpoint,
                 acquire: Callable[[str], int] = nova_serial.acquire_port,
                 release: Callable[[str, int], None] = nova_serial.release_port):
        self._runtime = RuntimeConsole(endpoint)
        self._acquire, self._release = acquire, release
        self._lock = threading.Lock()
        self._listeners: dict[str, _Listener] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    # -- what the driver calls ------------------------------------------------------------
    def connect_info(self, name: str, container: str) -> console_type.ConsoleSerial:
        """get_serial_console: where nova-serialproxy connects for this instance."""
        if not CONF.serial_console.enabled:
            raise nova_exception.ConsoleTypeUnavailable(console_type="serial")
        host, port = self.ensure(name, CONF.serial_console.proxyclient_address, container)
        return console_type.ConsoleSerial(host=host, port=port)

    def up(self, name: str, container: str | None = None) -> None:
        """The instance runs (again): its console listens. Never fails the caller's
        action: a console that can't listen is logged, and get_serial_console
        reports why when someone asks for it."""
        if not CONF.serial_console.enabled:
            return
        try:
            self.ensure(name, CONF.serial_console.proxyclient_address, container)
        except Exception as exc:  # noqa: BLE001 - best effort, see above
            LOG.warning("Serial console of %s can't listen: %s", name, exc)

    def down(self, name: str) -> None:
        """The instance stops, is suspended or goes: its port is released."""
        try:
            self.release(name)
        except Exception as exc:  # noqa: BLE001 - the port is released regardless
            LOG.warning("Closing the serial console of %s: %s", name, exc)

    # -- listeners (any thread) -------------------------------------------------------------
    def ensure(self, name: str, host: str, container: str | None = None) -> tuple[str, int]:
        """The (host, port) of the instance's listener, made if needed; `container`
        (default: the instance's own) is what new connections attach to."""
        container = container or name
        with self._lock:
            listener = self._listeners.get(name)
            if listener is not None and listener.host == host:
                listener.container = container
                return listener.host, listener.port
            if listener is not None:
                self._stop_listener(self._listeners.pop(name))
            listener = self._start_listener(name, host, container)
            self._listeners[name] = listener
        LOG.info("Serial console of %s listens on %s:%d", name, listener.host, listener.port)
        return listener.host, listener.port

    def get(self, name: str) -> tuple[str, int] | None:
        with self._lock:
            listener = self._listeners.get(name)
            return (listener.host, listener.port) if listener else None

    def release(self, name: str) -> None:
        """Close the listener and its connections; the port goes back to nova."""
        with self._lock:
            listener = self._listeners.pop(name, None)
            if listener is not None:
                self._stop_listener(listener)
        if listener is not None:
            LOG.info("Serial console of %s on %s:%d closed", name, listener.host,
                     listener.port)

    def names(self) -> list[str]:
        with self._lock:
            return list(self._listeners)

    def shutdown(self) -> None:
        """Every listener released, the loop thread ended (driver cleanup_host)."""
        for name in self.names():
            self.release(name)
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is not None:
            self._call(self._runtime.close(), loop)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(CALL_TIMEOUT)

    # -- internals (lock held) ----------------------------------------------------------
    def _loop_running(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=loop.run_forever, daemon=True,
                                      name="nova-lxd-serial-consoles")
            thread.start()
            self._loop, self._thread = loop, thread
        return self._loop

    def _call(self, coro, loop: asyncio.AbstractEventLoop | None = None):
        loop = loop or self._loop_running()
        return asyncio.run_coroutine_threadsafe(coro, loop).result(CALL_TIMEOUT)

    def _start_listener(self, name: str, host: str, container: str) -> _Listener:
        """Bind a port from nova's allocator; one another process took meanwhile
        stays out of the allocator's hands until this call ends."""
        refused: list[int] = []
        try:
            for _ in range(BIND_ATTEMPTS):
                port = self._acquire(host)
                listener = _Listener(host, port, container)
                try:
                    listener.server = self._call(self._serve(name, listener))
                    return listener
                except OSError as exc:
                    if exc.errno != errno.EADDRINUSE:
                        self._release(host, port)
                        raise
                    refused.append(port)
            raise OSError(errno.EADDRINUSE, f"no free port to bind on {host}")
        finally:
            for port in refused:
                self._release(host, port)

    def _stop_listener(self, listener: _Listener) -> None:
        try:
            self._call(self._close(listener))
        finally:
            self._release(listener.host, listener.port)

    # -- loop side ----------------------------------------------------------------------
    async def _serve(self, name: str, listener: _Listener) -> asyncio.AbstractServer:
        async def connected(reader, writer):
            task = asyncio.current_task()
            listener.tasks.add(task)
            try:
                await self._bridge(name, listener.container, reader, writer)
            finally:
                listener.tasks.discard(task)
        return await asyncio.start_server(connected, listener.host, listener.port,
                                          reuse_address=True, limit=CHUNK)

    async def _close(self, listener: _Listener) -> None:
        if listener.server is not None:
            listener.server.close()
        for task in list(listener.tasks):
            task.cancel()
        if listener.tasks:
            await asyncio.wait(list(listener.tasks), timeout=10)
        if listener.server is not None:
            await listener.server.wait_closed()

    async def _bridge(self, name: str, container: str, reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        op_id = None
        try:
            try:
                op_id, data, control = await self._runtime.open(container)
            except (ConsoleError, aiohttp.ClientError, TimeoutError, KeyError) as exc:
                await _say(writer, f"console unavailable: {exc}")
                LOG.warning("Serial console of %s refused for %s: %s", name, peer, exc)
                return
            LOG.info("Serial console of %s attached for %s", name, peer)
            try:
                await _pump(reader, writer, data)
            finally:
                await control.close()  # detach, as `lxc console` does
                await data.close()
            error = await self._runtime.outcome(op_id)
            if error:
                await _say(writer, f"console closed: {error}")
        except (ConnectionError, aiohttp.ClientError, TimeoutError) as exc:
            LOG.info("Serial console of %s for %s ended: %s", name, peer, exc)
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
            if op_id:
                LOG.info("Serial console of %s detached for %s", name, peer)


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                data: aiohttp.ClientWebSocketResponse) -> None:
    """Bytes both ways until either side ends."""
    async def upstream():
        while chunk := await reader.read(CHUNK):
            await data.send_bytes(chunk)

    async def downstream():
        async for msg in data:
            if msg.type == aiohttp.WSMsgType.BINARY:
                writer.write(msg.data)
                await writer.drain()
            elif msg.type != aiohttp.WSMsgType.TEXT or msg.data == "":
                return  # an empty text frame ends the stream (LXD)

    tasks = [asyncio.ensure_future(upstream()), asyncio.ensure_future(downstream())]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            task.result()
    finally:
        for task in tasks:
            task.cancel()


async def _say(writer: asyncio.StreamWriter, text: str) -> None:
    """A line for whoever is on the TCP side (a terminal behind nova-serialproxy)."""
    with contextlib.suppress(ConnectionError):
        writer.write(f"\r\n[{text}]\r\n".encode(errors="replace"))
        await writer.drain()
