"""A real Open vSwitch for the nova functional tests.

Debian's ``ovsdb-server`` and ``ovs-vswitchd`` (package openvswitch-switch),
started directly (no systemd) in the machine's network namespace with their
own database, run directory, sockets and logs in a temporary directory, and
stopped with everything they made when the test ends, failed or not. The
kernel here has no OVS module, so bridges use the userspace datapath
(``datapath_type=netdev``); names carry the test process id so runs never
meet each other's (or a cloud's) bridges.

os-vif is pointed at this database (``[os_vif_ovs] ovsdb_connection``) and
re-initialised, as nova-compute initialises it at start-up.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time

import fixtures
import os_vif
from pyroute2 import IPRoute

SCHEMA = "/usr/share/openvswitch/vswitch.ovsschema"
TAG = os.getpid() % 100000


def available() -> str | None:
    """Why OVS can't run here, or None."""
    for tool in ("ovsdb-server", "ovs-vswitchd", "ovs-vsctl", "ovsdb-tool", "ovs-appctl"):
        if shutil.which(tool) is None:
            return f"{tool} not found (install openvswitch-switch)"
    if not os.path.exists(SCHEMA):
        return f"{SCHEMA} not found"
    return None


def link_names() -> set[str]:
    with IPRoute() as ipr:
        return {link.get_attr("IFLA_IFNAME") for link in ipr.get_links()}


def delete_links(names: set[str]) -> None:
    with IPRoute() as ipr:
        for name in names:
            for index in ipr.link_lookup(ifname=name):
                ipr.link("del", index=index)


class OVSFixture(fixtures.Fixture):
    """ovsdb-server + ovs-vswitchd of this test, and their bridges."""

    def __init__(self, label: str = "ovs"):
        super().__init__()
        self.label = label
        self.bridges: list[str] = []
        self._procs: list[subprocess.Popen] = []

    # -- life cycle ----------------------------------------------------------------
    def _setUp(self) -> None:
        self.dir = tempfile.mkdtemp(prefix=f"nlx-{self.label}-{TAG}-", dir="/var/tmp")
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.db = f"unix:{self.dir}/db.sock"
        self.env = dict(os.environ, OVS_RUNDIR=self.dir, OVS_LOGDIR=self.dir,
                        OVS_DBDIR=self.dir)
        self.links_before = link_names()
        subprocess.run(["ovsdb-tool", "create", f"{self.dir}/conf.db", SCHEMA], check=True,
                       env=self.env, capture_output=True)
        self.addCleanup(self._stop)
        self._start("ovsdb-server", f"{self.dir}/conf.db", f"--remote=punix:{self.dir}/db.sock",
                    f"--unixctl={self.dir}/ovsdb-server.ctl",
                    f"--log-file={self.dir}/ovsdb-server.log")
        self._wait_for(f"{self.dir}/db.sock")
        self.vsctl("--no-wait", "init")
        self._start("ovs-vswitchd", self.db, f"--unixctl={self.dir}/ovs-vswitchd.ctl",
                    f"--log-file={self.dir}/ovs-vswitchd.log")
        self._wait_for(f"{self.dir}/ovs-vswitchd.ctl")

    def _start(self, exe: str, *args: str) -> None:
        log = open(os.path.join(self.dir, exe + ".out"), "wb")  # noqa: SIM115
        self.addCleanup(log.close)
        self._procs.append(subprocess.Popen(
            [exe, *args], env=self.env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True))

    def _wait_for(self, path: str, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while not os.path.exists(path):
            for proc in self._procs:
                if proc.poll() is not None:
                    raise RuntimeError(f"{proc.args[0]} exited with {proc.returncode}; "
                                       f"see {self.dir}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{path} did not appear in {timeout}s")
            time.sleep(0.02)

    def _stop(self) -> None:
        """Bridges first (vswitchd removes their devices), then the daemons;
        whatever netdev device is still there is removed by name."""
        for bridge in reversed(self.bridges):
            subprocess.run(["ovs-vsctl", f"--db={self.db}", "--timeout=10", "--if-exists",
                            "del-br", bridge], env=self.env, capture_output=True)
        if self._procs and self._procs[-1].poll() is None:
            subprocess.run(["ovs-appctl", "-t", f"{self.dir}/ovs-vswitchd.ctl", "exit",
                            "--cleanup"], env=self.env, capture_output=True, timeout=20)
        for proc in reversed(self._procs):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
        delete_links((link_names() - self.links_before) & (set(self.bridges) | {"ovs-netdev"}))

    # -- use -------------------------------------------------------------------------
    def vsctl(self, *args: str) -> str:
        return subprocess.run(["ovs-vsctl", f"--db={self.db}", "--timeout=20", *args],
                              env=self.env, capture_output=True, text=True,
                              check=True).stdout.strip()

    def add_bridge(self, suffix: str) -> str:
        """An integration bridge on the userspace datapath, name unique to this run."""
        name = f"nlxi{TAG}{suffix}"
        self.vsctl("add-br", name, "--", "set", "bridge", name, "datapath_type=netdev")
        self.bridges.append(name)
        return name

    def patch(self, bridge_a: str, bridge_b: str) -> None:
        """Join two bridges with a patch port pair (as br-int and br-tun are)."""
        a, b = f"nlxp{TAG}{bridge_a[-1]}", f"nlxp{TAG}{bridge_b[-1]}"
        self.vsctl("add-port", bridge_a, a, "--", "set", "interface", a, "type=patch",
                   f"options:peer={b}", "--", "add-port", bridge_b, b, "--",
                   "set", "interface", b, "type=patch", f"options:peer={a}")

    def ports(self, bridge: str) -> list[str]:
        out = self.vsctl("list-ports", bridge)
        return out.split() if out else []

    def interface(self, name: str) -> dict:
        """An Interface row: name, type, external_ids, error, and its bridge."""
        out = json.loads(self.vsctl("--format=json", "--columns=name,type,external_ids,error",
                                    "find", "Interface", f"name={name}"))
        if not out["data"]:
            return {}
        row = dict(zip(out["headings"], out["data"][0], strict=True))
        row["external_ids"] = dict(row["external_ids"][1])
        row["bridge"] = self.vsctl("port-to-br", name)
        return row

    def use_with_os_vif(self, test) -> None:
        """Point os-vif's ovs plugin at this database, as nova-compute would be
        configured, and drop the plugin's connection when the test ends."""
        close_os_vif()
        os_vif.initialize()  # registers [os_vif_ovs]
        test.flags(ovsdb_connection=self.db, ovs_vsctl_timeout=20, group="os_vif_ovs")
        os_vif.initialize(reset=True)
        self.addCleanup(close_os_vif)


def close_os_vif() -> None:
    """Stop os-vif's OVSDB connection so the next test can open its own.

    ovsdbapp keeps one connection per API class for the life of the process
    (a class attribute: nova-compute talks to one OVSDB); a test that brings
    its own ovsdb-server must end that connection and forget it."""
    from vif_plug_ovs.ovsdb import impl_idl

    connection = impl_idl.NeutronOvsdbIdl._ovsdb_connection
    if connection is not None:
        connection.stop()
        impl_idl.NeutronOvsdbIdl._ovsdb_connection = None
