"""POST /1.0/instances/<name>/exec: commands in a running instance.

Three modes, as LXD: websockets (fds 0,1,2 + control; interactive: 0 + control
over a pty), record-output (stdout/stderr to log files), or no output. The
process is lxc-attach; its exit code is the operation's `return`.
"""
import asyncio
import fcntl
import logging
import os
import signal
import struct
import subprocess
import termios
import tty

from aiohttp import WSMsgType, web

from runtime.api import daemon, project, read_json, response
from runtime.auth import PROJECT
from runtime.errors import BadRequest

LOG = logging.getLogger(__name__)
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
CONNECT_TIMEOUT = 60.0
DRAIN_AFTER_EXIT = 2.0
CHUNK = 128 * 1024


def _validate(body: dict) -> dict:
    cmd = body.get("command")
    if not isinstance(cmd, list) or not cmd or not all(isinstance(c, str) and "\x00" not in c
                                                       for c in cmd):
        raise BadRequest("'command' must be a non-empty list of strings (no NUL)")
    env = body.get("environment") or {}
    if not isinstance(env, dict) or not all(
            isinstance(k, str) and isinstance(v, str) and k and "=" not in k and
            "\x00" not in k + v for k, v in env.items()):
        raise BadRequest("'environment' must map variable names (no '=') to strings")
    size = {}
    for key, default in (("width", 80), ("height", 25)):
        value = body.get(key) or default
        if not isinstance(value, int) or isinstance(value, bool) or not 0 < value < 10000:
            raise BadRequest(f"'{key}' must be a positive integer")
        size[key] = value
    out = {"command": cmd, "environment": env,
           "interactive": bool(body.get("interactive", False)),
           "websocket": bool(body.get("wait-for-websocket", False)),
           "record": bool(body.get("record-output", False)), **size}
    for key in ("user", "group"):
        value = body.get(key) or 0
        if not isinstance(value, int) or value < 0:
            raise BadRequest(f"'{key}' must be a non-negative integer")
        out[key] = value
    cwd = body.get("cwd") or ""
    if not isinstance(cwd, str) or (cwd and not cwd.startswith("/")):
        raise BadRequest("'cwd' must be an absolute path")
    out["cwd"] = cwd
    return out


def _environment(inst, req: dict) -> dict:
    env = {"PATH": DEFAULT_PATH, "LANG": "C.UTF-8"}
    if req["user"] == 0:
        env.update(HOME="/root", USER="root")
    for key, value in inst.expanded_config.items():
        if key.startswith("environment."):
            env[key[12:]] = value
    env.update(req["environment"])
    return env


def _argv(d, inst, req: dict) -> tuple[list[str], str]:
    """lxc-attach command line and the host cwd it is started from.

    liblxc enters the container in the path the caller is in (falling back to /),
    so the default home directory needs no shell; an explicit cwd is enforced by a
    one-line shell that fails when the directory is missing.
    """
    paths = d.instances.paths(inst)
    env = _environment(inst, req)
    argv = d.instances.lxc.attach_argv(paths.name, req["command"], env, req["cwd"] or None,
                                       req["user"], req["group"])
    host_cwd = "/root" if req["user"] == 0 and not req["cwd"] and os.path.isdir("/root") \
        else "/"
    return argv, host_cwd


async def exec_instance(request: web.Request) -> web.Response:
    d = daemon(request)
    inst = d.instances.load(project(request), request.match_info["name"])
    req = _validate(await read_json(request))
    d.instances.require_running(inst)
    if d.instances.status(inst) == "Frozen":
        raise BadRequest(f"Instance {inst.name!r} is frozen")
    argv, host_cwd = _argv(d, inst, req)
    resources = {"instances": [inst.url], "containers": [inst.url]}
    if req["websocket"]:
        fds = ["0", "control"] if req["interactive"] else ["0", "1", "2", "control"]
        runner = _interactive if req["interactive"] else _piped

        async def run(op):
            return await runner(op, argv, host_cwd, req)
        op = d.ops.create("websocket", "Executing command", run, project=inst.project,
                          websockets=fds, resources=resources)
        return response.async_(op)

    async def run_plain(op):
        log_dir = d.instances.paths(inst).log_dir
        outputs = {}
        files = []
        if req["record"]:
            for fd, ext in (("1", "stdout"), ("2", "stderr")):
                fname = f"exec_{op.id}.{ext}"
                files.append(open(os.path.join(log_dir, fname), "wb"))
                outputs[fd] = f"/1.0/instances/{inst.name}/logs/{fname}"
        try:
            p = await asyncio.create_subprocess_exec(
                *argv, cwd=host_cwd, stdin=subprocess.DEVNULL,
                stdout=files[0] if files else subprocess.DEVNULL,
                stderr=files[1] if files else subprocess.DEVNULL)
        finally:
            for f in files:
                f.close()
        rc = await p.wait()
        result = {"return": rc}
        if outputs:
            result["output"] = outputs
        return result
    op = d.ops.create("task", "Executing command", run_plain, project=inst.project,
                      resources=resources)
    return response.async_(op)


