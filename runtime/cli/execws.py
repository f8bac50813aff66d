"""`exec` over the operation websockets, streaming, with a real terminal when asked.

pylxd's execute() collects output and polls; a CLI needs output as it comes, a
raw terminal for interactive programs, window resizes and the exit code, so
this speaks the exec websockets directly (aiohttp, on the remote's endpoint of
the one client, runtime.client: unix socket, or HTTPS with the pinned server
certificate and our client certificate).
"""
from __future__ import annotations

import asyncio
import fcntl
import json
import os
import shutil
import signal
import struct
import sys
import termios
import tty
import urllib.parse

import aiohttp

from runtime.client import Endpoint


def _winsize() -> tuple[int, int]:
    try:
        rows, cols, _x, _y = struct.unpack("HHHH", fcntl.ioctl(
            sys.stdout.fileno(), termios.TIOCGWINSZ, b"\0" * 8))
        return cols or 80, rows or 25
    except OSError:
        size = shutil.get_terminal_size()
        return size.columns, size.lines


def _session(ep: Endpoint) -> aiohttp.ClientSession:
    conn = aiohttp.UnixConnector(path=ep.socket_path) if ep.is_unix else \
        aiohttp.TCPConnector(ssl=ep.ssl_context())
    return aiohttp.ClientSession(connector=conn)


def _ws_url(ep: Endpoint, op: str, secret: str) -> str:
    return ep.base_url.replace("http", "ws", 1) + f"{op}/websocket?secret={secret}"


async def _run(ep: Endpoint, instance: str, project: str, command: list[str],
               env: dict, interactive: bool, forward_stdin: bool,
               cwd: str | None, user: int | None) -> int:
    cols, rows = _winsize()
    body = {"command": command, "wait-for-websocket": True, "interactive": interactive,
            "environment": env, "width": cols, "height": rows}
    if cwd:
        body["cwd"] = cwd
    if user is not None:
        body["user"] = user
    q = f"?project={urllib.parse.quote(project)}" if project != "default" else ""
    async with _session(ep) as s:
        async with s.post(f"{ep.base_url}/1.0/instances/{urllib.parse.quote(instance)}/exec{q}",
                          json=body) as resp:
            env_ = await resp.json()
        if resp.status >= 400:
            raise RuntimeError(env_.get("error") or f"HTTP {resp.status}")
        op = env_["operation"]
        fds = env_["metadata"]["metadata"]["fds"]
        names = ["0", "control"] if interactive else ["0", "1", "2", "control"]
        socks = {n: await s.ws_connect(_ws_url(ep, op, fds[n]), max_msg_size=0)
                 for n in names}
        loop = asyncio.get_running_loop()
        stdin_fd = sys.stdin.fileno()
        old_tty = None
        if interactive and os.isatty(stdin_fd):
            old_tty = termios.tcgetattr(stdin_fd)
            tty.setraw(stdin_fd)

        def on_winch() -> None:
            c, r = _winsize()
            asyncio.ensure_future(socks["control"].send_str(json.dumps(
                {"command": "window-resize", "args": {"width": str(c), "height": str(r)}})))

        def forward_signal(signum: int) -> None:
            asyncio.ensure_future(socks["control"].send_str(json.dumps(
                {"command": "signal", "signal": signum})))

        stdin_done = loop.create_future()

        def on_stdin() -> None:
            try:
                data = os.read(stdin_fd, 65536)
            except OSError:
                data = b""
            if data:
                asyncio.ensure_future(socks["0"].send_bytes(data))
                return
            loop.remove_reader(stdin_fd)
            if not interactive:
                asyncio.ensure_future(socks["0"].send_str(""))
            if not stdin_done.done():
                stdin_done.set_result(None)

        reader_task = None
        if forward_stdin:
            try:
                loop.add_reader(stdin_fd, on_stdin)
            except PermissionError:     # a regular file or /dev/null: not pollable
                forward_stdin = False

                async def read_file() -> None:
                    while data := await loop.run_in_executor(None, os.read, stdin_fd, 65536):
                        await socks["0"].send_bytes(data)
                    if not interactive:
                        await socks["0"].send_str("")
                reader_task = asyncio.ensure_future(read_file())
        elif not interactive:
            await socks["0"].send_str("")
        if interactive:
            loop.add_signal_handler(signal.SIGWINCH, on_winch)
        else:
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                loop.add_signal_handler(sig, forward_signal, sig)

        async def pump(ws, fd: int) -> None:
            async for msg in ws:
                if msg.type == aiohttp.WSMsgType.BINARY:
                    os.write(fd, msg.data)
                elif msg.type == aiohttp.WSMsgType.TEXT and msg.data == "":
                    break
                elif msg.type == aiohttp.WSMsgType.TEXT:
                    os.write(fd, msg.data.encode())
        outs = [pump(socks["0"], 1)] if interactive else [pump(socks["1"], 1),
                                                          pump(socks["2"], 2)]
        try:
            await asyncio.gather(*outs)
            async with s.get(f"{ep.base_url}{op}/wait?timeout=30") as resp:
                result = (await resp.json())["metadata"]
        finally:
            if forward_stdin:
                loop.remove_reader(stdin_fd)
            if reader_task is not None:
                reader_task.cancel()
            if old_tty is not None:
                termios.tcsetattr(stdin_fd, termios.TCSADRAIN, old_tty)
            for sig in (signal.SIGWINCH, signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                loop.remove_signal_handler(sig)
            for ws in socks.values():
                await ws.close()
        if result.get("status") != "Success":
            raise RuntimeError(result.get("err") or "exec failed")
        return int((result.get("metadata") or {}).get("return", 0))


def run(ep: Endpoint, instance: str, project: str, command: list[str], env: dict,
        interactive: bool, forward_stdin: bool, cwd: str | None = None,
        user: int | None = None) -> int:
    return asyncio.run(_run(ep, instance, project, command, env, interactive, forward_stdin,
                            cwd, user))
