"""The benchmarks' measuring instrument: a minimal LXD REST client over a unix
socket, standard library only. Everything else (driver, CLI, tests, the
benchmarks' untimed set-up) uses the one LXD client, runtime.client.

Why it stays on the benchmarks' hot path: the one client is pylxd over requests,
which adds 0.3-0.9 ms to every request (benchmarks/client_bench.py, medians of
200, same run: GET /1.0 0.34 vs 0.61 ms, exec in record-output mode 12.9 vs
15.6 ms, freeze + unfreeze 2.8 vs 5.4 ms), and pylxd's execute() polls with a
100 ms sleep; timed that way the tables would measure the client, not the
daemon. This client keeps one HTTP/1.1 connection alive, speaks just enough RFC
6455 for LXD's exec websockets, and waits on operations with `/wait`.
"""
from __future__ import annotations

import base64
import http.client
import json
import os
import select
import socket
import struct
import time
import urllib.parse
from typing import Any


class ApiError(Exception):
    """An LXD error response or a failed operation, with the HTTP status."""

    def __init__(self, status: int, message: str):
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float):
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._path)
        self.sock = sock


class Client:
    """Synchronous LXD API client on one kept-alive unix socket connection."""

    def __init__(self, socket_path: str, timeout: float = 300.0):
        self.socket_path = socket_path
        self.timeout = timeout
        self._conn: _UnixConnection | None = None

    # -- transport -------------------------------------------------------
    def _connection(self) -> _UnixConnection:
        if self._conn is None:
            self._conn = _UnixConnection(self.socket_path, self.timeout)
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def raw(self, method: str, path: str, body: bytes | None = None,
            headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        """One request; reconnects once if the kept-alive connection was dropped."""
        hdrs = {"Host": "localhost"}
        if headers:
            hdrs.update(headers)
        for attempt in (0, 1):
            conn = self._connection()
            try:
                conn.request(method, path, body=body, headers=hdrs)
                resp = conn.getresponse()
                data = resp.read()
                if resp.getheader("Connection", "").lower() == "close":
                    self.close()
                return resp.status, dict(resp.getheaders()), data
            except (http.client.RemoteDisconnected, BrokenPipeError,
                    ConnectionResetError, http.client.CannotSendRequest):
                self.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def request(self, method: str, path: str, body: Any = None,
                headers: dict[str, str] | None = None) -> dict:
        """A JSON request; returns the envelope, raises ApiError on an error response."""
        data = None
        hdrs = dict(headers or {})
        if body is not None and not isinstance(body, (bytes, bytearray)):
            data = json.dumps(body).encode()
            hdrs.setdefault("Content-Type", "application/json")
        elif body is not None:
            data = bytes(body)
        status, _, payload = self.raw(method, path, data, hdrs)
        try:
            env = json.loads(payload) if payload else {}
        except ValueError:
            raise ApiError(status, f"non-JSON response to {method} {path}: {payload[:200]!r}")
        if status >= 400 or env.get("type") == "error":
            raise ApiError(env.get("error_code") or status,
                           env.get("error") or f"HTTP {status} on {method} {path}")
        return env

    # -- LXD semantics ---------------------------------------------------
    def wait(self, operation: str, timeout: int = 120) -> dict:
        """Block on an operation with /wait; returns its final metadata."""
        env = self.request("GET", f"{operation}/wait?timeout={timeout}")
        op = env.get("metadata") or {}
        if op.get("status") != "Success" and op.get("status_code") != 200:
            raise ApiError(op.get("status_code") or 500,
                           op.get("err") or f"operation {op.get('status')}")
        return op

    def call(self, method: str, path: str, body: Any = None,
             headers: dict[str, str] | None = None) -> Any:
        """Sync or async request; async ones are waited for. Returns the metadata."""
        env = self.request(method, path, body, headers)
        if env.get("type") == "async":
            op = env.get("operation") or env["metadata"]["id"]
            if not op.startswith("/"):
                op = f"/1.0/operations/{op}"
            return self.wait(op)
        return env.get("metadata")

    def server(self) -> dict:
        return self.request("GET", "/1.0")["metadata"]


# -- websockets ------------------------------------------------------------
class WebSocket:
    """Just enough of RFC 6455 over a unix socket for LXD exec streams."""

    def __init__(self, socket_path: str, path: str, timeout: float = 60.0):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(socket_path)
        key = base64.b64encode(os.urandom(16)).decode()
        req = (f"GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
               f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
               "Sec-WebSocket-Version: 13\r\n\r\n")
        self.sock.sendall(req.encode())
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ApiError(502, f"websocket handshake closed on {path}")
            buf += chunk
        head, self._buf = buf.split(b"\r\n\r\n", 1)
        status = head.split(b"\r\n", 1)[0]
        if b" 101" not in status:
            raise ApiError(400, f"websocket handshake refused: {status.decode(errors='replace')}")
        self.closed = False

    def fileno(self) -> int:
        return self.sock.fileno()

    def _read(self, n: int) -> bytes:
        while len(self._buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError
            self._buf += chunk
        out, self._buf = self._buf[:n], self._buf[n:]
        return out

    def has_buffered_frame(self) -> bool:
        return len(self._buf) >= 2

    def recv(self) -> tuple[int, bytes]:
        """One frame (continuations are joined): (opcode, payload)."""
        b0, b1 = self._read(2)
        opcode, masked, length = b0 & 0x0F, b1 & 0x80, b1 & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", self._read(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", self._read(8))
        mask = self._read(4) if masked else b""
        payload = self._read(length)
        if mask:
            payload = bytes(c ^ mask[i % 4] for i, c in enumerate(payload))
        if opcode == 0x9:
            self.send(0xA, payload)
            return self.recv()
        if not b0 & 0x80:
            _, rest = self.recv()
            return opcode, payload + rest
        return opcode, payload

    def send(self, opcode: int, payload: bytes = b"") -> None:
        mask = os.urandom(4)
        n = len(payload)
        if n < 126:
            head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
        elif n < 65536:
            head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
        else:
            head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
        body = bytes(c ^ mask[i % 4] for i, c in enumerate(payload))
        self.sock.sendall(head + mask + body)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            try:
                self.send(0x8, struct.pack("!H", 1000))
            except OSError:
                pass
        self.sock.close()


def _drain(streams: dict[str, WebSocket], timeout: float) -> dict[str, bytes]:
    """Read every stream to its end (empty text frame, close frame or EOF)."""
    out = {k: b"" for k in streams}
    live = dict(streams)
    deadline = time.monotonic() + timeout
    while live:
        ready = [ws for ws in live.values() if ws.has_buffered_frame()]
        if not ready:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("exec output streams did not end")
            ready, _, _ = select.select(list(live.values()), [], [], left)
        for ws in ready:
            name = next(k for k, v in live.items() if v is ws)
            try:
                opcode, payload = ws.recv()
            except (EOFError, OSError):
                del live[name]
                continue
            if opcode == 0x8 or (opcode == 0x1 and not payload):
                del live[name]
            elif opcode in (0x1, 0x2):
                out[name] += payload
    return out


def exec_websocket(client: Client, instance: str, command: list[str],
                   control: bool = True, timeout: float = 60.0) -> tuple[int, bytes, bytes]:
    """Exec as `lxc exec` does without a terminal: fds 0, 1, 2 (+ control).

    Returns (exit code, stdout, stderr) once the operation has finished.
    """
    env = client.request("POST", f"/1.0/instances/{instance}/exec", {
        "command": command, "environment": {}, "interactive": False,
        "wait-for-websocket": True, "record-output": False,
        "width": 80, "height": 25,
    })
    op = env["operation"]
    fds = env["metadata"]["metadata"]["fds"]
    base = f"{op}/websocket?secret="
    socks: dict[str, WebSocket] = {}
    try:
        if control and "control" in fds:
            socks["control"] = WebSocket(client.socket_path,
                                         base + urllib.parse.quote(fds["control"]))
        for fd in ("0", "1", "2"):
            socks[fd] = WebSocket(client.socket_path, base + urllib.parse.quote(fds[fd]))
        outs = _drain({"1": socks["1"], "2": socks["2"]}, timeout)
        socks["0"].close()
        result = client.wait(op, int(timeout))
    finally:
        for ws in socks.values():
            try:
                ws.close()
            except OSError:
                pass
    code = (result.get("metadata") or {}).get("return", -1)
    return code, outs["1"], outs["2"]


def exec_record(client: Client, instance: str, command: list[str],
                timeout: float = 60.0) -> tuple[int, bytes, bytes]:
    """Exec in record-output mode: one POST, one /wait, then the stdout/stderr logs."""
    env = client.request("POST", f"/1.0/instances/{instance}/exec", {
        "command": command, "environment": {}, "interactive": False,
        "wait-for-websocket": False, "record-output": True,
    })
    result = client.wait(env["operation"], int(timeout))
    meta = result.get("metadata") or {}
    output = meta.get("output") or {}
    streams = []
    for fd in ("1", "2"):
        path = output.get(fd) or output.get(int(fd)) if isinstance(output, dict) else None
        if path:
            status, _, data = client.raw("GET", path)
            streams.append(data if status == 200 else b"")
        else:
            streams.append(b"")
    return meta.get("return", -1), streams[0], streams[1]
