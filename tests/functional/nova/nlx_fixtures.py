"""Runtime daemons for the nova functional tests.

NOVA_LXD_TEST_RUNTIME selects what the compute hosts talk to:
- unset or ``bundled``: one nova-lxd-runtime per compute host, each in the
  foreground with its own temporary LXD_DIR (what CI runs);
- a path to a unix socket (e.g. /var/lib/lxd/unix.socket): an existing LXD
  daemon shared by all hosts (development against Debian's LXD 5.0). Only
  containers and images this test created are removed.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile

import fixtures
import pylxd
from pylxd import exceptions as lxd_exceptions

from nova_lxd_py import client as lxd_client

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))
if REPO not in sys.path:  # stestr runs from this directory; tests/ is not installed
    sys.path.append(REPO)
from tests.functional.loopdev import LoopDevice  # noqa: E402,F401 - shared with runtime tests
from tests.functional.runtime.harness import wait_answering  # noqa: E402
from tools.statedir import mounts_below  # noqa: E402,F401 - what a host reboot drops
# Per test process, so parallel workers sharing one LXD never touch each
# other's containers.
NAME_PREFIX = f"nlx-nova-{os.getpid()}-"


# The real functions, taken before nova's SysFsPoisonFixture and GenericPoisonFixture
# wrap them (they fail any test that reads /sys, the host's interfaces or uname:
# meant for unit tests that should have mocked them).
_REAL_HOST_READS = {name: getattr(__import__(name.rsplit(".", 1)[0], fromlist=["_"]),
                                  name.rsplit(".", 1)[1])
                    for name in ("glob.glob", "glob.iglob", "os.listdir", "os.path.isdir",
                                 "builtins.open", "psutil.net_if_addrs", "os.uname")}


class RealHost(fixtures.Fixture):
    """Lets a functional test read the host again (/sys, interfaces, uname), for
    code that really asks the kernel: os-brick's connector properties probe Fibre
    Channel HBAs, NVMe and the host's addresses, as on a real compute host."""

    def _setUp(self) -> None:
        for name, real in _REAL_HOST_READS.items():
            self.useFixture(fixtures.MonkeyPatch(name, real))


class LocalVolumes(fixtures.Fixture):
    """Cinder volumes of nova's CinderFixture (set up by the test's base class)
    backed by loop devices and connected through os-brick's local connector: this
    kernel has no iSCSI, RBD or device-mapper for a real back end. As root in
    tests, os-brick's and the driver's privileged helpers run in-process."""

    def _setUp(self) -> None:
        import os_brick.privileged
        from nova.volume import cinder

        from nova_lxd_py import privsep
        self.useFixture(fixtures.MockPatchObject(os_brick.privileged.default,
                                                 "client_mode", False))
        self.useFixture(fixtures.MockPatchObject(privsep.storage_pctxt, "client_mode", False))
        self.useFixture(RealHost())  # os-brick asks the kernel (HBAs, NICs)
        # the CinderFixture itself (its fakes are the side effects of its mocks)
        self.cinder = cinder.API.get.side_effect.__self__
        self.cinder.VOLUME_CONNECTION_INFO = dict(self.cinder.VOLUME_CONNECTION_INFO)

    def create(self, metadata: dict | None = None, **loop) -> tuple[str, LoopDevice]:
        """A new volume on a new loop device (LoopDevice's arguments)."""
        from oslo_utils import uuidutils

        device = LoopDevice(**loop)
        self.addCleanup(device.cleanup)
        vol_id = uuidutils.generate_uuid()
        self.cinder.VOLUME_CONNECTION_INFO[vol_id] = {
            "driver_volume_type": "local", "data": {"device_path": device.path}}
        self.cinder.volumes[vol_id] = {
            "id": vol_id, "display_name": vol_id, "display_description": "", "size": 1,
            "multiattach": False,
            "availability_zone": "nova", "bootable": True,
            "volume_metadata": dict(metadata or {})}
        return vol_id, device