async def _control(op, proc, master: int | None) -> None:
    """Signals and window resizes from the control websocket, if the client opens it."""
    try:
        async for data in op.control_messages():
            if data.get("command") == "signal":
                try:
                    proc.send_signal(int(data.get("signal", signal.SIGTERM)))
                except (ProcessLookupError, ValueError):
                    pass
            elif data.get("command") == "window-resize" and master is not None:
                args = data.get("args") or {}
                try:
                    _winsize(master, int(args.get("width", 80)),
                             int(args.get("height", 25)))
                except (TypeError, ValueError, OverflowError, struct.error, OSError):
                    continue
    except (asyncio.CancelledError, KeyError):
        return


def _winsize(fd: int, width: int, height: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))


async def _pump_out(stream: asyncio.StreamReader, ws) -> None:
    while True:
        data = await stream.read(CHUNK)
        if not data:
            break
        if not ws.closed:
            await ws.send_bytes(data)
    if not ws.closed:
        await ws.send_str("")  # end of stream; the handshake handler closes later


async def _pump_in(ws, writer) -> None:
    try:
        async for msg in ws:
            if msg.type == WSMsgType.BINARY:
                writer.write(msg.data)
                await writer.drain()
            elif msg.type == WSMsgType.TEXT:
                if msg.data == "":
                    break
                writer.write(msg.data.encode())
                await writer.drain()
            else:
                break
    except (ConnectionResetError, BrokenPipeError):
        pass
    finally:
        try:
            writer.close()
        except (ConnectionResetError, BrokenPipeError):
            pass


async def _piped(op, argv: list[str], host_cwd: str, req: dict) -> dict:
    socks = await op.connected(["0", "1", "2"], CONNECT_TIMEOUT, "exec")
    proc = await asyncio.create_subprocess_exec(
        *argv, cwd=host_cwd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, limit=CHUNK)
    outs = [asyncio.ensure_future(_pump_out(proc.stdout, socks["1"])),
            asyncio.ensure_future(_pump_out(proc.stderr, socks["2"]))]
    stdin = asyncio.ensure_future(_pump_in(socks["0"], proc.stdin))
    control = asyncio.ensure_future(_control(op, proc, None))
    try:
        rc = await proc.wait()
        _done, pending = await asyncio.wait(outs, timeout=DRAIN_AFTER_EXIT)
        for t in pending:
            t.cancel()
    finally:
        stdin.cancel()
        control.cancel()
        if proc.returncode is None:
            proc.kill()
    return {"return": rc}


async def _ready(loop, fd: int, readable: bool) -> None:
    """Until fd is readable (or writable)."""
    fut = loop.create_future()
    add, remove = (loop.add_reader, loop.remove_reader) if readable else \
        (loop.add_writer, loop.remove_writer)
    add(fd, lambda: fut.done() or fut.set_result(None))
    try:
        await fut
    finally:
        remove(fd)


async def _interactive(op, argv: list[str], host_cwd: str, req: dict) -> dict:
    socks = await op.connected(["0"], CONNECT_TIMEOUT, "exec")
    ws = socks["0"]
    master, slave = os.openpty()
    # Our side is a transparent pipe: lxc-attach makes the real terminal inside
    # the container, so no newline or echo processing may happen twice.
    tty.setraw(slave)
    _winsize(master, req["width"], req["height"])
    try:
        proc = await asyncio.create_subprocess_exec(
            "setsid", "-c", *argv, cwd=host_cwd, stdin=slave, stdout=slave, stderr=slave)
    finally:
        os.close(slave)
    os.set_blocking(master, False)
    loop = asyncio.get_running_loop()

    async def pump_out() -> None:
        """Terminal output to the client, one chunk in flight: a slow client slows the
        reads instead of queueing output in the daemon."""
        while True:
            await _ready(loop, master, readable=True)
            try:
                data = os.read(master, CHUNK)
            except BlockingIOError:
                continue
            except OSError:
                data = b""  # EIO: the other side of the pty is closed
            if not data:
                return
            if not ws.closed:
                await ws.send_bytes(data)

    async def feed() -> None:
        """Client input to the terminal; the next frame is read only once this one is
        written, so a program that stops reading stops the client (no blocking write)."""
        async for msg in ws:
            if msg.type == WSMsgType.BINARY:
                data = msg.data
            elif msg.type == WSMsgType.TEXT and msg.data:
                data = msg.data.encode()
            else:
                continue
            view = memoryview(data)
            while view:
                try:
                    view = view[os.write(master, view):]
                except BlockingIOError:
                    await _ready(loop, master, readable=False)
    out_done = asyncio.ensure_future(pump_out())
    feeder = asyncio.ensure_future(feed())
    control = asyncio.ensure_future(_control(op, proc, master))
    try:
        rc = await proc.wait()
        await asyncio.wait([out_done], timeout=DRAIN_AFTER_EXIT)
    finally:
        out_done.cancel()
        feeder.cancel()
        await asyncio.gather(out_done, feeder, return_exceptions=True)
        control.cancel()
        os.close(master)
        if proc.returncode is None:
            proc.kill()
    return {"return": rc}


ROUTES = [("POST", "/1.0/instances/{name}/exec", exec_instance, PROJECT)]
