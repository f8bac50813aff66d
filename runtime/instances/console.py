"""One attachment to a container's /dev/console, through liblxc's lxc-console.

liblxc's monitor owns the container's console pty (init and the getty write to
it; lxc.console.logfile records it). `lxc-console -t 0` asks the monitor over its
command socket for a proxy of that pty; the monitor hands out one at a time, so a
second attachment is refused ("Denied access to tty") while the first goes on,
as with LXD. Detaching (ending lxc-console) frees the proxy; the getty and the
console log are untouched.

Why a socket pair and not a pty as LXD's `forkconsole` uses: liblxc turns a
terminal on its stdin into a second line discipline (ONLCR), which adds a CR to
every line, and liblxc forwards no window size from it to the container's
console anyway. A socket pair keeps our side byte-transparent.

Why lxc-console's output is always read, to the end: the monitor writes console
output to the proxy pty with blocking writes from its single main loop, and it
holds the proxy's other end itself. If lxc-console stops reading, the monitor
blocks for good (console log, lxc-info, lxc-stop with it), even after
lxc-console is killed. So the session drains lxc-console until it exits, into a
bounded buffer; a client that lets more than MAX_PENDING bytes pile up is cut
off (`overflowed`), and from then on the output is read and dropped.

Why the session holds a duplicate of lxc-console's proxy pty: the monitor keeps
both ends of the proxy pty (it writes console output to one and hands the other
to lxc-console), and frees them only when its main loop sees lxc-console's
command socket close. When lxc-console exits (killed on detach, or on its own)
during a burst of output, nobody reads the proxy any more: the monitor's
blocking write fills the pty buffer (about 64 KiB) and blocks before its loop
comes round to that close, and it blocks for good. So once lxc-console is
attached, the session takes a duplicate of its end of the proxy (pidfd_getfd)
and, after lxc-console has gone, reads it (and drops what it reads) until the
monitor has freed the proxy (EIO: the other end is closed). The container never
waits for a client.

Why a refused attach is retried briefly: the monitor frees the console when it
sees the previous client's command socket close, a moment after that client
exits, so an attach right after a detach can be refused. lxc-console reads no
input before it is attached, so input sent to a refused one is replayed.
"""
from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import fcntl
import logging
import os
import socket
import stat
import struct
import subprocess
import termios

from runtime.errors import Conflict, RuntimeAPIError

LOG = logging.getLogger(__name__)

CHUNK = 64 * 1024
MAX_PENDING = 1024 * 1024     # console output held for a slow client before it is cut off
MAX_STDERR = 4096
MAX_UNCONFIRMED = 64 * 1024   # input kept for replay until the attach is known to hold
CONFIRM_AFTER = 0.5           # seconds after which a live lxc-console is attached
BUSY_RETRIES = 6              # 10 ms doubling: about 0.6 s in all
BUSY_BACKOFF = 0.01
STOP_GRACE = 2.0              # seconds lxc-console gets to leave, per step of close()
INPUT_SETTLE = 0.1            # quiet time after the last input before a detach
PROXY_WAIT = 2.0              # seconds an attaching lxc-console gets to receive the proxy
PROXY_RELEASE = 30.0          # seconds the monitor gets to free the proxy after a detach

# What liblxc 4.x/5.x print when the console is attached elsewhere.
_BUSY_MARKERS = ("Denied access to tty", "busy")


class ConsoleOverflow(RuntimeAPIError):
    """The client read console output too slowly."""


