"""Devices on real containers: nics of every kind plugged and unplugged live,
tc shaping, bind-mounted disks (at start and hot-plugged), and unix devices
with their own owner and mode."""
import os
import shutil
import subprocess
import tempfile

import pylxd
import pytest

from tests.functional.runtime import nethelpers as nh
from tests.functional.runtime.nethelpers import host_links_restored  # noqa: F401 - fixture


pytestmark = pytest.mark.usefixtures("host_links_restored")


@pytest.fixture(scope="module")
def bridge(client, daemon):
    net = client.networks.create(nh.name("br"), config={"ipv4.address": "10.231.51.1/24",
                                                        "ipv4.dhcp": "false"})
    yield net.name
    try:
        client.networks.get(net.name).delete()
    except pylxd.exceptions.LXDAPIException:
        nh.delete_links([net.name])


@pytest.fixture
def share():
    path = tempfile.mkdtemp(prefix="nt-share-", dir="/var/tmp")
    os.chmod(path, 0o755)
    with open(os.path.join(path, "hello"), "w") as f:
        f.write("from the host\n")
    os.chmod(os.path.join(path, "hello"), 0o644)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def links(inst) -> str:
    return inst.execute(["ip", "link"]).stdout


def test_bridged_nic_hotplug_and_unplug(bridge, make_instance):
    inst = make_instance()
    pid = inst.state().pid
    inst.devices["eth1"] = {"type": "nic", "nictype": "bridged", "parent": bridge,
                            "name": "eth1", "hwaddr": "00:16:3e:aa:bb:01", "mtu": "1400"}
    inst.save(wait=True)
    assert inst.state().pid == pid, "hotplug must not restart the container"
    out = links(inst)
    assert "eth1" in out and "00:16:3e:aa:bb:01" in out and "mtu 1400" in out
    inst.sync()
    host_if = inst.state().network["eth1"]["host_name"]
    assert nh.master(host_if) == bridge
    res = inst.execute(["sh", "-c", "ip addr add 10.231.51.7/24 dev eth1 && "
                        "ping -c1 -W3 10.231.51.1"])
    assert res.exit_code == 0, res.stdout + res.stderr
    del inst.devices["eth1"]
    inst.save(wait=True)
    assert "eth1" not in links(inst)
    assert not nh.exists(host_if)


def test_p2p_and_macvlan_hotplug(bridge, make_instance):
    inst = make_instance()
    inst.devices["p2p"] = {"type": "nic", "nictype": "p2p", "name": "eth5"}
    inst.devices["mv"] = {"type": "nic", "nictype": "macvlan", "parent": bridge,
                          "name": "eth6"}
    inst.save(wait=True)
    out = links(inst)
    assert "eth5" in out and "eth6" in out
    host_if = inst.state().network["eth5"]["host_name"]
    assert nh.exists(host_if) and nh.master(host_if) is None
    del inst.devices["p2p"]
    del inst.devices["mv"]
    inst.save(wait=True)
    out = links(inst)
    assert "eth5" not in out and "eth6" not in out and not nh.exists(host_if)


def test_physical_nic_moves_in_and_back(make_instance):
    host, peer = nh.name("ph"), nh.name("pp")
    subprocess.run(["ip", "link", "add", host, "type", "veth", "peer", "name", peer],
                   check=True)
    try:
        inst = make_instance()
        inst.devices["phys"] = {"type": "nic", "nictype": "physical", "parent": host,
                                "name": "eth7"}
        inst.save(wait=True)
        assert not nh.exists(host) and "eth7" in links(inst)
        del inst.devices["phys"]
        inst.save(wait=True)
        assert nh.exists(host) and "eth7" not in links(inst)
    finally:
        nh.delete_links([host, peer])


def test_physical_nic_at_start(make_instance):
    host, peer = nh.name("ph"), nh.name("pp")
    subprocess.run(["ip", "link", "add", host, "type", "veth", "peer", "name", peer],
                   check=True)
    try:
        inst = make_instance(devices={"phys": {"type": "nic", "nictype": "physical",
                                               "parent": host, "name": "eth8"}})
        assert "eth8" in links(inst) and not nh.exists(host)
    finally:
        nh.delete_links([host, peer])


def test_nic_limits_with_tc_applied_and_changed_live(bridge, make_instance):
    inst = make_instance(devices={"eth0": {"type": "nic", "parent": bridge,
                                           "nictype": "bridged", "name": "eth0",
                                           "limits.ingress": "10Mbit",
                                           "limits.egress": "5Mbit"}})
    host_if = inst.state().network["eth0"]["host_name"]
    qdisc = subprocess.run(["tc", "qdisc", "show", "dev", host_if], capture_output=True,
                           text=True).stdout
    assert "tbf" in qdisc and "rate 10Mbit" in qdisc
    ifb = "ifb" + host_if[-12:]
    assert "rate 5Mbit" in subprocess.run(["tc", "qdisc", "show", "dev", ifb],
                                          capture_output=True, text=True).stdout
    inst.devices["eth0"]["limits.ingress"] = "20Mbit"
    inst.save(wait=True)
    qdisc = subprocess.run(["tc", "qdisc", "show", "dev", host_if], capture_output=True,
                           text=True).stdout
    assert "rate 20Mbit" in qdisc
    assert host_if == inst.state().network["eth0"]["host_name"], "no re-plug for limits"
    inst.stop(force=True, wait=True)
    assert not nh.exists(ifb), "the egress ifb goes with the instance"


