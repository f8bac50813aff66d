"""The Debian 12 image (tools/images/build-debian) booted for real under the runtime.

Two unprivileged containers on a managed bridge (the runtime's dnsmasq serves
DHCP), each seeded exactly as the driver seeds a server (configdrive.nocloud_files
pushed through the file API before the first start): one with no network config
(cloud-init's default, DHCP on eth0), one with a static address as nova hands it
over. Then: systemd reaches `running` with no failed unit, cloud-init used the
NoCloud seed (hostname, the key and the user-data marker), sshd listens on host
keys made at first boot, an SSH login with the key works from this machine, and
the console log shows a getty prompt.

Builds the image first if it is missing or its recipe changed (about 70 s); once
it exists the module takes well under two minutes.
"""
import base64
import glob
import os
import signal
import socket
import subprocess
import tarfile
import time
import types
import uuid
from concurrent.futures import ThreadPoolExecutor

import pylxd
import pytest

from nova_lxd_py import configdrive, image
from nova_lxd_py.runtime_api import RuntimeAPI
from runtime.images import tarball
from tests.functional.runtime import nethelpers as nh
from tests.functional.runtime.harness import REPO

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

BUILDER = os.path.join(REPO, "tools", "images", "build-debian")
IMAGE = os.path.join(REPO, ".cache", "images", "debian-12.tar.gz")
SUBNET = "10.231.61"
STATIC_ADDRESS = f"{SUBNET}.250"
BOOT_TIMEOUT = 120
MARKER = "/var/tmp/nlx-user-data-ran"


@pytest.fixture(scope="module")
def debian_image():
    """The image at its usual path, built (or rebuilt) only when its recipe changed."""
    started = time.monotonic()
    out = subprocess.run([BUILDER, IMAGE], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip() == IMAGE
    print(f"\nbuild-debian: {time.monotonic() - started:.1f}s, "
          f"{os.path.getsize(IMAGE) / 1e6:.0f} MB")
    return IMAGE


@pytest.fixture(scope="module")
def debian(client, debian_image):
    started = time.monotonic()
    with open(debian_image, "rb") as f:
        uploaded = client.images.create(f.read(), wait=True)
    print(f"\nimport: {time.monotonic() - started:.1f}s")
    return uploaded.fingerprint


@pytest.fixture(scope="module")
def bridge(client, daemon):
    before = set(os.listdir("/sys/class/net"))
    net = client.networks.create(nh.name("deb"), config={"ipv4.address": f"{SUBNET}.1/24"})
    yield net.name
    try:
        client.networks.get(net.name).delete()
    except pylxd.exceptions.LXDAPIException:
        pass
    nh.cleanup(daemon.lxd_dir, before)
    nh.delete_links([net.name])


@pytest.fixture(scope="module")
def ssh_key(tmp_path_factory):
    path = tmp_path_factory.mktemp("ssh") / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "nlx-test",
                    "-f", str(path)], check=True)
    return str(path)


class _Clients:
    def __init__(self, client):
        self._client = client

    def get(self):
        return self._client


def _user_data(ssh_key: str) -> str:
    with open(ssh_key + ".pub") as f:
        pub = f.read().strip()
    doc = ("#cloud-config\n"
           f"ssh_authorized_keys:\n  - {pub}\n"
           f"runcmd:\n  - [sh, -c, 'hostname > {MARKER}']\n")
    return base64.b64encode(doc.encode()).decode()


def _vif(mac: str) -> dict:
    """A port as nova's network_info carries it: a fixed IP, gateway, DNS."""
    return {"id": str(uuid.uuid4()), "address": mac, "network": {"subnets": [{
        "cidr": f"{SUBNET}.0/24", "ips": [{"address": STATIC_ADDRESS, "type": "fixed"}],
        "gateway": {"address": f"{SUBNET}.1"}, "dns": [{"address": f"{SUBNET}.1"}]}]}}


def _ipv4(inst) -> str | None:
    eth0 = (inst.state().network or {}).get("eth0") or {}
    addrs = [a["address"] for a in eth0.get("addresses", []) if a["family"] == "inet"]
    return addrs[0] if addrs else None


def _port_open(address: str, port: int = 22) -> bool:
    try:
        with socket.create_connection((address, port), timeout=1) as sock:
            return sock.recv(64).startswith(b"SSH-2.0-")
    except OSError:
        return False


