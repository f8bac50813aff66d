"""Several runtime daemons on one machine, reachable over HTTPS like separate hosts.

`Hosts` starts daemons on their own state directories with `core.https_address`
set, a client certificate trusted by all of them, and hands out pylxd clients
over HTTPS (with REQUESTS_CA_BUNDLE/CURL_CA_BUNDLE unset, see DESIGN.md section 5).
With `netns=True` each daemon runs in its own network namespace (`nsenter --net`,
so mounts and cgroups stay the host's), joined by veths on a bridge in the host
namespace that has an address too, so the test process reaches every daemon and
the daemons reach each other. Every name carries the `mg` prefix plus a random
suffix; everything is removed at the end, even after a failure.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import urllib.parse

import pylxd

from tests.functional.runtime.harness import REPO, RuntimeDaemon

for _var in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
    os.environ.pop(_var, None)
sys.path.insert(0, REPO)
from tests.functional.runtime.hostnet import HostNetwork  # noqa: E402
from runtime.client import Endpoint, connect  # noqa: E402
from runtime.tls import generate_keypair  # noqa: E402


def _free_port_pair() -> int:
    """A port p on 127.0.0.1 with p and p + 1 free right now (other sessions share ports)."""
    import socket
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port >= 65000:
            continue
        try:
            with socket.socket() as s2:
                s2.bind(("127.0.0.1", port + 1))
            return port
        except OSError:
            continue
    raise RuntimeError("no free port pair on 127.0.0.1")


class Daemon(RuntimeDaemon):
    """A RuntimeDaemon that may run inside a network namespace."""

    def __init__(self, netns: str | None, address: str, port: int, own_sysfs: bool = False):
        """*own_sysfs*: enter the namespace with ``ip netns exec`` (a mount namespace
        with a sysfs of the network namespace, which liblxc needs to attach veths to
        bridges there) instead of ``nsenter --net`` (mounts shared with the machine)."""
        super().__init__(prefix="mg-")
        self.netns, self.address, self.port = netns, address, port
        self.own_sysfs = own_sysfs

    def argv(self) -> list[str]:
        argv = super().argv()
        if self.netns and self.own_sysfs:
            return ["ip", "netns", "exec", self.netns] + argv  # execs: same pid
        if self.netns:
            # --no-fork: the pid we hold is the daemon itself, so stop() reaches it.
            return ["nsenter", "--no-fork", f"--net=/run/netns/{self.netns}", "--"] + argv
        return argv

    def start(self, timeout: float = 15.0) -> "Daemon":
        super().start(timeout)
        self.client().api.patch(json={"config": {
            "core.https_address": f"{self.address}:{self.port}"}})
        return self

    @property
    def url(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"https://{host}:{self.port}"

    @property
    def server_crt(self) -> str:
        return os.path.join(self.lxd_dir, "server.crt")

    def kill(self) -> None:
        """Die abruptly (SIGKILL), as a crashed host would."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None


class Hosts:
    def __init__(self, count: int = 2, netns: bool = False, base_port: int | None = None):
        self.netns = netns
        self.daemons: list[Daemon] = []
        # Host namespaces on one bridge, with an address on the bridge
        # so this test process reaches every daemon too.
        self.network = HostNetwork(prefix="mg", net="10.218", reach_from_machine=True) \
            if netns else None
        self.tmp = tempfile.mkdtemp(prefix="mg-cli-", dir="/var/tmp")
        self.cert = os.path.join(self.tmp, "client.crt")
        self.key = os.path.join(self.tmp, "client.key")
        generate_keypair(self.cert, self.key, "mg-test-client")
        port = base_port or _free_port_pair()
        try:
            for i in range(count):
                namespace, address = self.network.add_host(i) if netns else \
                    (None, "127.0.0.1")
                d = Daemon(namespace, address, port + i if not netns else 8443)
                self.daemons.append(d)
                d.start()
                d.client().certificates.create("", open(self.cert, "rb").read(),
                                               name="mg-test")
        except BaseException:
            self.destroy()
            raise

    def https(self, i: int) -> pylxd.Client:
        d = self.daemons[i]
        return connect(Endpoint(d.url, client_cert=self.cert, client_key=self.key,
                                server_cert=d.server_crt, timeout=None))

    def local(self, i: int) -> pylxd.Client:
        return self.daemons[i].client()

    def destroy(self) -> None:
        for d in self.daemons:
            try:
                d.destroy()
            except Exception:  # noqa: BLE001 - keep cleaning the rest
                pass
        if self.network is not None:
            self.network.destroy()
        subprocess.run(["rm", "-rf", self.tmp], check=False)


def socket_endpoint(lxd_dir: str) -> str:
    return "http+unix://" + urllib.parse.quote(os.path.join(lxd_dir, "unix.socket"), safe="")
