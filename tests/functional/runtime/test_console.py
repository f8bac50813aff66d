"""The interactive console (POST /1.0/instances/<n>/console) against real containers:
a raw websocket client, pylxd's own websocket client, and the stock `lxc console`.

What the user reaches is the container's /dev/console, where the busybox image
runs a getty: each test logs in as root and runs a command there.
"""
import asyncio
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.parse

import aiohttp
import pytest

from tests.functional.runtime.harness import PtyProcess

PROMPT_TIMEOUT = 15.0


class RawConsole:
    """A raw websocket client of the console operation over the unix socket."""

    def __init__(self, socket_path: str, name: str):
        self.socket_path, self.name = socket_path, name
        self.buf = b""

    async def __aenter__(self) -> "RawConsole":
        self.session = aiohttp.ClientSession(
            connector=aiohttp.UnixConnector(path=self.socket_path))
        return self

    async def __aexit__(self, *exc) -> None:
        await self.session.close()

    async def post(self, body: dict) -> tuple[int, dict]:
        async with self.session.post(f"http://lxd/1.0/instances/{self.name}/console",
                                     json=body) as resp:
            return resp.status, await resp.json()

    async def attach(self, control: bool = True, **size) -> "RawConsole":
        status, body = await self.post({"type": "console", **size})
        assert status == 202, body["error"]
        meta = body["metadata"]
        assert meta["class"] == "websocket" and meta["description"] == "Showing console"
        assert set(meta["metadata"]["fds"]) == {"0", "control"}
        self.op = meta["id"]
        fds = meta["metadata"]["fds"]
        url = f"http://lxd/1.0/operations/{self.op}/websocket?secret="
        self.control = None
        if control:  # the lxc CLI's order: control first, then data
            self.control = await self.session.ws_connect(url + fds["control"])
        self.data = await self.session.ws_connect(url + fds["0"])
        return self

    async def send(self, text: bytes) -> None:
        await self.data.send_bytes(text)

    async def expect(self, token: bytes, timeout: float = PROMPT_TIMEOUT) -> bytes:
        """Read until token; return what came up to and including it."""
        deadline = time.monotonic() + timeout
        while token not in self.buf:
            left = deadline - time.monotonic()
            assert left > 0, f"no {token!r} from the console; got {self.buf[-400:]!r}"
            try:
                msg = await self.data.receive(timeout=left)
            except TimeoutError:
                continue
            if msg.type == aiohttp.WSMsgType.BINARY:
                self.buf += msg.data
            elif msg.type == aiohttp.WSMsgType.TEXT and msg.data == "":
                raise AssertionError(f"console ended; got {self.buf[-400:]!r} {await self.wait()}")
            elif msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED,
                              aiohttp.WSMsgType.CLOSING):
                raise AssertionError(f"console closed; got {self.buf[-400:]!r}")
        head, _, self.buf = self.buf.partition(token)
        return head + token

    async def attach_at_login(self) -> "RawConsole":
        """Attach and wake the getty: the console is ours once its prompt comes."""
        await self.attach()
        await self.send(b"\n")
        await self.expect(b"login: ")
        return self

    async def detach(self) -> dict:
        """As `lxc console` on Ctrl-a q: close the control websocket, then wait."""
        if self.control is not None:
            await self.control.close()
        else:
            await self.data.close()
        return await self.wait()

    async def wait(self, timeout: float = 15) -> dict:
        async with self.session.get(f"http://lxd/1.0/operations/{self.op}/wait",
                                    params={"timeout": str(timeout)}) as resp:
            return (await resp.json())["metadata"]


async def login_and_run(con: RawConsole, command: str) -> str:
    """Wake the getty, log in as root (no password in the busybox image), run a command."""
    await con.send(b"\n")
    await con.expect(b"login: ")
    await con.send(b"root\n")
    await con.expect(b"# ")
    await con.send(f"{command}; echo END-$((6*7))\n".encode())
    await con.expect(b"\n")  # the echo of the command line
    out = await con.expect(b"END-42")
    await con.send(b"exit\n")
    await con.expect(b"login: ")  # logged out: the getty is back for the next client
    return out[:-len(b"END-42")].decode(errors="replace").replace("\r", "").strip()


def _getty_running(inst, timeout: float = 10) -> bool:
    """The getty is (back) on /dev/console: a logout takes init a moment to respawn it."""
    deadline = time.monotonic() + timeout
    while "getty -L console" not in inst.execute(["ps"]).stdout:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def _console_log(client, name: str) -> bytes:
    return client.api.instances[name].console.get(is_api=False).content


def test_console_login_hostname_and_reattach(daemon, client, make_instance):
    """Log in on /dev/console and run hostname; detach; the getty survives and a
    second and third attachment in a row get a fresh login prompt; the console
    log keeps filling while a client is attached."""
    inst = make_instance()

    async def scenario():
        async with RawConsole(daemon.socket, inst.name) as con:
            await con.attach(width=100, height=30)
            assert await login_and_run(con, "hostname") == inst.name
            op = await con.detach()
            assert op["status"] == "Success", op
            for _ in range(2):
                await con.attach()
                await con.send(b"\n")
                await con.expect(b"login: ")
                # window-resize on control is accepted (as LXD) and changes nothing
                await con.control.send_str(json.dumps(
                    {"command": "window-resize", "args": {"width": "120", "height": "40"}}))
                op = await con.detach()
                assert op["status"] == "Success", op
    asyncio.run(scenario())
    assert _getty_running(inst)
    log = _console_log(client, inst.name)
    assert b"login: root" in log and inst.name.encode() in log and b"END-42" in log


