"""A blocking websocket client for one bulk stream received in a thread.

Migration's `fs` channel carries the whole root filesystem. Received through
aiohttp, every byte crosses the event loop several times (TLS memory BIOs, the
reader's payload buffer, a queue to the pipe writer) and competes with the
daemon's other work. Here a thread owns a blocking (TLS) socket: it reads frame
payloads straight into one buffer and writes them to the `tar -x` pipe, and
both the TLS reads and the pipe writes release the GIL. Measured on loopback:
about 1.1 GB/s against an aiohttp server, where an aiohttp client gets 0.75 and
the `websockets` library's sync client 0.57 (benchmarks/migration_bench.py
gives the end-to-end figure).

Only what a receiver needs: the RFC 6455 client handshake (with the
subprotocol offer that tells a peer which wire format we speak), unmasked
server frames (binary, text, continuation, ping, close), masked pong and close
frames back. Control messages stay on aiohttp.

A peer that talks back on the same connection (LXD's rsync runs both ways over
`fs`) gets `AsyncWebSocket`: the established connection handed to the event
loop, full duplex, with the subset of aiohttp's websocket interface the
migration code uses.
"""
from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import socket
import ssl
import struct
import urllib.parse

import aiohttp

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
BUFFER = 1024 * 1024
# The largest websocket message the daemon accepts on any socket (aiohttp holds a
# message whole): exec input and migration chunks are at most 1 MiB, a migration
# header with many snapshots a few MiB.
MAX_MESSAGE = 16 * 1024 * 1024
_MAX_HEADERS = 64 * 1024
_MAX_CONTROL = 64 * 1024


class WebSocketError(Exception):
    """The peer broke the protocol, refused the handshake, or went away."""


def accept_key(key: str) -> str:
    return base64.b64encode(hashlib.sha1(key.encode() + _GUID).digest()).decode()


