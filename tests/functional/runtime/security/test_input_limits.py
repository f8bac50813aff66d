"""Request bodies, websocket messages and exec input are bounded; nothing blocks the loop.

The daemon's resident memory is read from /proc while each flood runs: a 150 MB
body (the reported reproduction drove the daemon to 495 MB), a 64 MiB websocket
message, 200 MiB of exec input to a process that never reads. Each must end in
a clear refusal (413, a close with 1009) or in backpressure, with the daemon's
peak RSS a few MB above where it started and GET /1.0 answering within a second
throughout (also while an image server never answers a lookup).
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import ssl
import threading
import time

import aiohttp
import pytest

from tests.functional.runtime.security import rawhttp

BODY = 150 * 1024 * 1024
MAX_GROWTH_KB = 40 * 1024
FIGURES: dict[str, str] = {}


def _chunks(total: int, size: int = 1 << 20):
    block = b"[" * size            # a JSON body that never parses: it must not be read whole
    sent = 0
    while sent < total:
        yield block
        sent += size


class Watch:
    """Peak RSS of the daemon and GET /1.0 latency while something runs."""

    def __init__(self, daemon):
        self.daemon = daemon
        self.pid = daemon.proc.pid
        self.rss0, _ = rawhttp.rss_kb(self.pid)
        self.peak = self.rss0
        self.latencies: list[float] = []
        self._stop = threading.Event()

    def __enter__(self):
        def run():
            while not self._stop.is_set():
                self.peak = max(self.peak, rawhttp.rss_kb(self.pid)[0])
                self.latencies.append(rawhttp.latency(self.daemon.socket))
                time.sleep(0.05)
        self._t = threading.Thread(target=run, daemon=True)
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, rawhttp.rss_kb(self.pid)[0])

    def check(self, what: str) -> None:
        FIGURES[what] = (f"RSS {self.rss0 // 1024} MB -> peak {self.peak // 1024} MB; "
                         f"GET /1.0 worst {max(self.latencies or [0]) * 1000:.0f} ms")
        print(f"\n[rss] {what}: {FIGURES[what]}")
        assert self.peak - self.rss0 < MAX_GROWTH_KB, FIGURES[what]
        assert max(self.latencies or [0]) < 1.0, FIGURES[what]


@pytest.mark.parametrize("framing", ["chunked", "content-length"])
def test_input_json_body_capped_on_the_unix_socket(daemon, framing):
    with Watch(daemon) as w:
        status, body = rawhttp.request(
            daemon.socket, "POST", "/1.0/instances", body=_chunks(BODY), timeout=60,
            headers={"Content-Type": "application/json"},
            content_length=BODY if framing == "content-length" else None)
    assert status == 413, body
    w.check(f"150 MB JSON body on the unix socket ({framing})")


def _free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.fixture(scope="module")
def https(client):
    port = _free_port()
    client.api.patch(json={"config": {"core.https_address": f"127.0.0.1:{port}"}})
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 1).close()
            break
        except OSError:
            time.sleep(0.1)
    yield port
    client.api.patch(json={"config": {"core.https_address": None}})


@pytest.mark.parametrize("framing", ["chunked", "content-length"])
def test_input_unauthenticated_150mb_body(daemon, https, framing):
    """The reported reproduction: a client with no trusted certificate posts 150 MB
    to the one route untrusted clients may use."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with Watch(daemon) as w:
        raw = socket.create_connection(("127.0.0.1", https), 10)
        s = ctx.wrap_socket(raw)
        s.settimeout(60)
        head = ["POST /1.0/certificates HTTP/1.1", "Host: localhost",
                "Content-Type: application/json", "Connection: close"]
        head.append(f"Content-Length: {BODY}" if framing == "content-length"
                    else "Transfer-Encoding: chunked")
        s.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        try:
            for chunk in _chunks(BODY):
                s.sendall(chunk if framing == "content-length"
                          else f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
        except OSError:
            pass  # refused early: the daemon closed the connection
        data = b""
        try:
            while chunk := s.recv(65536):
                data += chunk
        except OSError:
            pass
        s.close()
    status = int(data.split(b" ", 2)[1]) if data else 0
    assert status in (403, 413), data[:300]
    w.check(f"150 MB unauthenticated HTTPS body ({framing})")


async def _ws(daemon, op: str, secret: str):
    conn = aiohttp.UnixConnector(path=daemon.socket)
    session = aiohttp.ClientSession(connector=conn)
    ws = await session.ws_connect(f"http://localhost{op}/websocket?secret={secret}",
                                  max_msg_size=0)
    return session, ws


def _exec(daemon, inst, command: list[str], interactive: bool) -> tuple[str, dict]:
    status, body = rawhttp.request(daemon.socket, "POST", f"/1.0/instances/{inst.name}/exec",
                                   body=json.dumps({"command": command,
                                                    "wait-for-websocket": True,
                                                    "interactive": interactive}).encode(),
                                   headers={"Content-Type": "application/json"})
    assert status == 202, body
    return body["operation"], body["metadata"]["metadata"]["fds"]


def _console(daemon, inst) -> tuple[str, dict]:
    status, body = rawhttp.request(daemon.socket, "POST",
                                   f"/1.0/instances/{inst.name}/console",
                                   body=json.dumps({"type": "console"}).encode(),
                                   headers={"Content-Type": "application/json"})
    assert status == 202, body
    return body["operation"], body["metadata"]["metadata"]["fds"]


@pytest.mark.parametrize("kind", ["exec", "console"])
def test_input_websocket_message_bounded(daemon, make_instance, kind):
    inst = make_instance()
    if kind == "exec":
        op, fds = _exec(daemon, inst, ["sleep", "2"], interactive=False)
        names = ("0", "1", "2")
    else:
        op, fds = _console(daemon, inst)
        names = ("0", "control")

    async def flood():
        socks = [await _ws(daemon, op, fds[n]) for n in names]
        ws = socks[0][1]
        try:
            try:
                await ws.send_bytes(bytes(64 << 20))
            except (ConnectionError, OSError):
                return aiohttp.WSMsgType.CLOSED, None   # the daemon hung up mid-message
            while True:   # (the console's output may come first)
                msg = await asyncio.wait_for(ws.receive(), 20)
                if msg.type not in (aiohttp.WSMsgType.BINARY, aiohttp.WSMsgType.TEXT):
                    return msg.type, ws.close_code
        finally:
            for session, ws in socks:
                await ws.close()
                await session.close()
    with Watch(daemon) as w:
        kind_, code = asyncio.run(flood())
    assert kind_ in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED,
                     aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.ERROR), kind_
    assert code in (1009, None), code
    w.check(f"64 MiB websocket message to {kind} input")
    rawhttp.request(daemon.socket, "DELETE", op)
    assert inst.execute(["true"]).exit_code == 0   # the instance still answers


