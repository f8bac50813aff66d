"""Plain HTTP/1.1 over the daemon's unix socket, with timeouts and streamed bodies.

pylxd can't send a body it does not hold in memory, nor time out a frozen daemon
cleanly from a probe thread; these tests need both.
"""
from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterable


def request(sock_path: str, method: str, path: str, body: bytes | Iterable[bytes] = b"",
            headers: dict | None = None, timeout: float = 5.0,
            content_length: int | None = None) -> tuple[int, dict | bytes]:
    """(status, parsed JSON or raw bytes). An iterable body is sent chunked unless
    content_length is given (then it is sent as is, that length announced)."""
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(timeout)
    try:
        s.connect(sock_path)
        head = [f"{method} {path} HTTP/1.1", "Host: localhost", "Connection: close"]
        for k, v in (headers or {}).items():
            head.append(f"{k}: {v}")
        chunked = not isinstance(body, (bytes, bytearray)) and content_length is None
        if isinstance(body, (bytes, bytearray)):
            head.append(f"Content-Length: {len(body)}")
        elif content_length is not None:
            head.append(f"Content-Length: {content_length}")
        else:
            head.append("Transfer-Encoding: chunked")
        s.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        try:
            if isinstance(body, (bytes, bytearray)):
                s.sendall(body)
            else:
                for chunk in body:
                    s.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
                              if chunked else chunk)
                if chunked:
                    s.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the daemon answered early and closed: read what it said
        data = b""
        while True:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            data += chunk
    finally:
        s.close()
    head, _, payload = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    if b"transfer-encoding: chunked" in head.lower():
        payload = _dechunk(payload)
    try:
        return status, json.loads(payload)
    except ValueError:
        return status, payload


def _dechunk(data: bytes) -> bytes:
    out = b""
    while data:
        size, _, rest = data.partition(b"\r\n")
        n = int(size.split(b";")[0] or b"0", 16)
        if n == 0:
            break
        out += rest[:n]
        data = rest[n + 2:]
    return out


def latency(sock_path: str, timeout: float = 5.0) -> float:
    """Seconds GET /1.0 takes (timeout if the daemon does not answer)."""
    t0 = time.monotonic()
    try:
        status, _ = request(sock_path, "GET", "/1.0", timeout=timeout)
    except OSError:
        return timeout
    assert status == 200
    return time.monotonic() - t0


def rss_kb(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of a process, in kB."""
    values = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                key, value = line.split(":")
                values[key] = int(value.split()[0])
    return values["VmRSS"], values["VmHWM"]
