"""The btrfs pool on a loop file the pool makes itself: instances as subvolume
snapshots, atomic snapshots of running instances, restore, copy (also across
pools), publish, enforced root disk size, and surviving a daemon restart."""
import os

import pylxd
import pytest


POOL = "snpbt"
ROOT = {"root": {"type": "disk", "path": "/", "pool": POOL}}


@pytest.fixture(scope="module")
def pool(client, busybox):
    p = client.storage_pools.create({"name": POOL, "driver": "btrfs",
                                     "config": {"size": "1GiB"}})
    yield p
    for inst in client.instances.all():
        if inst.devices.get("root", {}).get("pool") == POOL:
            if inst.status != "Stopped":
                inst.stop(force=True, wait=True)
            inst.delete(wait=True)
    client.storage_pools.get(POOL).delete()


def test_pool_image_is_roots_alone(daemon, pool):
    """LXD_DIR/disks is traversable by containers' roots (block-device disks are
    mounted below it): the pool's loop image, every container's data, is root's only."""
    image = os.path.join(daemon.lxd_dir, "disks", f"{POOL}.img")
    assert os.path.isfile(image)
    assert os.stat(image).st_mode & 0o077 == 0, oct(os.stat(image).st_mode)


def _is_subvolume(path: str) -> bool:
    return os.stat(path).st_ino == 256


def _rootfs(daemon, name: str) -> str:
    return os.path.join(daemon.lxd_dir, "storage-pools", POOL, "containers", name, "rootfs")


def _write(inst, path: str, text: str) -> None:
    assert inst.execute(["sh", "-c", f"echo {text} > {path}"]).exit_code == 0


def _read(inst, path: str) -> str:
    return inst.execute(["cat", path]).stdout.strip()


def test_pool_on_loop_file_reports_quota(daemon, client, pool):
    meta = client.api.storage_pools[POOL].get().json()["metadata"]
    assert meta["driver"] == "btrfs"
    assert meta["config"]["source"].startswith(daemon.lxd_dir)
    assert meta["config"]["size"] == "1GiB"
    assert meta["state"]["quota_enforced"] is True
    assert os.path.ismount(os.path.join(daemon.lxd_dir, "storage-pools", POOL))
    default = client.api.storage_pools.default.get().json()["metadata"]
    assert default["state"]["quota_enforced"] is False and default["state"]["quota_reason"]


def test_instance_is_a_subvolume_snapshot(daemon, client, pool, make_instance):
    inst = make_instance("snp-bt1", devices=ROOT)
    assert inst.status == "Running"
    assert _is_subvolume(_rootfs(daemon, "snp-bt1"))
    _write(inst, "/root/f", "hello")
    assert _read(inst, "/root/f") == "hello"


def test_snapshot_restore_copy_publish(daemon, client, pool, make_instance):
    inst = make_instance("snp-bt2", devices=ROOT)
    _write(inst, "/root/f", "one")
    inst.snapshots.create("s1", wait=True)
    inst.sync()
    assert inst.status == "Running"
    snap_rootfs = os.path.join(daemon.lxd_dir, "storage-pools", POOL, "containers-snapshots",
                               "snp-bt2", "s1", "rootfs")
    assert _is_subvolume(snap_rootfs)
    with pytest.raises(OSError):  # read-only snapshot: immutable on disk too
        open(os.path.join(snap_rootfs, "root", "x"), "w").close()
    _write(inst, "/root/f", "two")
    inst.restore_snapshot("s1", wait=True)
    inst.sync()
    assert inst.status == "Running" and _read(inst, "/root/f") == "one"

    copy = client.instances.create({"name": "snp-bt2c", "source": {
        "type": "copy", "source": "snp-bt2"}}, wait=True)
    try:
        assert _is_subvolume(_rootfs(daemon, "snp-bt2c"))
        assert [s.name for s in copy.snapshots.all()] == ["s1"]
        copy.start(wait=True)
        assert _read(copy, "/root/f") == "one"
        copy.stop(wait=True)
    finally:
        copy.delete(wait=True)

    image = inst.publish(wait=True)
    try:
        assert len(image.fingerprint) == 64
        child = make_instance("snp-bt2i", devices=ROOT, start=False,
                              source={"type": "image", "fingerprint": image.fingerprint})
        image_subvol = os.path.join(daemon.lxd_dir, "storage-pools", POOL, "images",
                                    image.fingerprint, "rootfs")
        assert _is_subvolume(image_subvol)
    finally:
        image.delete(wait=True)
    # the image's subvolume goes; the instance made from it is a snapshot and stays
    assert not os.path.exists(image_subvol)
    child.start(wait=True)
    assert _read(child, "/root/f") == "one"


def test_copy_between_dir_and_btrfs(daemon, client, pool, make_instance):
    src = make_instance("snp-bt3")  # on the default dir pool
    _write(src, "/root/f", "snap")
    src.snapshots.create("s", wait=True)
    _write(src, "/root/f", "now")
    src.stop(wait=True)
    body = {"name": "snp-bt3c", "source": {"type": "copy", "source": "snp-bt3"},
            "devices": ROOT}
    copy = client.instances.create(body, wait=True)
    try:
        assert _is_subvolume(_rootfs(daemon, "snp-bt3c"))
        assert [s.name for s in copy.snapshots.all()] == ["s"]
        copy.start(wait=True)
        assert _read(copy, "/root/f") == "now"
        assert copy.execute(["stat", "-c", "%u", "/bin/busybox"]).stdout.strip() == "0"
        copy.stop(wait=True)
        copy.restore_snapshot("s", wait=True)
        copy.start(wait=True)
        assert _read(copy, "/root/f") == "snap"
        copy.stop(wait=True)
    finally:
        copy.delete(wait=True)


