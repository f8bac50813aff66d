"""Syscall interception (`security.syscalls.intercept.mknod`) through liblxc's seccomp proxy.

An unprivileged container cannot mknod: the kernel refuses device nodes to
user namespaces. Docker-in-a-container needs a few (overlayfs whiteouts are
char 0:0; /dev/null-like nodes for images). With the key set, the container's
seccomp filter sends mknod/mknodat of char and block devices to the container's
liblxc monitor (`notify` action), which forwards each one to this daemon on a
SOCK_SEQPACKET socket (`lxc.seccomp.notify.proxy`). We check the request (the
caller must hold CAP_MKNOD in its namespace, and only a short list of harmless
char devices is allowed, as LXD does), make the node in the caller's mount
namespace relative to its root and cwd (a helper process, `forkmknod`), owned
by the caller's ids, and answer with the result.

Wire format, as liblxc 4/5 sends it: a 32-byte header (reserved u64,
monitor_pid, init_pid, seccomp_notif_sizes {u16 x3}, pad, cookie_len u64),
then `struct seccomp_notif`, `struct seccomp_notif_resp` and the cookie, with
two descriptors (the caller's /proc/<pid> directory and its /proc/<pid>/mem).
The reply is the header, request and response again, without the cookie.
"""
from __future__ import annotations

import array
import asyncio
import errno
import logging
import os
import socket
import struct
import sys

from runtime import proc

LOG = logging.getLogger(__name__)
HEADER = struct.Struct("=QiiHHH2xQ")  # 32 bytes
NOTIF = struct.Struct("=QII iI Q 6Q")  # id, pid, flags, seccomp_data{nr, arch, ip, args[6]}
RESP = struct.Struct("=QqiI")  # id, val, error, flags
NR_MKNOD = {"x86_64": 133, "aarch64": -1}.get(os.uname().machine, -1)
NR_MKNODAT = {"x86_64": 259, "aarch64": 33}.get(os.uname().machine, -1)
AT_FDCWD = -100
CAP_MKNOD = 27
S_IFMT, S_IFCHR = 0o170000, 0o020000
# The nodes LXD lets containers make: overlayfs whiteout and the harmless
# character devices every container already has.
ALLOWED_CHAR = {(0, 0), (1, 3), (1, 5), (1, 7), (1, 8), (1, 9), (5, 0), (5, 1), (5, 2)}

POLICY = """mknod notify [1,8192,SCMP_CMP_MASKED_EQ,61440]
mknod notify [1,24576,SCMP_CMP_MASKED_EQ,61440]
mknodat notify [2,8192,SCMP_CMP_MASKED_EQ,61440]
mknodat notify [2,24576,SCMP_CMP_MASKED_EQ,61440]
"""


def socket_path(lxd_dir: str) -> str:
    return os.path.join(lxd_dir, "seccomp.socket")


def wanted(config: dict) -> bool:
    from runtime.instances.config import truthy
    return truthy(config.get("security.syscalls.intercept.mknod")) and \
        not truthy(config.get("security.privileged"))


def _read_string(fd_mem: int, addr: int, limit: int = 4096) -> str:
    data = b""
    while len(data) < limit:
        chunk = os.pread(fd_mem, 256, addr + len(data))
        if not chunk:
            break
        end = chunk.find(b"\0")
        if end >= 0:
            return (data + chunk[:end]).decode(errors="surrogateescape")
        data += chunk
    raise OSError(errno.ENAMETOOLONG, "path too long")


def _status(pid: int) -> dict[str, str]:
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            out[key] = value.strip()
    return out


def decide(nr: int, args: list[int], status: dict[str, str]) -> tuple[int, int, int] | int:
    """(path address, mode, dev) to make, or a negative errno to answer with."""
    if nr == NR_MKNOD:
        addr, mode, dev = args[0], args[1], args[2]
    elif nr == NR_MKNODAT:
        if args[0] & 0xFFFFFFFF != AT_FDCWD & 0xFFFFFFFF:
            return -errno.EINVAL  # relative to another directory fd: not handled
        addr, mode, dev = args[1], args[2], args[3]
    else:
        return -errno.ENOSYS
    cap_eff = int(status.get("CapEff", "0"), 16)
    if not cap_eff & (1 << CAP_MKNOD):
        return -errno.EPERM
    if mode & S_IFMT != S_IFCHR or (os.major(dev), os.minor(dev)) not in ALLOWED_CHAR:
        return -errno.EPERM
    umask = int(status.get("Umask", "0022"), 8)
    return addr, mode & ~umask & 0o7777 | S_IFCHR, dev