def apply_mask(payload: bytes, mask: bytes) -> bytes:
    """XOR with the 4-byte key, as whole-buffer integer arithmetic (C speed for MBs)."""
    n = len(payload)
    if not n:
        return b""
    key = int.from_bytes((mask * (n // 4 + 1))[:n], "little")
    return (int.from_bytes(payload, "little") ^ key).to_bytes(n, "little")


def encode_frame(opcode: int, payload: bytes, mask: bytes | None = None) -> bytes:
    """One final frame; clients must mask (RFC 6455 5.3)."""
    mask = os.urandom(4) if mask is None else mask
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 1 << 16:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    return head + mask + apply_mask(payload, mask)


class BlockingWebSocket:
    """`connect()`, then `stream_to(fd)` once per binary stream ended by a text frame."""

    def __init__(self, url: str, ssl_context: ssl.SSLContext | None,
                 connect_timeout: float = 30.0, idle_timeout: float = 120.0,
                 protocols: tuple[str, ...] = ()):
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("ws", "wss") or not parts.hostname:
            raise WebSocketError(f"Not a websocket URL: {url!r}")
        self.secure = parts.scheme == "wss"
        self.host = parts.hostname
        self.port = parts.port or (443 if self.secure else 80)
        self.target = parts.path + (f"?{parts.query}" if parts.query else "")
        self.ssl_context = ssl_context
        self.connect_timeout, self.idle_timeout = connect_timeout, idle_timeout
        self.sock: socket.socket | None = None
        self._pending = bytearray()
        self._buf = memoryview(bytearray(BUFFER))
        self.aborted = False
        self.protocols = protocols
        self.protocol: str | None = None     # the subprotocol the server picked

    # Handshake ----------------------------------------------------------------
    def connect(self) -> "BlockingWebSocket":
        sock = socket.create_connection((self.host, self.port), self.connect_timeout)
        try:
            if self.secure:
                ctx = self.ssl_context or ssl.create_default_context()
                sock = ctx.wrap_socket(sock, server_hostname=self.host)
            self.sock = sock
            self._handshake()
            sock.settimeout(self.idle_timeout)
        except BaseException:
            sock.close()
            self.sock = None
            raise
        return self

    def _handshake(self) -> None:
        key = base64.b64encode(os.urandom(16)).decode()
        host = f"[{self.host}]" if ":" in self.host else self.host
        offer = f"Sec-WebSocket-Protocol: {', '.join(self.protocols)}\r\n" \
            if self.protocols else ""
        self.sock.sendall((
            f"GET {self.target} HTTP/1.1\r\nHost: {host}:{self.port}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{offer}\r\n"
        ).encode())
        while b"\r\n\r\n" not in self._pending:
            if len(self._pending) > _MAX_HEADERS:
                raise WebSocketError("Websocket handshake: response headers too long")
            self._fill()
        head, _, rest = bytes(self._pending).partition(b"\r\n\r\n")
        self._pending = bytearray(rest)
        lines = head.decode("latin-1").split("\r\n")
        status = lines[0].split(" ", 2)
        if len(status) < 2 or status[1] != "101":
            raise WebSocketError(f"Websocket handshake refused: {lines[0]}")
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if headers.get("sec-websocket-accept") != accept_key(key):
            raise WebSocketError("Websocket handshake: wrong Sec-WebSocket-Accept")
        picked = headers.get("sec-websocket-protocol") or None
        if picked is not None and picked not in self.protocols:
            raise WebSocketError(f"Websocket handshake: server picked subprotocol {picked!r}, "
                                 "which was not offered")
        self.protocol = picked

    # Frames -------------------------------------------------------------------
    def _recv(self, call, *args, what: str = ""):
        """One socket read; a timeout, an error or the end of the stream is a WebSocketError."""
        try:
            got = call(*args)
        except TimeoutError:
            raise WebSocketError(f"No data from the peer for {self.idle_timeout:.0f} s")
        except OSError as exc:
            raise WebSocketError(f"Connection to the peer failed: {exc}")
        if not got:
            raise WebSocketError(f"The peer closed the connection{what}")
        return got

    def _fill(self) -> None:
        self._pending += self._recv(self.sock.recv, 65536)

    def _exact(self, n: int) -> bytes:
        while len(self._pending) < n:
            self._fill()
        out = bytes(self._pending[:n])
        del self._pending[:n]
        return out

    def _header(self) -> tuple[bool, int, int]:
        b1, b2 = self._exact(2)
        if b1 & 0x70:
            raise WebSocketError("Websocket frame with reserved bits set (no extension agreed)")
        if b2 & 0x80:
            raise WebSocketError("Websocket frame from the server is masked")
        n = b2 & 0x7F
        if n == 126:
            n = struct.unpack("!H", self._exact(2))[0]
        elif n == 127:
            n = struct.unpack("!Q", self._exact(8))[0]
        return bool(b1 & 0x80), b1 & 0x0F, n

    def _payload_to(self, n: int, fd: int) -> None:
        """Move n payload bytes to fd through the buffer, no per-chunk objects."""
        buf = self._buf
        while n:
            got = min(len(self._pending), n, len(buf))
            buf[:got] = self._pending[:got]
            del self._pending[:got]
            while got < min(n, len(buf)):
                got += self._recv(self.sock.recv_into, buf[got:min(n, len(buf))],
                                  what=" mid-frame")
            view = buf[:got]
            while view:
                view = view[os.write(fd, view):]
            n -= got

    def stream_to(self, fd: int) -> tuple[int, str]:
        """Write binary payloads to fd until a text frame; return (bytes, that text)."""
        total, message = 0, None
        while True:
            fin, opcode, n = self._header()
            if opcode == OP_CONT and message is None:
                opcode = OP_BINARY
            if opcode == OP_BINARY:
                self._payload_to(n, fd)
                total += n
            elif opcode in (OP_TEXT, OP_CONT):
                if n > _MAX_CONTROL or len(message or b"") + n > _MAX_CONTROL:
                    raise WebSocketError("Text message too long in a data stream")
                message = (message or b"") + self._exact(n)
                if fin:
                    return total, message.decode()
            elif opcode == OP_PING:
                self.sock.sendall(encode_frame(OP_PONG, self._exact(n)))
            elif opcode == OP_PONG:
                self._exact(n)
            elif opcode == OP_CLOSE:
                body = self._exact(n)
                code = struct.unpack("!H", body[:2])[0] if n >= 2 else 1005
                raise WebSocketError(f"The peer closed the stream (code {code})")
            else:
                raise WebSocketError(f"Unknown websocket opcode {opcode}")

    # Shutdown -----------------------------------------------------------------
    def abort(self) -> None:
        """From any thread: make a blocked `stream_to` fail at once."""
        self.aborted = True
        if self.sock is not None:
            try:
                self.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self) -> None:
        if self.sock is None:
            return
        try:
            if not self.aborted:
                self.sock.settimeout(2)
                self.sock.sendall(encode_frame(OP_CLOSE, struct.pack("!H", 1000)))
        except OSError:
            pass
        finally:
            self.sock.close()
            self.sock = None

    def into_async(self) -> "AsyncWebSocket":
        """This connection, now driven by the running event loop (see AsyncWebSocket)."""
        return AsyncWebSocket(self)


class AsyncWebSocket:
    """An established BlockingWebSocket driven by the event loop, full duplex.

    Why: the `fs` handshake happens before we know whether the peer is one of
    our daemons (a one-way tar stream, read in a thread) or LXD (rsync, which
    talks both ways on the same TLS connection, and an SSL object must not be
    read and written from two threads at once). The socket turns non-blocking
    and the loop waits on its readiness, so reads and writes interleave on one
    thread. Interface: `receive()` returning aiohttp.WSMessage, `send_bytes`,
    `send_str`, `close`, `closed`, as aiohttp's websockets have them.
    """

    def __init__(self, ws: BlockingWebSocket):
        self.ws = ws
        self.sock = ws.sock
        self.sock.setblocking(False)
        self._pending = ws._pending
        self._waiters: dict[bool, asyncio.Future] = {}
        self._send_lock = asyncio.Lock()
        self.closed = False
        self.protocol = ws.protocol

    def _wait(self, write: bool) -> asyncio.Future:
        fut = self._waiters.get(write)
        if fut is None or fut.done():
            loop = asyncio.get_running_loop()
            fut = self._waiters[write] = loop.create_future()
            fd = self.sock.fileno()
            remove = loop.remove_writer if write else loop.remove_reader

            def ready() -> None:
                remove(fd)
                if not fut.done():
                    fut.set_result(None)
            (loop.add_writer if write else loop.add_reader)(fd, ready)
        return asyncio.shield(fut)

    async def _fill(self) -> None:
        while True:
            try:
                data = self.sock.recv(BUFFER)
            except (ssl.SSLWantReadError, BlockingIOError, InterruptedError):
                await self._wait(False)
                continue
            except ssl.SSLWantWriteError:
                await self._wait(True)
                continue
            except OSError as exc:
                raise WebSocketError(f"Connection to the peer failed: {exc}")
            if not data:
                raise WebSocketError("The peer closed the connection")
            self._pending += data
            return

    async def _exact(self, n: int) -> bytes:
        while len(self._pending) < n:
            await self._fill()
        out = bytes(self._pending[:n])
        del self._pending[:n]
        return out

    async def _sendall(self, data: bytes) -> None:
        view = memoryview(data)
        async with self._send_lock:
            while view:
                try:
                    view = view[self.sock.send(view):]
                except (ssl.SSLWantWriteError, BlockingIOError, InterruptedError):
                    await self._wait(True)
                except ssl.SSLWantReadError:
                    await self._wait(False)
                except OSError as exc:
                    raise WebSocketError(f"Connection to the peer failed: {exc}")

    async def receive(self, timeout: float | None = None) -> aiohttp.WSMessage:
        """The next data message; a close or a broken connection is a CLOSE/ERROR one.

        A timeout (only for waits between messages) gives an ERROR message.
        """
        if timeout is not None:
            try:
                return await asyncio.wait_for(self.receive(), timeout)
            except TimeoutError:
                self.closed = True
                return aiohttp.WSMessage(aiohttp.WSMsgType.ERROR,
                                         WebSocketError("No message from the peer"), None)
        message, kind = None, None
        try:
            while True:
                b1, b2 = await self._exact(2)
                if b1 & 0x70 or b2 & 0x80:
                    raise WebSocketError("Websocket frame with reserved bits or masked")
                fin, opcode, n = bool(b1 & 0x80), b1 & 0x0F, b2 & 0x7F
                if n == 126:
                    n = struct.unpack("!H", await self._exact(2))[0]
                elif n == 127:
                    n = struct.unpack("!Q", await self._exact(8))[0]
                if opcode in (OP_BINARY, OP_TEXT, OP_CONT):
                    if opcode != OP_CONT:
                        kind, message = opcode, b""
                    elif kind is None:
                        raise WebSocketError("Continuation frame without a message")
                    if len(message) + n > MAX_MESSAGE:
                        raise WebSocketError("Websocket message too long")
                    message += await self._exact(n)
                    if fin:
                        if kind == OP_TEXT:
                            return aiohttp.WSMessage(aiohttp.WSMsgType.TEXT,
                                                     message.decode(), None)
                        return aiohttp.WSMessage(aiohttp.WSMsgType.BINARY, message, None)
                elif opcode == OP_PING:
                    await self._sendall(encode_frame(OP_PONG, await self._exact(n)))
                elif opcode == OP_PONG:
                    await self._exact(n)
                elif opcode == OP_CLOSE:
                    body = await self._exact(n)
                    code = struct.unpack("!H", body[:2])[0] if n >= 2 else 1005
                    self.closed = True
                    return aiohttp.WSMessage(aiohttp.WSMsgType.CLOSE, code, None)
                else:
                    raise WebSocketError(f"Unknown websocket opcode {opcode}")
        except WebSocketError as exc:
            self.closed = True
            return aiohttp.WSMessage(aiohttp.WSMsgType.ERROR, exc, None)

    async def send_bytes(self, data: bytes) -> None:
        await self._sendall(encode_frame(OP_BINARY, bytes(data)))

    async def send_str(self, text: str) -> None:
        await self._sendall(encode_frame(OP_TEXT, text.encode()))

    async def close(self) -> None:
        if self.sock is None:
            return
        loop = asyncio.get_running_loop()
        try:
            if not self.closed:
                await asyncio.wait_for(self._sendall(encode_frame(
                    OP_CLOSE, struct.pack("!H", 1000))), 2)
        except (OSError, TimeoutError, WebSocketError):
            pass
        finally:
            self.closed = True
            fd = self.sock.fileno()
            if fd >= 0:
                loop.remove_reader(fd)
                loop.remove_writer(fd)
            self.sock.close()
            self.ws.sock = None
            self.sock = None