def test_root_size_is_enforced(daemon, client, pool, make_instance):
    root = {"root": {**ROOT["root"], "size": "64MiB"}}
    inst = make_instance("snp-bt4", devices=root)
    res = inst.execute(["sh", "-c", "dd if=/dev/zero of=/root/big bs=1M count=128 "
                        "conv=fsync 2>&1; echo rc=$?"])
    assert "rc=0" not in res.stdout, res.stdout
    assert "quota" in res.stdout.lower() or "space" in res.stdout.lower(), res.stdout
    inst.execute(["rm", "-f", "/root/big"])
    # raising the size on the running instance applies at once
    inst.devices["root"]["size"] = "256MiB"
    inst.save(wait=True)
    res = inst.execute(["sh", "-c", "dd if=/dev/zero of=/root/big bs=1M count=128 "
                        "conv=fsync 2>&1; echo rc=$?"])
    assert "rc=0" in res.stdout, res.stdout
    # the instance's disk usage is its subvolume's qgroup (referenced bytes)
    assert inst.state().disk["root"]["usage"] >= 128 * 1024 * 1024
    inst.execute(["rm", "-f", "/root/big"])
    # a restored rootfs is a new subvolume: the limit follows it
    inst.snapshots.create("q", wait=True)
    inst.restore_snapshot("q", wait=True)
    res = inst.execute(["sh", "-c", "dd if=/dev/zero of=/root/big bs=1M count=320 "
                        "conv=fsync 2>&1; echo rc=$?"])
    assert "rc=0" not in res.stdout, res.stdout


def test_pool_survives_daemon_restart(daemon, client, pool, make_instance):
    inst = make_instance("snp-bt5", devices=ROOT, start=False)
    inst.snapshots.create("s", wait=True)
    mnt = os.path.join(daemon.lxd_dir, "storage-pools", POOL)
    daemon.stop()
    os.system(f"umount {mnt}")  # as after a host reboot
    assert not os.path.ismount(mnt)
    daemon.start()
    c = daemon.client()
    assert os.path.ismount(mnt)
    again = c.instances.get("snp-bt5")
    again.start(wait=True)
    assert again.execute(["true"]).exit_code == 0
    again.stop(wait=True)


def test_delete_pool_removes_loop_file(daemon, client, busybox):
    c = client
    c.storage_pools.create({"name": "snpbt2", "driver": "btrfs", "config": {"size": "512MiB"}})
    loop = c.api.storage_pools.snpbt2.get().json()["metadata"]["config"]["source"]
    assert os.path.isfile(loop)
    c.storage_pools.get("snpbt2").delete()
    assert not os.path.exists(loop)
    assert not os.path.ismount(os.path.join(daemon.lxd_dir, "storage-pools", "snpbt2"))
    with pytest.raises(pylxd.exceptions.LXDAPIException, match="at least"):
        c.storage_pools.create({"name": "snpbt3", "driver": "btrfs",
                                "config": {"size": "10MiB"}})


@pytest.fixture
def btrfs_device(tmp_path):
    """A formatted btrfs loop device, detached afterwards even on failure."""
    import subprocess
    img = tmp_path / "snp-bt.img"
    with open(img, "wb") as f:
        f.truncate(512 * 1024 * 1024)
    subprocess.run(["mkfs.btrfs", "-q", "-f", str(img)], check=True)
    dev = subprocess.run(["losetup", "-f", "--show", str(img)], check=True,
                         capture_output=True, text=True).stdout.strip()
    yield dev
    with open("/proc/mounts") as f:
        for line in f:
            if line.split()[0] == dev:
                subprocess.run(["umount", "-l", line.split()[1]], capture_output=True)
    subprocess.run(["losetup", "-d", dev], capture_output=True)


def test_pool_on_given_device_and_directory(daemon, client, busybox, btrfs_device, tmp_path):
    import subprocess
    c = client
    # a block device: mounted by the pool, left in place when the pool goes
    c.storage_pools.create({"name": "snpbtdev", "driver": "btrfs",
                            "config": {"source": btrfs_device}})
    mnt = os.path.join(daemon.lxd_dir, "storage-pools", "snpbtdev")
    try:
        assert os.path.ismount(mnt)
        root = {"root": {"type": "disk", "path": "/", "pool": "snpbtdev"}}
        inst = c.instances.create({"name": "snp-btdev", "devices": root, "source": {
            "type": "image", "alias": "busybox"}}, wait=True)
        inst.start(wait=True)
        assert inst.execute(["true"]).exit_code == 0
        inst.stop(wait=True)
        inst.delete(wait=True)
    finally:
        c.storage_pools.get("snpbtdev").delete()
    assert not os.path.ismount(mnt)

    # an existing btrfs directory: used in place
    where = tmp_path / "mnt"
    where.mkdir()
    subprocess.run(["mount", btrfs_device, str(where)], check=True)
    c.storage_pools.create({"name": "snpbtdir", "driver": "btrfs",
                            "config": {"source": str(where)}})
    try:
        assert (where / "containers").is_dir()
        inst = c.instances.create({"name": "snp-btdir", "devices": {"root": {
            "type": "disk", "path": "/", "pool": "snpbtdir"}}, "source": {
            "type": "image", "alias": "busybox"}}, wait=True)
        assert os.stat(where / "containers" / "snp-btdir" / "rootfs").st_ino == 256
        inst.delete(wait=True)
    finally:
        c.storage_pools.get("snpbtdir").delete()
    assert not (where / "containers").exists()
    with pytest.raises(pylxd.exceptions.LXDAPIException, match="not on a btrfs"):
        c.storage_pools.create({"name": "snpbtbad", "driver": "btrfs",
                                "config": {"source": str(tmp_path)}})