class SeccompServer:
    def __init__(self, daemon):
        self.d = daemon
        self.path = socket_path(daemon.paths.lxd_dir)
        self.sock: socket.socket | None = None
        self.conns: set[socket.socket] = set()

    async def running(self, app):
        """aiohttp cleanup context, first of the daemon's: instances start only after."""
        self.start()
        yield
        await self.stop()

    def start(self) -> None:
        """Listen before any instance starts (autostart runs early)."""
        if os.path.exists(self.path):
            os.unlink(self.path)
        s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        s.bind(self.path)
        os.chmod(self.path, 0o600)
        s.listen(64)
        s.setblocking(False)
        self.sock = s
        asyncio.get_running_loop().add_reader(s.fileno(), self._accept)

    async def stop(self) -> None:
        loop = asyncio.get_running_loop()
        for c in list(self.conns):
            loop.remove_reader(c.fileno())
            c.close()
        if self.sock:
            loop.remove_reader(self.sock.fileno())
            self.sock.close()
        try:
            os.unlink(self.path)
        except OSError:
            pass

    def _accept(self) -> None:
        try:
            conn, _ = self.sock.accept()
        except BlockingIOError:
            return
        conn.setblocking(False)
        self.conns.add(conn)
        asyncio.get_running_loop().add_reader(conn.fileno(), self._readable, conn)

    def _readable(self, conn: socket.socket) -> None:
        try:
            data, ancdata, _flags, _ = conn.recvmsg(4096, socket.CMSG_SPACE(2 * 4))
        except BlockingIOError:
            return
        except OSError:
            data = b""
        fds = []
        for level, kind, payload in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                arr = array.array("i")
                arr.frombytes(payload[:len(payload) - len(payload) % arr.itemsize])
                fds.extend(arr)
        if not data:
            for fd in fds:
                os.close(fd)
            asyncio.get_running_loop().remove_reader(conn.fileno())
            self.conns.discard(conn)
            conn.close()
            return
        asyncio.get_running_loop().create_task(self._handle(conn, data, fds))

    async def _handle(self, conn: socket.socket, data: bytes, fds: list[int]) -> None:
        try:
            reply = await self._answer(data, fds)
        except Exception as exc:  # noqa: BLE001 - never leave the caller hanging
            LOG.error("seccomp notification failed: %s", exc)
            reply = None
        finally:
            for fd in fds:
                os.close(fd)
        if reply is not None:
            try:
                conn.send(reply)
            except OSError as exc:
                LOG.warning("seccomp proxy reply lost: %s", exc)

    async def _answer(self, data: bytes, fds: list[int]) -> bytes | None:
        (_res, _mon, _init, n_notif, n_resp, _n_data, _cookie_len) = HEADER.unpack_from(data)
        req = data[HEADER.size:HEADER.size + n_notif]
        resp = bytearray(data[HEADER.size + n_notif:HEADER.size + n_notif + n_resp])
        fields = NOTIF.unpack_from(req)
        req_id, pid, nr, args = fields[0], fields[1], fields[3], list(fields[6:12])
        error = await self._mknod(pid, nr, args, fds[1] if len(fds) > 1 else None)
        RESP.pack_into(resp, 0, req_id, 0, error, 0)
        header = HEADER.pack(0, _mon, _init, n_notif, n_resp, _n_data, 0)
        return header + req + bytes(resp)

    async def _mknod(self, pid: int, nr: int, args: list[int], fd_mem: int | None) -> int:
        if fd_mem is None:
            return -errno.EPERM
        try:
            status = _status(pid)
        except OSError:
            return -errno.ESRCH
        decision = decide(nr, args, status)
        if isinstance(decision, int):
            return decision
        addr, mode, dev = decision
        try:
            path = _read_string(fd_mem, addr)
        except OSError as exc:
            return -(exc.errno or errno.EFAULT)
        uid = int(status["Uid"].split()[3])   # fsuid, as host ids
        gid = int(status["Gid"].split()[3])
        rc, out, _err = await proc.run(
            [sys.executable, "-m", "runtime.instances.forkmknod", str(pid), path, str(mode),
             str(dev), str(uid), str(gid)], check=False, env=_helper_env())
        if rc != 0:
            try:
                return -int(out.strip() or errno.EPERM)
            except ValueError:
                return -errno.EPERM
        LOG.info("seccomp: mknod %s (%d:%d) for pid %d", path, os.major(dev),
                 os.minor(dev), pid)
        return 0


def _helper_env() -> dict:
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": root}
