"""Talking to a login console in tests: log in, run a command, read its output.

Two ways in, one dialogue:
- `TcpConsole`: the raw TCP port that `get_serial_console` hands out, which is
  what nova-serialproxy connects to;
- `WebsocketConsole`: a console websocket URL, as a browser (Horizon's xterm)
  uses nova-serialproxy's `openstack console url show --serial` URL. The nova
  functional tests drive it through websockify (the library nova-serialproxy
  is built on) in front of the TCP port; the real-cloud tests point it at
  nova-serialproxy itself.
"""
from __future__ import annotations

import asyncio
import socket
import threading
import time

import aiohttp

TIMEOUT = 20.0


class Console:
    """send() bytes; expect() reads until a token (or fails with what came)."""

    def __init__(self):
        self.buf = b""

    def send(self, data: bytes) -> None:
        raise NotImplementedError

    def _recv(self, timeout: float) -> bytes | None:
        """Some bytes, b"" on timeout, None at the end of the stream."""
        raise NotImplementedError

    def expect(self, token: bytes, timeout: float = TIMEOUT) -> bytes:
        deadline = time.monotonic() + timeout
        while token not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {token!r} from the console: {self.buf[-400:]!r}")
            got = self._recv(min(left, 1.0))
            if got is None:
                raise AssertionError(f"console closed before {token!r}: {self.buf[-400:]!r}")
            self.buf += got
        head, _, self.buf = self.buf.partition(token)
        return head + token

    def read_rest(self, timeout: float = 5.0) -> bytes:
        """Everything until the other side closes (a refusal message, say)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self._recv(0.2)
            if got is None:
                break
            self.buf += got
        rest, self.buf = self.buf, b""
        return rest

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Console:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class TcpConsole(Console):
    def __init__(self, host: str, port: int):
        super().__init__()
        self.sock = socket.create_connection((host, port), timeout=TIMEOUT)

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _recv(self, timeout: float) -> bytes | None:
        self.sock.settimeout(timeout)
        try:
            return self.sock.recv(65536) or None
        except TimeoutError:
            return b""

    def close(self) -> None:
        self.sock.close()


class WebsocketConsole(Console):
    """A websocket console client (binary frames both ways) on its own loop thread."""

    def __init__(self, url: str, origin: str | None = None):
        super().__init__()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._ws = self._run(self._connect(url, origin))

    def _run(self, coro, timeout: float = TIMEOUT):
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout + 5)

    async def _connect(self, url: str, origin: str | None):
        self._session = aiohttp.ClientSession()
        headers = {"Origin": origin} if origin else None
        # websockify (nova-serialproxy) speaks the "binary" subprotocol
        return await self._session.ws_connect(url, headers=headers, protocols=("binary",),
                                              timeout=TIMEOUT)

    def send(self, data: bytes) -> None:
        self._run(self._ws.send_bytes(data))

    def _recv(self, timeout: float) -> bytes | None:
        async def receive():
            try:
                msg = await self._ws.receive(timeout=timeout)
            except TimeoutError:
                return b""
            if msg.type == aiohttp.WSMsgType.BINARY:
                return msg.data
            if msg.type == aiohttp.WSMsgType.TEXT:
                return msg.data.encode()
            return None
        return self._run(receive(), timeout)

    def close(self) -> None:
        async def shut():
            await self._ws.close()
            await self._session.close()
        try:
            self._run(shut())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)
            self._loop.close()


def login_and_run(con: Console, command: str, user: str = "root",
                  password: str | None = None, prompt: bytes = b"# ") -> str:
    """Wake the getty, log in, run one command, log out; the command's output."""
    con.send(b"\n")
    con.expect(b"login: ")
    con.send(user.encode() + b"\n")
    if password is not None:
        con.expect(b"assword: ")
        con.send(password.encode() + b"\n")
    con.expect(prompt)
    con.send(f"{command}; echo END-$((6*7))\n".encode())
    con.expect(b"\n")  # the echo of the command line
    out = con.expect(b"END-42")[:-len(b"END-42")]
    con.send(b"exit\n")
    con.expect(b"login: ")
    return out.decode(errors="replace").replace("\r", "").strip()