class ConsoleSession:
    """`start()`; `read()`/`write()` until `read()` returns b"" or `overflowed` is
    set; `failure()` says why lxc-console ended; `close()` detaches."""

    def __init__(self, argv: list[str], instance: str):
        self.argv = argv
        self.instance = instance
        self.overflowed = asyncio.Event()
        self.proc: asyncio.subprocess.Process | None = None
        self._sock: socket.socket | None = None
        self._stderr: asyncio.Task | None = None
        self._out = bytearray()
        self._eof = False
        self._discard = False
        self._closing = False
        self._ready = asyncio.Event()
        self._unconfirmed: bytearray | None = bytearray()
        self._spawned_at = self._last_input = 0.0
        self._attempts = 0
        self._proxy: int | None = None   # our duplicate of lxc-console's proxy pty
        self._proxy_task: asyncio.Task | None = None

    async def start(self) -> ConsoleSession:
        await self._spawn()
        return self

    async def _spawn(self) -> None:
        ours, theirs = socket.socketpair()
        try:
            self.proc = await asyncio.create_subprocess_exec(
                *self.argv, stdin=theirs, stdout=theirs, stderr=subprocess.PIPE,
                start_new_session=True)
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        ours.setblocking(False)
        loop = asyncio.get_running_loop()
        self._sock, self._eof = ours, False
        self._spawned_at = loop.time()
        self._stderr = asyncio.ensure_future(_tail(self.proc.stderr, MAX_STDERR))
        self._proxy_task = asyncio.ensure_future(self._hold_proxy(self.proc))
        loop.add_reader(ours.fileno(), self._readable)

    async def _hold_proxy(self, proc: asyncio.subprocess.Process) -> None:
        """Take a duplicate of the proxy pty once lxc-console has it (see the module's
        docstring); lxc-console asks for it first thing, before any input or output."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + PROXY_WAIT
        while proc.returncode is None and loop.time() < deadline:
            fd = _take_proxy(proc.pid)
            if fd is not None:
                self._proxy = fd
                return
            await asyncio.sleep(0.01)

    def _readable(self) -> None:
        try:
            data = self._sock.recv(CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._eof = True
            asyncio.get_running_loop().remove_reader(self._sock.fileno())
        elif not self._discard:
            self._out += data
            if len(self._out) > MAX_PENDING:
                self._discard = True
                self._out.clear()
                self.overflowed.set()
        self._ready.set()

    def overflow_error(self) -> ConsoleOverflow:
        return ConsoleOverflow(
            f"Console client of {self.instance!r} fell more than {MAX_PENDING} bytes "
            "behind the console output and was disconnected")

    async def read(self) -> bytes:
        """Console output as it comes (everything pending, coalesced); b"" at the end."""
        while True:
            while not self._out and not self._eof:
                self._ready.clear()
                await self._ready.wait()
            if self._out:
                self._unconfirmed = None  # output proves the attach
                data = bytes(self._out)
                self._out.clear()
                return data
            if await self._refused_early():
                await self._respawn()
                continue
            return b""

    async def write(self, data: bytes) -> None:
        """Input for the console; waits while lxc-console has not taken the previous."""
        if self._unconfirmed is not None:
            settled = asyncio.get_running_loop().time() - self._spawned_at > CONFIRM_AFTER
            if (settled and self.proc.returncode is None) or \
                    len(self._unconfirmed) + len(data) > MAX_UNCONFIRMED:
                self._unconfirmed = None
            else:
                self._unconfirmed += data
        sock = self._sock
        if sock is None or self._eof:
            return
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            await asyncio.get_running_loop().sock_sendall(sock, data)
        self._last_input = asyncio.get_running_loop().time()

    async def _refused_early(self) -> bool:
        if self._closing or self._unconfirmed is None or self._attempts >= BUSY_RETRIES:
            return False
        if await self.proc.wait() == 0:
            return False
        return _is_busy(await self._stderr)

    async def _respawn(self) -> None:
        self._sock.close()
        await asyncio.sleep(BUSY_BACKOFF * 2 ** self._attempts)
        self._attempts += 1
        await self._spawn()
        if self._unconfirmed:
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                await asyncio.get_running_loop().sock_sendall(self._sock,
                                                             bytes(self._unconfirmed))

    async def failure(self) -> RuntimeAPIError | None:
        """Why lxc-console ended, when it ended on its own with an error (call after
        `read()` returned b"")."""
        if self._closing or self.proc is None:
            return None
        rc = await self.proc.wait()
        if rc == 0:
            return None
        err = await self._stderr
        if _is_busy(err):
            return Conflict(f"The console of instance {self.instance!r} is in use by "
                            "another client")
        detail = err.splitlines()[-1] if err else f"exit status {rc}"
        return RuntimeAPIError(f"Could not attach to the console of instance "
                               f"{self.instance!r}: {detail}")

    async def close(self) -> None:
        """Detach, without killing the container (see `_quiesce`); SIGTERM, then
        SIGKILL if lxc-console lingers. Its output is drained (and dropped) until it
        has exited, so the monitor never blocks on it."""
        self._closing = self._discard = True
        self._out.clear()
        proc = self.proc
        if proc is not None and proc.returncode is None:
            await self._quiesce()
            if self._proxy_task is not None:
                await self._proxy_task  # a duplicate before lxc-console goes
            for stop in (proc.terminate, proc.kill):
                with contextlib.suppress(ProcessLookupError):
                    stop()
                try:
                    await asyncio.wait_for(proc.wait(), STOP_GRACE)
                    break
                except TimeoutError:
                    continue
        if self._sock is not None:
            if not self._eof:
                asyncio.get_running_loop().remove_reader(self._sock.fileno())
            self._sock.close()
            self._sock = None
        if self._stderr is not None and not self._stderr.done():
            self._stderr.cancel()
        if self._proxy_task is not None and not self._proxy_task.done():
            self._proxy_task.cancel()
        await self._release_proxy()

    async def _release_proxy(self) -> None:
        """After lxc-console has gone: read the proxy pty until the monitor has freed
        it, so a monitor in the middle of writing console output to it never blocks."""
        fd, self._proxy = self._proxy, None
        if fd is None:
            return
        loop = asyncio.get_running_loop()
        freed = loop.create_future()

        def drain() -> None:
            try:
                while os.read(fd, CHUNK):
                    pass
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno != errno.EIO:  # EIO: the monitor closed its ends
                    LOG.warning("console proxy of %s: %s", self.instance, exc)
            if not freed.done():
                freed.set_result(None)

        os.set_blocking(fd, False)  # lxc-console, which shared it, has exited
        loop.add_reader(fd, drain)
        try:
            await asyncio.wait_for(freed, PROXY_RELEASE)
        except TimeoutError:
            LOG.warning("liblxc's monitor of %s did not free the console proxy within "
                        "%s s", self.instance, PROXY_RELEASE)
        finally:
            loop.remove_reader(fd)
            os.close(fd)

    async def _quiesce(self) -> None:
        """Wait until lxc-console has taken all input and the monitor has had time
        to read it from the proxy pty.

        liblxc 5.0 (and its main branch as of 2026) frees the proxy when the
        client's command socket closes; if input for the proxy is pending in the
        same epoll round, the freed proxy's handler still runs, reads fd -1 and
        ends the monitor's main loop: the container is killed ("Child process is
        not killed" in lxc.log). Leaving only after the input has settled makes
        that round never come, and delivers every byte typed before a detach.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + STOP_GRACE
        while self._sock is not None and not self._eof and loop.time() < deadline:
            pending = _unread(self._sock)
            quiet = loop.time() - self._last_input
            if pending == 0 and quiet >= INPUT_SETTLE:
                return
            await asyncio.sleep(0.01 if pending else INPUT_SETTLE - quiet)