def busybox_image() -> str:
    """The bundled busybox image, built once into .cache like scripts/setup."""
    path = os.path.join(REPO, ".cache", "images", "busybox.tar.xz")
    if not os.path.exists(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        subprocess.run([os.path.join(REPO, "tools", "images", "build-busybox"), path],
                       check=True)
    return path


def _wipe(lxd_dir: str) -> None:
    """tools.statedir.wipe in a child process: it reads /sys/fs/cgroup, which nova's
    test fixtures forbid inside the test process."""
    subprocess.run([sys.executable, "-c", "import sys; from tools import statedir; "
                    "statedir.wipe(sys.argv[1])", lxd_dir], check=False, timeout=120, cwd=REPO)


def runtime_kind() -> str:
    return os.environ.get("NOVA_LXD_TEST_RUNTIME", "bundled")


class RuntimeFixture(fixtures.Fixture):
    """A runtime endpoint for one compute host, cleaned up after the test."""

    def __init__(self, label: str, https: bool = False):
        super().__init__()
        self.label = label
        self.https = https
        self.proc: subprocess.Popen | None = None
        self.endpoint = ""

    def _setUp(self) -> None:
        kind = runtime_kind()
        if kind == "bundled":
            self._start_bundled()
        else:
            self.endpoint = kind
        self.client = lxd_client.make_client(lxd_client.Endpoint(self.endpoint))
        self.addCleanup(self._remove_ours)
        if self.https:
            self._listen_https()

    def _listen_https(self) -> None:
        """Peers (migration targets) reach this runtime on a loopback port."""
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        api = self.client.api
        before = api.get().json()["metadata"].get("config") or {}
        api.patch(json={"config": {"core.https_address": f"127.0.0.1:{port}"}})
        self.addCleanup(api.patch, json={"config": {
            "core.https_address": before.get("core.https_address", "")}})

    def _start_bundled(self) -> None:
        # Not under $TMPDIR: nova's tests point it at a 0700 directory, which
        # unprivileged containers (their root is a high host uid) can't cross.
        lxd_dir = tempfile.mkdtemp(prefix=f"nlx-nova-{self.label}-", dir="/var/tmp")
        os.chmod(lxd_dir, 0o711)
        self.lxd_dir = lxd_dir
        self.addCleanup(_wipe, lxd_dir)
        keep = os.environ.get("NOVA_LXD_TEST_LOG_DIR")
        if keep:  # keep the daemon's logs for debugging a failed run
            self.addCleanup(self._keep_logs, lxd_dir, keep)
        self.endpoint = os.path.join(lxd_dir, "unix.socket")
        self.addCleanup(self._stop)
        self._launch()

    def _launch(self) -> None:
        exe = os.path.join(os.path.dirname(sys.executable), "nova-lxd-runtime")
        env = dict(os.environ, LXD_DIR=self.lxd_dir)
        with open(os.path.join(self.lxd_dir, "daemon.log"), "ab") as log:
            self.proc = subprocess.Popen([exe], env=env, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        wait_answering(lxd_client.Endpoint(self.endpoint), self.proc, 20,
                       lambda: f"see {self.lxd_dir}/daemon.log")

    def restart(self, host_reboot: bool = False) -> None:
        """Stop the daemon and start it again on the same state directory.

        host_reboot: in between, kill every container and drop every mount under
        the state directory, as a host reboot would (the daemon then finds its
        instances stopped although they were running)."""
        if runtime_kind() != "bundled":
            raise RuntimeError("restarting needs the bundled runtime")
        self._stop()
        if host_reboot:
            subprocess.run([sys.executable, "-c", "import sys; from tools import statedir; "
                            "statedir.stop_containers(sys.argv[1]); "
                            "[statedir.subprocess.run(['umount', '-l', m]) for m in "
                            "sorted(statedir.mounts_below(sys.argv[1]), key=len, reverse=True)]",
                            self.lxd_dir], check=True, timeout=120, cwd=REPO)
        self._launch()
        self.client = lxd_client.make_client(lxd_client.Endpoint(self.endpoint))

    def _keep_logs(self, lxd_dir: str, keep: str) -> None:
        target = os.path.join(keep, os.path.basename(lxd_dir))
        shutil.copytree(lxd_dir, target, ignore=shutil.ignore_patterns(
            "rootfs", "images", "*.socket", "unix.socket"), dirs_exist_ok=True,
            ignore_dangling_symlinks=True)

    def _stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()

    def ours(self) -> list[str]:
        return [i.name for i in self.client.instances.all()
                if i.name.startswith(NAME_PREFIX)]

    def our_volumes(self, pool: str = "default") -> list[str]:
        volumes = self.client.api.storage_pools[pool].volumes.get(
            params={"recursion": 1}).json()["metadata"]
        return [v["name"] for v in volumes
                if v["type"] == "custom" and v["name"].startswith(NAME_PREFIX)]

    def _remove_ours(self) -> None:
        for name in self.ours():
            inst = self.client.instances.get(name)
            try:
                if inst.status != "Stopped":
                    inst.stop(force=True, wait=True)
                inst.delete(wait=True)
            except lxd_exceptions.LXDAPIException:
                pass
        for volume in self.our_volumes():
            try:
                self.client.api.storage_pools.default.volumes.custom[volume].delete()
            except lxd_exceptions.LXDAPIException:
                pass
        for alias in list(getattr(self, "image_aliases", [])):
            try:
                target = self.client.api.images.aliases[alias].get().json()["metadata"][
                    "target"]
                self.client.api.images.aliases[alias].delete()
                image = self.client.api.images[target].get().json()["metadata"]
                if not image.get("aliases"):  # shared daemons: keep others' images
                    self.client.api.images[target].delete()
            except lxd_exceptions.LXDAPIException:
                pass


def pylxd_client(endpoint: str) -> pylxd.Client:
    return lxd_client.make_client(lxd_client.Endpoint(endpoint))