def test_disk_bind_at_start_readonly(share, make_instance):
    inst = make_instance(devices={"data": {"type": "disk", "source": share,
                                           "path": "/mnt/data", "readonly": "true"}})
    assert inst.execute(["cat", "/mnt/data/hello"]).stdout == "from the host\n"
    res = inst.execute(["touch", "/mnt/data/new"])
    assert res.exit_code != 0 and "Read-only" in res.stderr


def test_disk_hotplug_and_unplug(share, make_instance):
    inst = make_instance()
    inst.devices["data"] = {"type": "disk", "source": share, "path": "/srv/data"}
    inst.save(wait=True)
    assert inst.execute(["cat", "/srv/data/hello"]).stdout == "from the host\n"
    del inst.devices["data"]
    inst.save(wait=True)
    assert inst.execute(["cat", "/srv/data/hello"]).exit_code != 0
    assert os.path.exists(os.path.join(share, "hello")), "unplug never touches the source"


def test_disk_hotplug_target_cannot_escape_via_symlink(share, make_instance):
    """A symlink planted in the container resolves inside it, never on the host."""
    inst = make_instance()
    escape = tempfile.mkdtemp(prefix="nt-escape-", dir="/var/tmp")
    try:
        inst.execute(["ln", "-s", escape, "/mnt/evil"])
        inst.devices["data"] = {"type": "disk", "source": share, "path": "/mnt/evil"}
        with pytest.raises(pylxd.exceptions.LXDAPIException, match="dangling symlink"):
            inst.save(wait=True)
        assert os.listdir(escape) == [], "nothing may be mounted on the host path"
        with open("/proc/self/mounts") as f:
            assert escape not in f.read()
    finally:
        subprocess.run(["umount", "-l", escape], capture_output=True)
        shutil.rmtree(escape, ignore_errors=True)


def test_failed_hotplug_is_refused_and_not_kept(make_instance):
    inst = make_instance()
    inst.devices["bad"] = {"type": "disk", "source": "/nonexistent-nt", "path": "/mnt/x"}
    with pytest.raises(pylxd.exceptions.LXDAPIException, match="does not exist"):
        inst.save(wait=True)
    inst.sync()
    assert "bad" not in inst.devices


def test_unix_char_at_start_with_owner_and_mode(make_instance):
    before = os.stat("/dev/null")
    inst = make_instance(devices={"null2": {"type": "unix-char", "source": "/dev/null",
                                            "path": "/dev/nt-null", "uid": "1000",
                                            "gid": "1000", "mode": "0600"}})
    ls = inst.execute(["ls", "-ln", "/dev/nt-null"]).stdout.split()
    assert ls[0] == "crw-------" and ls[2:4] == ["1000", "1000"], ls
    res = inst.execute(["sh", "-c", "echo x > /dev/nt-null"], user=1000)
    assert res.exit_code == 0, res.stderr
    after = os.stat("/dev/null")
    assert (after.st_uid, after.st_gid, after.st_mode) == \
        (before.st_uid, before.st_gid, before.st_mode), "the host node is never changed"


def test_unix_char_hotplug_and_unplug(make_instance):
    inst = make_instance()
    inst.devices["zero2"] = {"type": "unix-char", "source": "/dev/zero",
                             "path": "/dev/nt-zero", "mode": "0666"}
    inst.save(wait=True)
    res = inst.execute(["sh", "-c", "head -c 4 /dev/nt-zero | wc -c"])
    assert res.stdout.strip() == "4", res.stderr
    del inst.devices["zero2"]
    inst.save(wait=True)
    assert inst.execute(["ls", "/dev/nt-zero"]).exit_code != 0


def test_unix_block_device(make_instance):
    img = tempfile.mktemp(prefix="nt-blk-", dir="/var/tmp")
    subprocess.run(["truncate", "-s", "4M", img], check=True)
    loop = subprocess.run(["losetup", "--find", "--show", img], capture_output=True,
                          text=True)
    if loop.returncode != 0:
        os.unlink(img)
        pytest.skip(f"no loop device available: {loop.stderr.strip()}")
    dev = loop.stdout.strip()
    try:
        inst = make_instance(devices={"blk": {"type": "unix-block", "source": dev,
                                              "path": "/dev/nt-blk"}})
        res = inst.execute(["sh", "-c", "head -c 512 /dev/nt-blk | wc -c"])
        assert res.stdout.strip() == "512", res.stderr
        inst.stop(force=True, wait=True)
    finally:
        subprocess.run(["losetup", "-d", dev], capture_output=True)
        os.unlink(img)


