"""runtime.wsclient against a scripted server on a real loopback socket."""
from __future__ import annotations

import base64
import hashlib
import os
import socket
import struct
import threading

import pytest

from runtime import wsclient


def server_frame(opcode: int, payload: bytes, fin: bool = True, masked: bool = False) -> bytes:
    n = len(payload)
    first = (0x80 if fin else 0) | opcode
    if n < 126:
        head = struct.pack("!BB", first, n | (0x80 if masked else 0))
    elif n < 1 << 16:
        head = struct.pack("!BBH", first, 126 | (0x80 if masked else 0), n)
    else:
        head = struct.pack("!BBQ", first, 127 | (0x80 if masked else 0), n)
    return head + (b"\0\0\0\0" if masked else b"") + payload


def read_client_frame(conn: socket.socket) -> tuple[int, bytes]:
    def exact(n: int) -> bytes:
        out = b""
        while len(out) < n:
            data = conn.recv(n - len(out))
            if not data:
                raise EOFError
            out += data
        return out
    b1, b2 = exact(2)
    assert b2 & 0x80, "client frames must be masked"
    n = b2 & 0x7F
    if n == 126:
        n = struct.unpack("!H", exact(2))[0]
    mask = exact(4)
    data = bytes(b ^ mask[i % 4] for i, b in enumerate(exact(n)))
    return b1 & 0x0F, data