def test_console_second_attachment_is_refused_first_goes_on(daemon, make_instance):
    """liblxc hands the console to one client at a time: a second concurrent
    attachment fails with a clear error (as with LXD), the first is undisturbed."""
    inst = make_instance()

    async def scenario():
        async with RawConsole(daemon.socket, inst.name) as first, \
                RawConsole(daemon.socket, inst.name) as second:
            await first.attach()
            await first.send(b"\n")
            await first.expect(b"login: ")
            await second.attach()
            op = await second.wait()
            assert op["status"] == "Failure"
            assert "in use by another client" in op["err"], op
            msg = await second.data.receive(timeout=5)
            assert msg.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.CLOSE,
                                aiohttp.WSMsgType.CLOSED), msg
            assert await login_and_run(first, "echo still-here") == "still-here"
            assert (await first.detach())["status"] == "Success"
            # and once the first has left, the console is free again
            await second.attach(control=False)
            await second.send(b"\n")
            await second.expect(b"login: ")
            assert (await second.detach())["status"] == "Success"
    asyncio.run(scenario())


def test_console_ends_when_the_container_stops(daemon, client, make_instance):
    inst = make_instance()

    async def scenario():
        async with RawConsole(daemon.socket, inst.name) as con:
            await con.attach_at_login()
            await asyncio.to_thread(inst.stop, force=True, wait=True)
            op = await con.wait()
            assert op["status"] == "Success", op
    asyncio.run(scenario())


def test_console_slow_client_is_cut_off_container_unaffected(daemon, client, make_instance):
    """A client that stops reading while the container writes a lot to its console
    is disconnected once the bounded buffer is full; liblxc's monitor never stalls:
    the writer inside finishes, the log fills and the container stops normally."""
    inst = make_instance()

    async def scenario():
        async with RawConsole(daemon.socket, inst.name) as con:
            await con.attach()
            t0 = time.monotonic()
            res = await asyncio.to_thread(
                inst.execute, ["sh", "-c", "head -c 4000000 /dev/zero | tr '\\0' x "
                               "> /dev/console; echo written"])
            assert res.stdout.strip() == "written", res
            assert time.monotonic() - t0 < 30
            op = await con.wait()
            assert op["status"] == "Failure" and "fell more than" in op["err"], op
    asyncio.run(scenario())
    assert len(_console_log(client, inst.name)) > 500_000
    inst.stop(wait=True, timeout=30, force=True)


