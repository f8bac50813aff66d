"""rsync over a migration websocket, as LXD runs it on the `fs` channel.

LXD (`lxd/rsync/rsync.go`, 5.0) moves a directory volume with one rsync run:
the source is an rsync client whose "remote shell" reaches the websocket, the
target an `rsync --server` whose stdin and stdout are the websocket. Both
directions of one run carry binary frames and end with an empty text frame, so
one websocket carries several runs (one per snapshot, then the instance). The
arguments below are LXD's: the server's option string is what an rsync client
with those arguments starts on a remote host, so either side can be LXD's.

Our client's remote shell is `bash -c 'cat >&N & exec cat <&N'` on an inherited
socket N whose other end this module relays to the websocket: the exec'd cat
(socket -> rsync) ends when the websocket's run ends, which is when rsync
expects its remote shell to exit; the other cat ends with rsync.
"""
from __future__ import annotations

import asyncio
import logging
import socket
import time

import aiohttp

from runtime.errors import RuntimeAPIError

LOG = logging.getLogger(__name__)
CHUNK = 1024 * 1024
_SERVER_FLAGS = "-vlogDtpre.iLsfx"
_COMMON = ["--numeric-ids", "--devices", "--partial", "--sparse"]


class RsyncError(RuntimeAPIError):
    status = 500


def feature_args(features) -> list[str]:
    """The rsync options a negotiated feature list turns on (both ends must agree)."""
    args = []
    if "xattrs" in features:
        args += ["--xattrs", "--filter=-x security.selinux"]
    if "delete" in features:
        args.append("--delete")
    if "compress" in features:
        args += ["--compress", "--compress-level=2"]
    return args


def server_argv(path: str, features) -> list[str]:
    return ["rsync", "--server", _SERVER_FLAGS, *_COMMON, *feature_args(features), ".",
            path.rstrip("/") + "/"]


def client_argv(path: str, features, fd: int, excludes=()) -> list[str]:
    rsh = f"bash -c 'exec {{i}}<&0; cat <&$i >&{fd} & exec cat <&{fd}'"
    return ["rsync", "-ar", "--devices", "--numeric-ids", "--partial", "--sparse",
            *feature_args(features), *(f"--exclude={e}" for e in excludes),
            path.rstrip("/") + "/", "localhost:/tmp/foo", "-e", rsh]


async def _up(read, ws, progress) -> None:
    """The child's output as binary frames, then the empty text frame ending the run."""
    while data := await read(CHUNK):
        await ws.send_bytes(data)
        if progress is not None:
            progress(len(data))
    await ws.send_str("")


async def _down(ws, write, drain, close) -> None:
    """Binary frames to the child until the peer's empty text frame ends the run."""
    try:
        while True:
            msg = await ws.receive()
            if msg.type == aiohttp.WSMsgType.BINARY:
                write(msg.data)
                await drain()
            elif msg.type == aiohttp.WSMsgType.TEXT:
                return
            else:
                raise RsyncError(f"Migration peer went away during rsync ({msg.type.name})")
    finally:
        close()


async def _run(p, up, down, what: str, ok_codes=(0,)) -> None:
    """Relay both directions until rsync has exited and both have ended.

    rsync failing ends the run at once with its message; a broken pipe to an
    rsync that is exiting is not an error of its own.
    """
    exited = asyncio.ensure_future(p.wait())
    errors = asyncio.ensure_future(p.stderr.read())
    pending = {asyncio.ensure_future(up), asyncio.ensure_future(down), exited}
    relays = pending - {exited}
    try:
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            if exited in done and p.returncode not in ok_codes:
                err = await errors
                raise RsyncError(f"rsync {what} failed (exit {p.returncode}): "
                                 f"{err.decode(errors='replace').strip()[-500:]}")
            for t in done & relays:
                exc = t.exception()
                if exc is None:
                    continue
                if isinstance(exc, (BrokenPipeError, ConnectionResetError)):
                    await exited    # rsync went away: its exit code tells why
                    if p.returncode not in ok_codes:
                        err = await errors
                        raise RsyncError(f"rsync {what} failed (exit {p.returncode}): "
                                         f"{err.decode(errors='replace').strip()[-500:]}")
                raise exc
    finally:
        for t in (*relays, errors):
            if not t.done():
                t.cancel()
        if p.returncode is None:
            p.kill()
        await asyncio.gather(*relays, exited, errors, return_exceptions=True)


async def receive(ws, path: str, features, progress=None) -> None:
    """One run into path (the volume directory: rootfs/, metadata.yaml...)."""
    t0 = time.monotonic()
    p = await asyncio.create_subprocess_exec(
        *server_argv(path, features), stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)

    def close() -> None:
        if not p.stdin.is_closing():
            p.stdin.close()
    await _run(p, _up(p.stdout.read, ws, None),
               _down(ws, p.stdin.write, p.stdin.drain, close), "receive")
    LOG.debug("rsync run into %s: %.0f ms", path, (time.monotonic() - t0) * 1000)
    if progress is not None:
        progress(0)


async def send(ws, path: str, features, excludes=(), progress=None,
               allow_vanished: bool = False) -> None:
    """One run of path's contents (trailing slash: the directory's entries)."""
    t0 = time.monotonic()
    ours, theirs = socket.socketpair()
    try:
        p = await asyncio.create_subprocess_exec(
            *client_argv(path, features, theirs.fileno(), excludes),
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE, pass_fds=(theirs.fileno(),))
    except BaseException:
        ours.close()
        raise
    finally:
        theirs.close()
    reader, writer = await asyncio.open_unix_connection(sock=ours)

    def close() -> None:
        if not writer.is_closing():
            try:
                writer.write_eof()
            except OSError:
                pass
    try:
        # rsync exits 24 when files vanished while it read them (a running instance
        # copied with allow_inconsistent, as LXD allows).
        await _run(p, _up(reader.read, ws, progress),
                   _down(ws, writer.write, writer.drain, close), "send",
                   ok_codes=(0, 24) if allow_vanished else (0,))
    finally:
        writer.close()
    LOG.debug("rsync run of %s: %.0f ms", path, (time.monotonic() - t0) * 1000)