class Booted:
    def __init__(self, inst, hostname: str, started: float):
        self.inst, self.hostname, self.started = inst, hostname, started
        self.address: str | None = None
        self.sshd_after: float | None = None

    def run(self, *argv: str) -> str:
        res = self.inst.execute(list(argv))
        assert res.exit_code == 0, f"{argv}: {res.stdout}{res.stderr}"
        return res.stdout

    def wait_sshd(self) -> "Booted":
        deadline = self.started + BOOT_TIMEOUT
        while time.monotonic() < deadline:
            self.address = self.address or _ipv4(self.inst)
            if self.address and _port_open(self.address):
                self.sshd_after = time.monotonic() - self.started
                return self
            time.sleep(0.2)
        console = self.inst.client.api.instances[self.inst.name].console.get().text
        raise AssertionError(f"{self.inst.name}: no sshd on eth0 ({self.address}) within "
                             f"{BOOT_TIMEOUT}s; console:\n{console[-3000:]}")


@pytest.fixture(scope="module")
def servers(client, debian, bridge, ssh_key):
    """Three containers started together: 'dhcp' and 'static' seeded as the driver
    seeds a server (no network config / a fixed IP), 'bare' as `lxc launch` makes
    it (no seed at all)."""
    rt = RuntimeAPI(_Clients(client), op_timeout=120)
    made, booted = [], {}
    try:
        for kind in ("dhcp", "static", "bare"):
            name = f"deb-{kind}-{uuid.uuid4().hex[:6]}"
            mac = "00:16:3e:%02x:%02x:%02x" % tuple(os.urandom(3))
            nic = {"type": "nic", "network": bridge, "name": "eth0", "hwaddr": mac}
            inst = client.instances.create({
                "name": name, "source": {"type": "image", "fingerprint": debian},
                "config": {"limits.memory": "128MiB"}, "devices": {"eth0": nic}}, wait=True)
            made.append(name)
            hostname = f"nlx-{kind}-host" if kind != "bare" else name
            if kind != "bare":
                instance = types.SimpleNamespace(uuid=str(uuid.uuid4()), name=name,
                                                 user_data=_user_data(ssh_key))
                network_info = [_vif(mac)] if kind == "static" else []
                rt.push_files(name, configdrive.nocloud_files(instance, hostname,
                                                              network_info))
            booted[kind] = Booted(inst, hostname, time.monotonic())
            inst.start(wait=True)
        with ThreadPoolExecutor(len(booted)) as pool:
            list(pool.map(Booted.wait_sshd, booted.values()))
        for b in booted.values():
            b.inst.execute(["systemctl", "is-system-running", "--wait"])
            analyze = b.inst.execute(["systemd-analyze"])
            memory = b.inst.state().memory or {}
            print(f"\n{b.inst.name}: sshd on {b.address}:22 after {b.sshd_after:.1f}s; "
                  f"memory {memory.get('usage', 0) / 2**20:.0f} MiB "
                  f"(peak {memory.get('usage_peak', 0) / 2**20:.0f}); "
                  f"{(analyze.stdout + analyze.stderr).strip()}")
        yield booted
    finally:
        for name in made:
            try:
                client.instances.get(name).stop(force=True, wait=True)
            except pylxd.exceptions.LXDAPIException:
                pass
            try:
                client.instances.get(name).delete(wait=True)
            except pylxd.exceptions.LXDAPIException:
                pass


def test_image_is_what_the_driver_and_runtime_take(debian_image):
    """A unified tarball: Glance disk format raw (or root-tar) imports it as is."""
    assert image.is_unified_tarball(debian_image)
    meta = tarball.read_metadata(debian_image)
    assert meta["architecture"] == image.HOST_ARCH
    assert meta["properties"]["os"] == "debian" and meta["properties"]["release"] == "bookworm"
    check = subprocess.run([BUILDER, "--check", debian_image])
    assert check.returncode == 0, "the image carries the current recipe's stamp"


def test_image_has_no_instance_identity(debian_image):
    """Nothing that must differ per instance is baked in (keys, machine-id, a password)."""
    with tarfile.open(debian_image, "r:gz") as tar:
        first = tar.next()
        assert first.name == "metadata.yaml", "the driver looks for it among the first members"
        names, capabilities = set(), []
        for member in tar:
            names.add(member.name)
            if any("security.capability" in key for key in member.pax_headers):
                capabilities.append(member.name)
        assert not [n for n in names if n.startswith("rootfs/etc/ssh/ssh_host_")]
        assert tar.getmember("rootfs/etc/machine-id").size == 0
        shadow = tar.extractfile("rootfs/etc/shadow").read().decode()
    # A file capability does not survive into the container's user namespace.
    assert capabilities == []
    root = next(line for line in shadow.splitlines() if line.startswith("root:"))
    assert root.split(":")[1] in ("*", "!", "!*"), "root has no password"