def _processes(daemon, prefix: str, name: str) -> list[int]:
    """pids of this daemon's processes whose command line starts with prefix and
    names the instance (lxc-console sessions, liblxc monitors)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().decode(errors="replace").split("\0")
        except OSError:
            continue
        words = " ".join(argv).split()  # a monitor rewrites its argv into one string
        if argv[0].startswith(prefix) and name in words and \
                any(word.startswith(daemon.lxd_dir + "/") for word in words):
            found.append(int(pid))
    return found


def _monitor_state(daemon, name: str) -> str:
    out = []
    for pid in _processes(daemon, "[lxc monitor]", name):
        with open(f"/proc/{pid}/wchan") as f, open(f"/proc/{pid}/stack") as g:
            out.append(f"monitor {pid} waits in {f.read()!r}: "
                       + " < ".join(line.split()[1] for line in g.read().splitlines()[:6]))
    return "; ".join(out)


def test_console_detach_while_lxc_console_lags_leaves_container_unaffected(
        daemon, client, make_instance):
    """The race behind the slow-client bug, made certain: lxc-console falls behind
    (stopped here, as a loaded host deschedules it) while the container writes
    megabytes to its console, so liblxc's monitor is blocked writing to the proxy
    pty, and the client detaches then. lxc-console is killed while the monitor
    is blocked; without the runtime's reader on the proxy, the monitor would never
    wake (the writer waits forever, lxc-stop hangs)."""
    inst = make_instance()

    async def scenario():
        async with RawConsole(daemon.socket, inst.name) as con:
            await con.attach_at_login()
            [lxc_console] = _processes(daemon, "lxc-console", inst.name)
            os.kill(lxc_console, signal.SIGSTOP)
            writer = asyncio.ensure_future(asyncio.to_thread(
                inst.execute, ["sh", "-c", "head -c 2000000 /dev/zero | tr '\\0' x "
                               "> /dev/console; echo written"]))
            await asyncio.sleep(1.5)
            blocked = _monitor_state(daemon, inst.name)
            assert not writer.done(), "the writer did not wait for the stopped client"
            op = await con.detach()
            assert op["status"] == "Success", op
            assert not _processes(daemon, "lxc-console", inst.name)
            done, _ = await asyncio.wait([writer], timeout=30)
            if not done:
                state = _monitor_state(daemon, inst.name)
                for pid in _processes(daemon, "[lxc monitor]", inst.name):
                    os.kill(pid, signal.SIGKILL)  # frees the writer and the fixture
                await writer
                raise AssertionError(f"the monitor stayed blocked after the detach "
                                     f"({state}; before the detach: {blocked})")
            assert writer.result().stdout.strip() == "written"
            await con.attach_at_login()  # the console is free again, the getty answers
            assert (await con.detach())["status"] == "Success"
    asyncio.run(scenario())
    assert len(_console_log(client, inst.name)) > 500_000  # lxc.console.size: 1 MB
    inst.stop(wait=True, timeout=30, force=True)


@pytest.mark.parametrize("body, status, message", [
    ({"type": "vga"}, 400, "only supported by virtual machines"),
    ({"type": "serial"}, 400, "Unknown console type"),
    ({"width": -1}, 400, "'width' must not be negative"),
    ({"height": "25"}, 400, "'height' must be an integer"),
    ({"type": 3}, 400, "'type' must be a string"),
])
def test_console_bad_requests(daemon, make_instance, body, status, message):
    inst = make_instance(start=False)

    async def scenario():
        async with RawConsole(daemon.socket, inst.name) as con:
            got, resp = await con.post(body)
            assert got == status and message in resp["error"], resp
            got, resp = await con.post({})
            assert got == 400 and "is not running" in resp["error"], resp
            con.name = "no-such-instance"
            got, resp = await con.post({})
            assert got == 404, resp
    asyncio.run(scenario())


def test_console_of_frozen_instance_is_refused(daemon, make_instance):
    inst = make_instance()
    inst.freeze(wait=True)
    try:
        async def scenario():
            async with RawConsole(daemon.socket, inst.name) as con:
                got, resp = await con.post({})
                assert got == 400 and "frozen" in resp["error"], resp
        asyncio.run(scenario())
    finally:
        inst.unfreeze(wait=True)


def test_console_with_pylxd(client, make_instance):
    """pylxd has no console call of its own: its raw API node posts the request
    and its ws4py websocket client (the one its exec uses) carries the data."""
    from ws4py.client import WebSocketBaseClient

    inst = make_instance()
    resp = client.api.instances[inst.name].console.post(
        json={"type": "console", "width": 80, "height": 25}).json()
    fds = resp["metadata"]["metadata"]["fds"]
    op_path = urllib.parse.urlparse(resp["operation"]).path

    class Data(WebSocketBaseClient):
        got = b""  # not `buf`: ws4py reads frames into self.buf

        def received_message(self, message):
            if message.is_binary:
                self.got += message.data

    ws = Data(client.websocket_url, exclude_headers=["origin"])
    ws.resource = f"{op_path}/websocket?secret={fds['0']}"
    ws.connect()
    ws.sock.settimeout(PROMPT_TIMEOUT)

    def expect(token: bytes) -> None:
        deadline = time.monotonic() + PROMPT_TIMEOUT
        while token not in ws.got:
            assert time.monotonic() < deadline, ws.got[-400:]
            assert ws.once(), f"websocket closed; got {ws.got[-400:]!r}"

    try:
        ws.send(b"\n", binary=True)
        expect(b"login: ")
        ws.send(b"root\n", binary=True)
        expect(b"# ")
        ws.send(b"hostname\n", binary=True)
        expect(b"\n" + inst.name.encode() + b"\r")
        ws.send(b"exit\n", binary=True)
    finally:
        ws.close()
    op = client.operations.wait_for_operation(resp["operation"])
    assert op.status == "Success", op.err
    assert _getty_running(inst)


def test_lxc_console_cli(daemon, make_instance, tmp_path):
    """The stock `lxc console` (Debian's lxd-client 5.0) on a pty: log in, run
    hostname, leave with Ctrl-a q."""
    if shutil.which("lxc") is None:
        pytest.skip("the lxc CLI (lxd-client) is not installed")
    inst = make_instance()
    env = {"LXD_DIR": daemon.lxd_dir, "HOME": str(tmp_path)}
    term = PtyProcess(["lxc", "console", inst.name], env)
    try:
        term.expect(b"To detach from the console, press: <ctrl>+a q")
        term.send(b"\n")
        term.expect(b"login: ")
        term.send(b"root\n")
        term.expect(b"# ")
        term.send(b"hostname\n")
        term.expect(b"\n" + inst.name.encode() + b"\r")
        term.send(b"exit\n")
        term.expect(b"login: ")
        # The CLI looks at the first byte of each read only: send the keys apart.
        term.send(b"\x01")
        time.sleep(0.2)
        term.send(b"q")
        assert term.wait() == 0, term.buf[-400:]
    finally:
        term.close()
    assert _getty_running(inst)
    assert b"login: root" in subprocess.run(
        ["lxc", "console", inst.name, "--show-log"], capture_output=True, timeout=30,
        env={**env, "PATH": "/usr/bin:/bin"}).stdout
