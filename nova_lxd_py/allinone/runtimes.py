"""One bundled runtime daemon per all-in-one compute host.

Each daemon is a separate ``nova-lxd-runtime`` process with its own state
directory, exactly as on separate machines; the compute service of that host
talks to it over ``$LXD_DIR/unix.socket``. Stopping one is thorough because a
demo that is interrupted must not leave containers, mounts or directories
behind: containers are stopped through liblxc even when the daemon is gone.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable

from nova_lxd_py import client as lxd_client
from runtime import statedir


def wipe_state_dir(lxd_dir: str) -> None:
    """Stop every container of a state directory (or of a directory of them),
    unmount and remove it. The daemons ran in namespaces of their own, so their
    bridges went with those."""
    statedir.wipe(lxd_dir, bridges=False)


class Runtime:
    """A nova-lxd-runtime daemon for one compute host."""

    def __init__(self, host: str, lxd_dir: str,
                 wrap: Callable[[list[str]], list[str]] | None = None,
                 address: str = "127.0.0.1"):
        self.host = host
        self.lxd_dir = lxd_dir
        self.wrap = wrap  # e.g. run the daemon inside a network namespace
        self.address = address  # where peers reach its HTTPS listener
        self.proc: subprocess.Popen | None = None
        self.https_address = ""

    @property
    def socket(self) -> str:
        return os.path.join(self.lxd_dir, "unix.socket")

    @property
    def log_path(self) -> str:
        return os.path.join(self.lxd_dir, "daemon.log")

    def start(self, timeout: float = 30.0) -> None:
        if os.path.exists(self.lxd_dir):  # left over by a killed run
            wipe_state_dir(self.lxd_dir)
        os.makedirs(self.lxd_dir, mode=0o711)
        os.chmod(self.lxd_dir, 0o711)  # unprivileged container roots must cross it
        exe = os.path.join(os.path.dirname(sys.executable), "nova-lxd-runtime")
        env = dict(os.environ, LXD_DIR=self.lxd_dir)
        with open(self.log_path, "ab") as log:
            # Own session: a Ctrl-C on the terminal reaches the demo, which
            # then stops the daemons in order, not the daemons directly.
            argv = self.wrap([exe]) if self.wrap else [exe]
            self.proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nova-lxd-runtime for {self.host} exited with "
                                   f"{self.proc.returncode}; see {self.log_path}")
            if os.path.exists(self.socket):
                try:
                    self.client().host_info  # noqa: B018 - answers: it is up
                    return
                except Exception:  # noqa: BLE001 - not listening yet
                    pass
            time.sleep(0.05)
        raise RuntimeError(f"nova-lxd-runtime for {self.host} did not answer in {timeout}s")

    def listen_https(self) -> str:
        """Listen on HTTPS too: migration targets pull from it. In a namespace
        of its own the runtime has its address to itself (LXD's port 8443);
        on loopback it takes a free port."""
        if self.address != "127.0.0.1":
            address = f"{self.address}:8443"
        else:
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", 0))
                address = f"127.0.0.1:{probe.getsockname()[1]}"
        self.client().api.patch(json={"config": {"core.https_address": address}})
        self.https_address = address
        return address

    def client(self):
        return lxd_client.make_client(lxd_client.Endpoint(self.socket))

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def stop(self) -> None:
        """Stop the daemon, then remove its containers and state."""
        if self.proc and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
            except ProcessLookupError:
                pass
        self.proc = None
        wipe_state_dir(self.lxd_dir)