class Server:
    """Accepts one connection, answers the handshake, then sends `script` bytes."""

    def __init__(self, script: bytes = b"", status: str = "101 Switching Protocols",
                 bad_accept: bool = False, same_packet: bool = False):
        self.srv = socket.create_server(("127.0.0.1", 0))
        self.port = self.srv.getsockname()[1]
        self.script, self.status = script, status
        self.bad_accept, self.same_packet = bad_accept, same_packet
        self.request = b""
        self.received: list[tuple[int, bytes]] = []
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        conn, _ = self.srv.accept()
        with conn:
            while b"\r\n\r\n" not in self.request:
                self.request += conn.recv(4096)
            key = [line.split(":", 1)[1].strip() for line in
                   self.request.decode().split("\r\n") if line.lower().startswith(
                       "sec-websocket-key:")][0]
            accept = base64.b64encode(hashlib.sha1(
                key.encode() + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest()).decode()
            if self.bad_accept:
                # change the first character (a fixed "x" would be a no-op when the
                # real value starts with one: 1 run in 64)
                accept = ("y" if accept[0] == "x" else "x") + accept[1:]
            head = (f"HTTP/1.1 {self.status}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                    f"Sec-WebSocket-Accept: {accept}\r\n\r\n").encode()
            if self.same_packet:
                conn.sendall(head + self.script)
            else:
                conn.sendall(head)
                for i in range(0, len(self.script), 7777):   # odd slices split headers
                    conn.sendall(self.script[i:i + 7777])
            conn.settimeout(2)
            try:
                while True:
                    self.received.append(read_client_frame(conn))
            except (OSError, EOFError):
                pass

    def url(self, path: str = "/1.0/operations/x/websocket?secret=s") -> str:
        return f"ws://127.0.0.1:{self.port}{path}"


def sink() -> tuple[int, list[bytes], threading.Thread]:
    r, w = os.pipe()
    out: list[bytes] = []

    def drain() -> None:
        with os.fdopen(r, "rb") as f:
            out.append(f.read())
    t = threading.Thread(target=drain, daemon=True)
    t.start()
    return w, out, t


def test_streams_binary_frames_to_fd_until_text_and_keeps_leftovers():
    first, second = os.urandom(3 * wsclient.BUFFER + 17), os.urandom(70000)
    script = (server_frame(2, first[:200]) + server_frame(2, first[200:])
              + server_frame(1, b"end")
              + server_frame(2, second[:5], fin=False) + server_frame(0, second[5:])
              + server_frame(1, b"en", fin=False) + server_frame(0, b"d"))
    srv = Server(script, same_packet=True)
    ws = wsclient.BlockingWebSocket(srv.url(), None).connect()
    assert srv.request.startswith(b"GET /1.0/operations/x/websocket?secret=s HTTP/1.1\r\n")
    for payload in (first, second):
        w, out, t = sink()
        try:
            assert ws.stream_to(w) == (len(payload), "end")
        finally:
            os.close(w)
        t.join(5)
        assert out[0] == payload
    ws.close()
    srv.thread.join(5)
    assert srv.received[-1] == (wsclient.OP_CLOSE, struct.pack("!H", 1000))


def test_ping_is_answered_with_a_masked_pong():
    srv = Server(server_frame(9, b"hello") + server_frame(2, b"x") + server_frame(1, b"end"))
    ws = wsclient.BlockingWebSocket(srv.url(), None).connect()
    w, out, t = sink()
    try:
        assert ws.stream_to(w) == (1, "end")
    finally:
        os.close(w)
    ws.close()
    srv.thread.join(5)
    assert (wsclient.OP_PONG, b"hello") in srv.received


@pytest.mark.parametrize("script, message", [
    (server_frame(2, b"abc") + server_frame(8, struct.pack("!H", 1011)), "code 1011"),
    (server_frame(2, b"abc", masked=True), "masked"),
    (server_frame(2, b"abcdef")[:-2], "closed the connection mid-frame"),
    (b"\xc2\x01a", "reserved bits"),
    (server_frame(5, b""), "Unknown websocket opcode"),
])
def test_protocol_errors_are_clear(script, message):
    srv = Server(script)
    ws = wsclient.BlockingWebSocket(srv.url(), None).connect()
    w, out, t = sink()
    try:
        with pytest.raises(wsclient.WebSocketError, match=message):
            ws.stream_to(w)
    finally:
        os.close(w)
        ws.close()


@pytest.mark.parametrize("kw, message", [
    ({"status": "403 Forbidden"}, "refused: HTTP/1.1 403 Forbidden"),
    ({"bad_accept": True}, "Sec-WebSocket-Accept"),
])
def test_handshake_refusals(kw, message):
    srv = Server(**kw)
    with pytest.raises(wsclient.WebSocketError, match=message):
        wsclient.BlockingWebSocket(srv.url(), None).connect()


def test_abort_unblocks_a_waiting_reader():
    srv = Server(server_frame(2, b"abc"))          # then silence
    ws = wsclient.BlockingWebSocket(srv.url(), None).connect()
    w, out, t = sink()
    errors: list[Exception] = []

    def read() -> None:
        try:
            ws.stream_to(w)
        except wsclient.WebSocketError as exc:
            errors.append(exc)
    reader = threading.Thread(target=read)
    reader.start()
    ws.abort()
    reader.join(5)
    os.close(w)
    assert not reader.is_alive() and errors
    ws.close()


def test_idle_timeout():
    srv = Server(b"")
    ws = wsclient.BlockingWebSocket(srv.url(), None, idle_timeout=0.2).connect()
    w, out, t = sink()
    try:
        with pytest.raises(wsclient.WebSocketError, match="No data from the peer"):
            ws.stream_to(w)
    finally:
        os.close(w)
        ws.close()


def test_rejects_non_websocket_urls():
    with pytest.raises(wsclient.WebSocketError, match="Not a websocket URL"):
        wsclient.BlockingWebSocket("https://127.0.0.1:1/x", None)


def test_encode_frame_lengths_and_mask():
    for n in (0, 125, 126, 65535, 65536):
        frame = wsclient.encode_frame(2, b"a" * n, mask=b"\x01\x02\x03\x04")
        assert frame[0] == 0x82 and frame[1] & 0x80
        assert len(frame) == n + 2 + 4 + (0 if n < 126 else 2 if n < 65536 else 8)


def test_mask_matches_per_byte_xor():
    payload, mask = os.urandom(1000 + 3), b"\x01\x82\x33\xf4"
    assert wsclient.apply_mask(payload, mask) == bytes(
        b ^ mask[i % 4] for i, b in enumerate(payload))
    assert wsclient.apply_mask(b"", mask) == b""


def _aiohttp_echo_server(protocols: tuple[str, ...]):
    """An aiohttp websocket server on loopback: echoes binary frames, answers text."""
    import asyncio

    from aiohttp import web

    async def handler(request):
        ws = web.WebSocketResponse(protocols=protocols, max_msg_size=0)
        await ws.prepare(request)
        await ws.send_str(ws.ws_protocol or "")
        async for msg in ws:
            if msg.type.name == "BINARY":
                await ws.send_bytes(msg.data)
            elif msg.data == "":
                await ws.send_str("")
                break
        return ws

    async def start():
        app = web.Application()
        app.router.add_get("/ws", handler)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        return runner, site._server.sockets[0].getsockname()[1]
    return asyncio, start


@pytest.mark.parametrize("offered,served,picked", [
    (("nova-lxd-migration-1",), ("nova-lxd-migration-1",), "nova-lxd-migration-1"),
    (("nova-lxd-migration-1",), (), None), ((), ("nova-lxd-migration-1",), None)])
def test_subprotocol_and_full_duplex_after_into_async(offered, served, picked):
    asyncio, start = _aiohttp_echo_server(served)

    async def main():
        runner, port = await start()
        try:
            ws = wsclient.BlockingWebSocket(f"ws://127.0.0.1:{port}/ws", None,
                                            protocols=offered)
            await asyncio.to_thread(ws.connect)
            assert ws.protocol == picked
            aws = ws.into_async()
            first = await aws.receive()
            assert first.type.name == "TEXT" and first.data == (picked or "")
            blobs = [os.urandom(n) for n in (1, 125, 126, 70000, 3 * 1024 * 1024)]

            async def sender():
                for b in blobs:
                    await aws.send_bytes(b)
                await aws.send_str("")
            task = asyncio.ensure_future(sender())
            got = []
            while True:
                msg = await aws.receive()
                if msg.type.name == "TEXT":
                    break
                got.append(msg.data)
            await task
            assert got == blobs
            await aws.close()
        finally:
            await runner.cleanup()
    asyncio.run(main())
