"""Disks whose source is a host block device (how the nova driver hands a Cinder
volume to a container): mounted on the host, idmapped so the volume's uid 0 is the
container's root, bound in at start or hot-plugged, gone from the host when unplugged
or stopped; and a root disk on a block device (boot from volume)."""
import os
import subprocess

import pylxd
import pytest

from tests.functional.loopdev import LoopDevice
from tests.functional.runtime.harness import BUSYBOX


@pytest.fixture
def loops():
    made = []

    def make(**kw):
        loop = LoopDevice(**kw)
        made.append(loop)
        return loop
    yield make
    for loop in made:
        loop.cleanup()


def _host_mounts(daemon) -> list[str]:
    prefix = os.path.join(daemon.lxd_dir, "disks") + "/"
    with open("/proc/self/mounts") as f:
        return [line.split()[1] for line in f if line.split()[1].startswith(prefix)]


def test_block_volume_mounted_shifted_and_hotplugged(daemon, make_instance, loops):
    loop = loops(files={"data/hello": b"from the volume\n"})
    disk = {"type": "disk", "source": loop.path, "path": "/srv/vol", "shift": "true"}
    inst = make_instance(start=False, devices={"vol": disk})
    inst.start(wait=True)
    assert inst.execute(["cat", "/srv/vol/data/hello"]).stdout == "from the volume\n"
    assert inst.execute(["stat", "-c", "%u", "/srv/vol/data/hello"]).stdout.strip() == "0"
    assert inst.execute(["sh", "-c", "echo mine > /srv/vol/written"]).exit_code == 0
    assert len(_host_mounts(daemon)) == 1
    inst.stop(force=True, wait=True)
    assert _host_mounts(daemon) == [], "host mount left after stop"
    with loop.mounted() as root:  # written by the container's root: uid 0 on the volume
        st = os.stat(os.path.join(root, "written"))
        assert (st.st_uid, st.st_gid) == (0, 0)

    # hot-plug into a running instance, then unplug
    inst.devices = {}
    inst.save(wait=True)
    inst.start(wait=True)
    inst.devices = {"vol": dict(disk, path="/mnt/hot")}
    inst.save(wait=True)
    assert inst.execute(["cat", "/mnt/hot/written"]).stdout == "mine\n"
    inst.devices = {}
    inst.save(wait=True)
    assert inst.execute(["test", "-e", "/mnt/hot/written"]).exit_code != 0
    assert _host_mounts(daemon) == [], "host mount left after unplug"


def _host_user_reaches(path: str) -> bool:
    """Whether an unprivileged host user (nobody) can stat path."""
    return subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                           "--", "stat", path], capture_output=True).returncode == 0


def test_volume_mounts_are_out_of_host_users_reach(daemon, client, make_instance, loops):
    """A volume's files are the tenant's choice (root in the container writes uid 0
    files through a shifted mount): a setuid-root file on it must not be reachable
    by host users through the daemon's host mounts, neither the container's mount
    nor that of a root on a block device (issue 12)."""
    assert _host_user_reaches(daemon.lxd_dir)   # the barrier is the daemon's, not /var/tmp
    loop = loops(files={"suid": b"#!/bin/sh\nid\n"})
    with loop.mounted() as root:
        os.chmod(os.path.join(root, "suid"), 0o4755)
    inst = make_instance(start=False, devices={"vol": {
        "type": "disk", "source": loop.path, "path": "/srv/vol"}})
    inst.start(wait=True)
    boot = loops(size_mb=128, rootfs_tarball=BUSYBOX, files={"suid": b"#!/bin/sh\n"})
    with boot.mounted() as root:
        os.chmod(os.path.join(root, "suid"), 0o4755)
    bfv = client.instances.create({
        "name": "t-bfv-reach", "source": {"type": "none"},
        "devices": {"root": {"type": "disk", "path": "/", "pool": "default",
                             "source": boot.path, "shift": "true"}}}, wait=True)
    try:
        # (a stopped one's root is mounted only for the length of a files request)
        bfv.start(wait=True)
        mounts = _host_mounts(daemon)
        assert len(mounts) == 2, mounts
        assert _host_user_reaches(os.path.join(daemon.lxd_dir, "disks"))
        for mount in mounts:
            suid = os.path.join(mount, "suid")
            assert os.stat(suid).st_mode & 0o4000, suid
            assert not _host_user_reaches(suid), f"{suid} is reachable by host users"
        assert inst.execute(["cat", "/srv/vol/suid"]).exit_code == 0
    finally:
        bfv.stop(force=True, wait=True)
        bfv.delete(wait=True)
    assert len(_host_mounts(daemon)) == 1


def test_block_device_without_filesystem(make_instance, loops):
    loop = loops(fs=None)
    inst = make_instance(start=False, devices={"vol": {
        "type": "disk", "source": loop.path, "path": "/srv/vol", "shift": "true"}})
    with pytest.raises(pylxd.exceptions.LXDAPIException) as exc:
        inst.start(wait=True)
    assert "cannot mount" in str(exc.value)


def test_root_on_a_block_device(daemon, client, loops):
    loop = loops(size_mb=128, rootfs_tarball=BUSYBOX,
                 files={"etc/marker": b"booted from a volume\n"})
    name = "t-bfv"
    inst = client.instances.create({
        "name": name, "source": {"type": "none"},
        "devices": {"root": {"type": "disk", "path": "/", "pool": "default",
                             "source": loop.path, "shift": "true"}}}, wait=True)
    try:
        # the file API reaches the volume while the instance is stopped
        inst.files.put("/etc/pushed", b"pushed before start\n")
        inst.start(wait=True)
        assert inst.execute(["cat", "/etc/marker"]).stdout == "booted from a volume\n"
        assert inst.execute(["cat", "/etc/pushed"]).stdout == "pushed before start\n"
        assert inst.execute(["stat", "-c", "%u", "/bin/busybox"]).stdout.strip() == "0"
        assert inst.execute(["readlink", "/proc/1/exe"]).stdout.strip() == "/bin/busybox"
        inst.stop(force=True, wait=True)
        assert _host_mounts(daemon) == []
    finally:
        inst.sync()
        if inst.status != "Stopped":
            inst.stop(force=True, wait=True)
        inst.delete(wait=True)
    assert _host_mounts(daemon) == []
    with loop.mounted() as root:
        with open(os.path.join(root, "etc", "pushed")) as f:
            assert f.read() == "pushed before start\n"
