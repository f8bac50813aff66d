"""A real runtime daemon on a throwaway state directory, for functional tests.

`RuntimeDaemon` starts `nova-lxd-runtime` as a separate process (as in production),
hands out pylxd clients on its unix socket (the one LXD client's connection,
runtime.client), and on stop removes every trace: containers, mounts, the state
directory. `wait_answering` is the one loop that waits for a daemon to come up.
"""
import os
import signal
import subprocess
import sys
import tempfile
import time

import pylxd

from runtime.client import Endpoint, connect
from tools import statedir

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))
BUSYBOX = os.path.join(REPO, ".cache", "images", "busybox.tar.xz")


def wipe(lxd_dir: str) -> None:
    """Containers, bridges, dnsmasq, mounts and the directory: see tools.statedir."""
    statedir.wipe(lxd_dir)


def wait_answering(endpoint: Endpoint, proc: subprocess.Popen, timeout: float,
                   tail=lambda: "") -> pylxd.Client:
    """A client once the daemon *proc* answers on *endpoint*; RuntimeError (with
    *tail()*, the end of its log) if it exits or stays silent for *timeout* s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"daemon exited with {proc.returncode}: {tail()}")
        try:
            return connect(endpoint)
        except Exception:  # noqa: BLE001 - not up yet
            time.sleep(0.05)
    raise RuntimeError(f"daemon did not answer within {timeout}s: {tail()}")


class RuntimeDaemon:
    def __init__(self, lxd_dir: str | None = None, prefix: str = "nlr-test-",
                 args: tuple[str, ...] = ()):
        self.args = list(args)
        self.lxd_dir = lxd_dir or tempfile.mkdtemp(prefix=prefix, dir="/var/tmp")
        os.chmod(self.lxd_dir, 0o711)
        self.proc: subprocess.Popen | None = None
        self.extra_env: dict[str, str] = {}   # e.g. runtime.crashpoint's variable
        self.log = os.path.join(os.path.dirname(self.lxd_dir),
                                os.path.basename(self.lxd_dir) + ".log")

    @property
    def socket(self) -> str:
        return os.path.join(self.lxd_dir, "unix.socket")

    @property
    def api_endpoint(self) -> Endpoint:
        return Endpoint.unix(self.socket, timeout=None)

    @property
    def endpoint(self) -> str:
        """The socket as a pylxd URL (for ``pylxd.Client(endpoint=..., project=...)``)."""
        return self.api_endpoint.pylxd_url()

    def argv(self) -> list[str]:
        """The daemon's command line (subclasses wrap it, e.g. in a namespace)."""
        return [sys.executable, "-m", "runtime.daemon", "--verbose", *self.args]

    def start(self, timeout: float = 10.0) -> "RuntimeDaemon":
        env = dict(os.environ, LXD_DIR=self.lxd_dir, **self.extra_env)
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(self.argv(), env=env, cwd=REPO, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        wait_answering(self.api_endpoint, self.proc, timeout, self.tail)
        return self

    def client(self) -> pylxd.Client:
        return connect(self.api_endpoint)

    def tail(self, n: int = 30) -> str:
        try:
            with open(self.log, errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""

    def stop(self) -> None:
        """Stop the daemon only (containers keep running, as in production)."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def destroy(self) -> None:
        self.stop()
        wipe(self.lxd_dir)
        try:
            os.unlink(self.log)
        except OSError:
            pass


def import_busybox(client: pylxd.Client, alias: str = "busybox") -> str:
    try:
        return client.images.get_by_alias(alias).fingerprint
    except pylxd.exceptions.NotFound:
        pass
    with open(BUSYBOX, "rb") as f:
        image = client.images.create(f.read(), wait=True)
    image.add_alias(alias, "bundled busybox image")
    return image.fingerprint


class PtyProcess:
    """A command on a terminal of its own (the lxc CLI's exec and console need
    one), read with expect()."""

    def __init__(self, argv: list[str], env: dict[str, str]):
        import pty
        self.buf = b""
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: exec or die, never return into pytest
            try:
                os.environ.update(env)
                os.execvp(argv[0], argv)
            finally:
                os._exit(127)

    def send(self, data: bytes) -> None:
        os.write(self.fd, data)

    def _read(self, seconds: float) -> bool:
        """Read what comes within seconds; False once the terminal is gone."""
        import select
        # poll, not select: after a long session (the cloud tests run first in
        # scripts/test) this process's descriptors can pass select()'s 1024 limit.
        poller = select.poll()
        poller.register(self.fd, select.POLLIN)
        if poller.poll(seconds * 1000):
            try:
                data = os.read(self.fd, 4096)
            except OSError:
                return False
            self.buf += data
            return bool(data)
        return True

    def expect(self, token: bytes, seconds: float = 15) -> bytes:
        """Read through token (consumed); AssertionError with what came if it doesn't."""
        deadline = time.monotonic() + seconds
        while token not in self.buf and time.monotonic() < deadline:
            if not self._read(0.2):
                break
        assert token in self.buf, f"no {token!r}; got {self.buf[-400:]!r}"
        head, _, self.buf = self.buf.partition(token)
        return head + token

    def wait(self, seconds: float = 15) -> int | None:
        """Exit code once the command ends (output still read meanwhile), or None."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            done, status = os.waitpid(self.pid, os.WNOHANG)
            if done:
                self.pid = 0
                return os.waitstatus_to_exitcode(status)
            self._read(0.1)
        return None

    def close(self) -> None:
        if self.pid:
            try:
                os.kill(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
            self.pid = 0
        os.close(self.fd)