def _unread(sock: socket.socket) -> int:
    """Bytes we sent that the peer has not read yet (SIOCOUTQ)."""
    try:
        return struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ,
                                              b"\0\0\0\0"))[0]
    except OSError:
        return 0


_PTMX = os.makedev(5, 2)  # /dev/ptmx (and /dev/pts/ptmx): the master side of a pty
_SYS_PIDFD_GETFD = 438    # the same number on every architecture Linux 5.6+ runs on


def _take_proxy(pid: int) -> int | None:
    """A duplicate (close-on-exec) of the pty master lxc-console `pid` holds: the
    proxy the monitor handed it; None while it has none (or where the kernel
    refuses pidfd_getfd: then a detach during a burst can still block the
    monitor, as with liblxc's own client)."""
    try:
        names = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return None
    for name in names:
        try:
            st = os.stat(f"/proc/{pid}/fd/{name}")
        except OSError:
            continue
        if not (stat.S_ISCHR(st.st_mode) and st.st_rdev == _PTMX):
            continue
        try:
            pidfd = os.pidfd_open(pid)
        except OSError:
            return None
        try:
            return _pidfd_getfd(pidfd, int(name))
        except OSError as exc:
            LOG.warning("cannot hold lxc-console's console proxy (pidfd_getfd: %s): a "
                        "detach during heavy console output may block the container",
                        exc)
            return None
        finally:
            os.close(pidfd)
    return None


def _pidfd_getfd(pidfd: int, fd: int) -> int:
    libc = ctypes.CDLL(None, use_errno=True)
    got = libc.syscall(_SYS_PIDFD_GETFD, pidfd, fd, 0)
    if got < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return got


def _is_busy(stderr: str) -> bool:
    return any(marker in stderr for marker in _BUSY_MARKERS)


async def _tail(stream: asyncio.StreamReader, keep: int) -> str:
    """Read a stream to its end, keeping its last `keep` bytes (never blocks the writer)."""
    data = b""
    while chunk := await stream.read(CHUNK):
        data = (data + chunk)[-keep:]
    return data.decode(errors="replace").strip()