def test_systemd_running_with_no_failed_units(servers):
    for b in servers.values():
        state = b.inst.execute(["systemctl", "is-system-running", "--wait"]).stdout.strip()
        failed = b.inst.execute(["systemctl", "--failed", "--no-legend", "--plain"]).stdout
        if state != "running" or failed.strip():
            units = [line.split()[0] for line in failed.splitlines() if line.strip()]
            journal = b.inst.execute(["journalctl", "-b", "--no-pager", "-n", "60",
                                      *[f"--unit={u}" for u in units]]).stdout
            pytest.fail(f"{b.inst.name}: {state}\n{failed}\n{journal}")
        assert b.run("cat", "/proc/1/comm").strip() == "systemd"


def _seeded(servers) -> list:
    return [servers["dhcp"], servers["static"]]


def test_cloud_init_used_the_nocloud_seed(servers):
    for b in _seeded(servers):
        status = b.inst.execute(["cloud-init", "status", "--long", "--wait"])
        assert status.exit_code == 0, status.stdout + status.stderr
        assert b.run("cloud-id").strip() == "nocloud"
        assert b.run("hostname").strip() == b.hostname
        assert b.run("cat", MARKER).strip() == b.hostname, "user-data's runcmd ran"
        keys = b.run("cat", "/home/debian/.ssh/authorized_keys")
        assert "nlx-test" in keys


def _datasources(b: "Booted", product_name: str | None = None) -> str:
    """The datasource_list ds-identify (cloud-init's generator) would choose now,
    with PID 1's environment as given, written to a scratch directory."""
    env = f"product_name={product_name}\\0" if product_name else ""
    script = (f"rm -rf /tmp/di && mkdir /tmp/di && printf '{env}container=lxc\\0' "
              "> /tmp/di/environ && PATH_PROC_1_ENVIRON=/tmp/di/environ PATH_RUN_CI=/tmp/di "
              "DI_LOG=/tmp/di/log /usr/lib/cloud-init/ds-identify --force; "
              "grep ^datasource_list /tmp/di/cloud.cfg")
    return b.run("sh", "-c", script).strip()


def test_datasources_for_a_cloud(servers):
    """The order the cloud needs: a config drive, else nova's metadata service
    (when the container says it runs on OpenStack Nova), else the NoCloud seed."""
    b = servers["dhcp"]
    assert _datasources(b) == "datasource_list: [ NoCloud, None ]"
    assert _datasources(b, "OpenStack Nova") == "datasource_list: [ OpenStack, NoCloud, None ]"
    b.run("mkdir", "-p", "/config-drive/openstack/2012-08-10")
    try:
        b.run("sh", "-c", "echo '{}' > /config-drive/openstack/2012-08-10/meta_data.json")
        assert _datasources(b, "OpenStack Nova") == \
            "datasource_list: [ ConfigDrive, NoCloud, None ]"
    finally:
        b.run("rm", "-rf", "/config-drive", "/tmp/di")


def test_dhcp_on_eth0_by_default(client, servers, bridge):
    b = servers["dhcp"]
    assert b.address.startswith(f"{SUBNET}.") and b.address != STATIC_ADDRESS
    leases = client.api.networks[bridge].leases.get().json()["metadata"]
    assert any(lease["address"] == b.address for lease in leases), leases
    assert "inet dhcp" in b.run("cat", "/etc/network/interfaces.d/50-cloud-init")
    assert f"default via {SUBNET}.1 dev eth0" in b.run("ip", "route")
    assert f"nameserver {SUBNET}.1" in b.run("cat", "/etc/resolv.conf")


def test_without_a_seed_cloud_init_still_brings_up_dhcp(client, servers, bridge):
    """`lxc launch` gives no seed: the hostname comes from the image's template,
    cloud-init falls back to DHCP on eth0 and makes the host keys; no login exists."""
    b = servers["bare"]
    assert b.run("cloud-id").strip() == "none"
    assert b.run("hostname").strip() == b.inst.name
    assert "inet dhcp" in b.run("cat", "/etc/network/interfaces.d/50-cloud-init")
    leases = client.api.networks[bridge].leases.get().json()["metadata"]
    assert any(lease["address"] == b.address for lease in leases), leases
    keys = b.run("sh", "-c", "cat /home/debian/.ssh/authorized_keys 2>/dev/null; true")
    assert keys.strip() == ""