def _flood(daemon, op: str, fds: dict, names: list[str], seconds: float = 5) -> int:
    """Push 1 MiB frames into the first websocket for a while, reading nothing; the
    bytes the daemon accepted."""
    sent = [0]

    async def flood():
        socks = [await _ws(daemon, op, fds[n]) for n in names]
        chunk = b"y" * (1 << 20)

        async def push():
            with contextlib.suppress(ConnectionError, OSError):
                while sent[0] < 200 << 20 and not socks[0][1].closed:
                    await socks[0][1].send_bytes(chunk)
                    sent[0] += len(chunk)
        task = asyncio.ensure_future(push())
        await asyncio.sleep(seconds)
        task.cancel()
        for session, ws in socks:
            await ws.close()
            await session.close()
    asyncio.run(flood())
    return sent[0]


def test_input_console_flood(daemon, make_instance):
    """Console input nobody in the container reads, and output the client never
    reads: the daemon holds neither (backpressure to the client, or a cut-off)."""
    inst = make_instance()
    op, fds = _console(daemon, inst)
    with Watch(daemon) as w:
        sent = _flood(daemon, op, fds, ["0", "control"])
    w.check(f"console input flood, {sent >> 20} MiB accepted in 5 s")
    rawhttp.request(daemon.socket, "DELETE", op)
    assert inst.execute(["true"]).exit_code == 0


@pytest.mark.parametrize("interactive", [False, True], ids=["piped", "pty"])
def test_input_exec_stdin_backpressure(daemon, make_instance, interactive):
    """A process that never reads its input: the client is slowed down, the daemon
    neither buffers the input nor blocks on a full pty."""
    inst = make_instance()
    op, fds = _exec(daemon, inst, ["sleep", "60"], interactive)
    with Watch(daemon) as w:
        sent = _flood(daemon, op, fds, ["0"] if interactive else ["0", "1", "2"])
    assert sent < 100 << 20, f"{sent >> 20} MiB accepted with nobody reading"
    w.check(f"exec stdin flood ({'pty' if interactive else 'pipe'}), "
            f"{sent >> 20} MiB accepted in 5 s")
    inst.execute(["true"])  # the instance still answers
    rawhttp.request(daemon.socket, "DELETE", op)


def test_input_image_server_lookup_off_the_loop(daemon, busybox):
    """An image server that accepts and never answers must not freeze the daemon."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    port = server.getsockname()[1]
    result: list = []

    def create():
        result.append(rawhttp.request(
            daemon.socket, "POST", "/1.0/instances", timeout=60,
            headers={"Content-Type": "application/json"},
            body=json.dumps({"name": "remote-hang", "source": {
                "type": "image", "server": f"http://127.0.0.1:{port}", "protocol": "lxd",
                "alias": "busybox"}}).encode()))
    t = threading.Thread(target=create)
    try:
        with Watch(daemon) as w:
            t.start()
            t.join(30)
    finally:
        server.close()
    assert result and result[0][0] == 400, result
    w.check("image server that never answers")