def test_pool_volume_hotplug_in_a_project(daemon, client):
    """A custom volume of an isolated project plugs into that project's instance."""
    proj = "nt-vol-" + os.urandom(3).hex()
    client.projects.create(proj, config={})
    pc = pylxd.Client(endpoint=daemon.endpoint, project=proj)
    inst = None
    try:
        with open(os.path.join(os.path.dirname(__file__), "..", "..", "..", ".cache",
                               "images", "busybox.tar.xz"), "rb") as f:
            img = pc.images.create(f.read(), wait=True)
        pc.storage_pools.get("default").volumes.create({"name": "ntvol", "type": "custom"},
                                                       wait=True)
        inst = pc.instances.create({"name": "nt-vol-user", "source": {
            "type": "image", "fingerprint": img.fingerprint}, "devices": {
            "root": {"type": "disk", "path": "/", "pool": "default"}}}, wait=True)
        inst.start(wait=True)
        inst.devices["data"] = {"type": "disk", "pool": "default", "source": "ntvol",
                                "path": "/mnt/vol"}
        inst.save(wait=True)
        assert inst.execute(["sh", "-c", "echo in-vol > /mnt/vol/f"]).exit_code == 0
        host = os.path.join(daemon.lxd_dir, "storage-pools", "default", "custom",
                            f"{proj}_ntvol", "f")
        with open(host) as f:
            assert f.read() == "in-vol\n"
        del inst.devices["data"]
        inst.save(wait=True)
        assert inst.execute(["test", "-e", "/mnt/vol/f"]).exit_code != 0
    finally:
        if inst is not None:
            inst.stop(force=True, wait=True)
            inst.delete(wait=True)
        for call in (lambda: pc.api.storage_pools.default.volumes.custom.ntvol.delete(),
                     lambda: [i.delete(wait=True) for i in pc.images.all()],
                     lambda: client.projects.get(proj).delete()):
            try:
                call()
            except Exception:  # noqa: BLE001 - best effort cleanup
                pass


def test_unimplemented_nic_options_are_refused(bridge, make_instance):
    inst = make_instance(start=False, devices={"eth0": {
        "type": "nic", "nictype": "bridged", "parent": bridge, "name": "eth0",
        "security.mac_filtering": "true"}})
    with pytest.raises(pylxd.exceptions.LXDAPIException, match="mac_filtering"):
        inst.start(wait=True)


def test_nic_kinds_at_start_with_fixed_host_name(bridge, make_instance):
    host_name = nh.name("h")
    inst = make_instance(devices={
        "eth0": {"type": "nic", "nictype": "bridged", "parent": bridge, "name": "eth0",
                 "host_name": host_name, "mtu": "1300"},
        "eth1": {"type": "nic", "nictype": "p2p", "name": "eth1"},
        "eth2": {"type": "nic", "nictype": "macvlan", "parent": bridge, "name": "eth2"}})
    out = links(inst)
    assert all(n in out for n in ("eth0", "eth1", "eth2")) and "mtu 1300" in out
    assert nh.master(host_name) == bridge
    p2p_host = inst.state().network["eth1"]["host_name"]
    assert nh.exists(p2p_host) and nh.master(p2p_host) is None
    inst.stop(force=True, wait=True)
    assert not nh.exists(host_name) and not nh.exists(p2p_host)


def test_bad_limits_refused_before_anything_runs(bridge, make_instance):
    inst = make_instance(start=False, devices={"eth0": {
        "type": "nic", "nictype": "macvlan", "parent": bridge, "name": "eth0",
        "limits.ingress": "10Mbit"}})
    with pytest.raises(pylxd.exceptions.LXDAPIException, match="veth"):
        inst.start(wait=True)
    inst.sync()
    assert inst.status == "Stopped"
    running = make_instance()
    running.devices["eth0"] = {"type": "nic", "nictype": "p2p", "name": "eth0",
                               "limits.egress": "fast"}
    with pytest.raises(pylxd.exceptions.LXDAPIException, match="limits.egress"):
        running.save(wait=True)


def test_unsupported_device_types_refused(make_instance):
    inst = make_instance(start=False, devices={"p": {
        "type": "proxy", "listen": "tcp:127.0.0.1:1", "connect": "tcp:127.0.0.1:2"}})
    with pytest.raises(pylxd.exceptions.LXDAPIException, match="proxy"):
        inst.start(wait=True)
    running = make_instance()
    running.devices["g"] = {"type": "gpu"}
    with pytest.raises(pylxd.exceptions.LXDAPIException, match="gpu"):
        running.save(wait=True)
    # type none masks a profile's device, as in LXD
    running.sync()
    running.devices["eth0"] = {"type": "none"}
    running.save(wait=True)