def test_static_network_config_is_honoured(servers):
    b = servers["static"]
    assert b.address == STATIC_ADDRESS
    assert f"default via {SUBNET}.1 dev eth0" in b.run("ip", "route")
    assert "dhclient" not in b.run("ps", "-eo", "comm")
    assert f"nameserver {SUBNET}.1" in b.run("cat", "/etc/resolv.conf")


def test_ssh_login_with_the_key_from_cloud_init(servers, ssh_key, tmp_path):
    for b in _seeded(servers):
        # Trust only the host key the instance made at first boot.
        pub = b.run("cat", "/etc/ssh/ssh_host_ed25519_key.pub").split()
        known = tmp_path / f"known_{b.inst.name}"
        known.write_text(f"{b.address} {pub[0]} {pub[1]}\n")
        out = subprocess.run(
            ["ssh", "-i", ssh_key, "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
             "-o", f"UserKnownHostsFile={known}", "-o", "ConnectTimeout=10",
             "-o", "HostKeyAlgorithms=ssh-ed25519", f"debian@{b.address}",
             "hostname; sudo -n id -u; ping -c1 -W2 " + f"{SUBNET}.1 >/dev/null && echo pong"],
            capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert out.stdout.split() == [b.hostname, "0", "pong"]


def test_each_instance_has_its_own_identity(servers):
    ids = {b.run("cat", "/etc/machine-id").strip() for b in servers.values()}
    keys = {b.run("cat", "/etc/ssh/ssh_host_ed25519_key.pub") for b in servers.values()}
    assert len(ids) == 3 and all(len(i) == 32 for i in ids)
    assert len(keys) == 3


def test_console_shows_a_getty_prompt(client, servers):
    for b in servers.values():
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            console = client.api.instances[b.inst.name].console.get().content.decode(
                errors="replace")
            if f"{b.hostname} login:" in console:
                break
            time.sleep(0.5)
        else:
            pytest.fail(f"no getty prompt on the console:\n{console[-2000:]}")


def test_reboot_keeps_the_instance(servers):
    """A graceful reboot (nova's soft reboot) comes back as the same instance:
    same host keys, cloud-init's per-instance work not repeated."""
    b = servers["dhcp"]
    keys = b.run("cat", "/etc/ssh/ssh_host_ed25519_key.pub")
    b.run("rm", MARKER)
    b.inst.restart(timeout=30, force=False, wait=True)
    b.started, b.address = time.monotonic(), None
    b.wait_sshd()
    state = b.inst.execute(["systemctl", "is-system-running", "--wait"]).stdout.strip()
    assert state == "running"
    assert b.run("cat", "/etc/ssh/ssh_host_ed25519_key.pub") == keys
    assert b.inst.execute(["test", "-e", MARKER]).exit_code != 0, "runcmd ran only once"
    assert len(b.run("ls", "/var/lib/cloud/instances").split()) == 1


def test_clean_shutdown(servers):
    """A graceful stop (nova's power_off) ends systemd cleanly, well within its timeout."""
    b = servers["static"]
    started = time.monotonic()
    b.inst.stop(timeout=30, force=False, wait=True)
    took = time.monotonic() - started
    b.inst.sync()
    assert b.inst.status == "Stopped"
    assert took < 20, f"graceful stop took {took:.1f}s"


def _mounts_under(path: str) -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4] for line in f if line.split()[4].startswith(path)]


def _processes_using(path: str) -> list[str]:
    """Processes chrooted under *path* or naming it on their command line."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            root = os.readlink(f"/proc/{pid}/root")
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if root.startswith(path) or path in cmdline:
            found.append(f"{pid} {cmdline}")
    return found


def test_interrupted_build_leaves_nothing(debian_image, tmp_path):
    """SIGTERM in the middle of debootstrap (its /proc and /sys mounted in the
    staging root): no image, no staging directory, no mount left behind."""
    out = tmp_path / "debian.tar.gz"
    with open(tmp_path / "build.log", "wb") as log:
        proc = subprocess.Popen([BUILDER, "--force", str(out)], stdout=log, stderr=log,
                                start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while not _mounts_under(str(tmp_path)) and time.monotonic() < deadline:
            assert proc.poll() is None, (tmp_path / "build.log").read_text()[-2000:]
            time.sleep(0.2)
        assert _mounts_under(str(tmp_path)), "debootstrap never mounted /proc in its root"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) != 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert not _mounts_under(str(tmp_path))
    assert not out.exists()
    assert not glob.glob(str(tmp_path / ".build-debian-*"))
    assert not glob.glob(str(out) + ".tmp-*")
    assert not _processes_using(str(tmp_path)), "no debootstrap, chroot or dpkg left"
