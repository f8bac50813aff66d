"""Custom storage volumes through unchanged pylxd: create, list, rename, copy, delete,
attach to an instance as a disk device, detach, and size (enforced on btrfs, stated
as not enforced on dir)."""
import os

import pylxd
import pytest



@pytest.fixture
def volumes(client):
    """(pool, name) of volumes a test makes; deleted even when the test fails."""
    made = []
    yield made
    for pool, name in made:
        try:
            client.api.storage_pools[pool].volumes.custom[name].delete()
        except Exception:  # noqa: BLE001 - already gone
            pass


def _create(client, volumes, name: str, pool: str = "default", **body):
    volumes.append((pool, name))
    return client.storage_pools.get(pool).volumes.create(
        {"name": name, "type": "custom", **body}, wait=True)


def _fails(call, *args, **kw) -> tuple[int, str]:
    with pytest.raises(pylxd.exceptions.LXDAPIException) as exc:
        call(*args, **kw)
    return exc.value.response.status_code, exc.value.response.json()["error"]


def test_crud_and_listing(daemon, client, make_instance, volumes):
    make_instance("snp-vlist", start=False)
    vol = _create(client, volumes, "snp-v1", description="first", config={"user.x": "1"})
    assert vol.name == "snp-v1" and vol.type == "custom" and vol.config == {"user.x": "1"}
    path = os.path.join(daemon.lxd_dir, "storage-pools", "default", "custom", "snp-v1")
    assert os.path.isdir(path)
    names = client.api.storage_pools.default.volumes.get().json()["metadata"]
    assert "/1.0/storage-pools/default/volumes/custom/snp-v1" in names
    assert "/1.0/storage-pools/default/volumes/container/snp-vlist" in names
    pool = client.storage_pools.get("default")
    assert {(v.type, v.name) for v in pool.volumes.all()} >= {("custom", "snp-v1"),
                                                             ("container", "snp-vlist")}

    status, err = _fails(pool.volumes.create, {"name": "snp-v1", "type": "custom"})
    assert status == 409
    status, err = _fails(pool.volumes.create, {"name": "bad/name", "type": "custom"})
    assert status in (400, 404)

    client.api.storage_pools.default.volumes.custom["snp-v1"].patch(
        json={"config": {"user.y": "2"}})
    got = pool.volumes.get("custom", "snp-v1")
    assert got.config == {"user.x": "1", "user.y": "2"} and got.description == "first"

    got.rename({"name": "snp-v1r", "pool": "default"})
    volumes.append(("default", "snp-v1r"))
    assert not os.path.exists(path) and os.path.isdir(path + "r")
    pool.volumes.get("custom", "snp-v1r").delete()
    assert not os.path.exists(path + "r")
    with pytest.raises(pylxd.exceptions.NotFound):
        pool.volumes.get("custom", "snp-v1r")


def test_attach_detach_and_in_use(daemon, client, make_instance, volumes):
    _create(client, volumes, "snp-data")
    disk = {"type": "disk", "pool": "default", "source": "snp-data", "path": "/mnt/data"}
    inst = make_instance("snp-vuser", start=False, devices={"data": disk})
    inst.start(wait=True)
    assert inst.execute(["sh", "-c", "echo hi > /mnt/data/file"]).exit_code == 0
    host = os.path.join(daemon.lxd_dir, "storage-pools", "default", "custom", "snp-data",
                        "file")
    with open(host) as f:
        assert f.read() == "hi\n"
    # owned by the container's root, not the host's
    assert inst.execute(["stat", "-c", "%u", "/mnt/data/file"]).stdout.strip() == "0"

    vol = client.storage_pools.get("default").volumes.get("custom", "snp-data")
    assert vol.used_by == ["/1.0/instances/snp-vuser"]
    status, err = _fails(client.api.storage_pools.default.volumes.custom["snp-data"].delete)
    assert status == 400 and "in use" in err

    # detach from the running instance; the data stays in the volume
    del inst.devices["data"]
    inst.save(wait=True)
    inst.stop(wait=True)
    inst.start(wait=True)
    assert inst.execute(["test", "-e", "/mnt/data/file"]).exit_code != 0
    assert os.path.exists(host)
    assert client.storage_pools.get("default").volumes.get("custom", "snp-data").used_by == []

    # a second instance sees the same data
    other = make_instance("snp-vuser2", devices={"data": disk})
    assert other.execute(["cat", "/mnt/data/file"]).stdout == "hi\n"


def test_copy_volume(daemon, client, volumes):
    _create(client, volumes, "snp-vsrc")
    src = os.path.join(daemon.lxd_dir, "storage-pools", "default", "custom", "snp-vsrc")
    with open(os.path.join(src, "f"), "w") as f:
        f.write("copied")
    _create(client, volumes, "snp-vdst", source={"type": "copy", "name": "snp-vsrc",
                                                  "pool": "default"})
    with open(os.path.join(os.path.dirname(src), "snp-vdst", "f")) as f:
        assert f.read() == "copied"


def test_size_on_dir_is_stated_not_enforced(client, volumes):
    _create(client, volumes, "snp-vdir", config={"size": "10MiB"})
    state = client.api.storage_pools.default.volumes.custom["snp-vdir"].state.get().json()
    assert state["metadata"]["usage"]["quota_enforced"] is False
    pool = client.api.storage_pools.default.get().json()["metadata"]
    assert pool["state"]["quota_enforced"] is False


def test_size_enforced_on_btrfs(daemon, client, make_instance, volumes):
    client.storage_pools.create({"name": "snpvbt", "driver": "btrfs",
                                 "config": {"size": "512MiB"}})
    try:
        _create(client, volumes, "snp-vq", pool="snpvbt", config={"size": "32MiB"})
        disk = {"type": "disk", "pool": "snpvbt", "source": "snp-vq", "path": "/mnt/q"}
        inst = make_instance("snp-vq", devices={"q": disk})
        res = inst.execute(["sh", "-c", "dd if=/dev/zero of=/mnt/q/big bs=1M count=64 "
                            "conv=fsync 2>&1; echo rc=$?"])
        assert "rc=0" not in res.stdout, res.stdout
        state = client.api.storage_pools.snpvbt.volumes.custom["snp-vq"].state.get().json()
        assert state["metadata"]["usage"]["quota_enforced"] is True
        inst.stop(wait=True)
        inst.delete(wait=True)
        client.api.storage_pools.snpvbt.volumes.custom["snp-vq"].delete()
    finally:
        for name in ("snp-vq",):
            try:
                i = client.instances.get(name)
                if i.status != "Stopped":
                    i.stop(force=True, wait=True)
                i.delete(wait=True)
            except pylxd.exceptions.NotFound:
                pass
        try:
            client.api.storage_pools.snpvbt.volumes.custom["snp-vq"].delete()
        except pylxd.exceptions.LXDAPIException:
            pass
        client.storage_pools.get("snpvbt").delete()


def test_lxc_cli_volume_attach_detach(daemon, client, make_instance, volumes, tmp_path):
    import subprocess
    env = {"LXD_DIR": daemon.lxd_dir, "HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}

    def lxc(*args: str) -> str:
        out = subprocess.run(["lxc", *args], env=env, capture_output=True, text=True,
                             timeout=60)
        assert out.returncode == 0, out.stderr
        return out.stdout

    inst = make_instance("snp-vcli")
    volumes.append(("default", "snp-vc"))
    lxc("storage", "volume", "create", "default", "snp-vc")
    assert "snp-vc" in lxc("storage", "volume", "list", "default", "--format", "csv")
    lxc("storage", "volume", "attach", "default", "snp-vc", "snp-vcli", "/mnt/vc")
    assert inst.execute(["touch", "/mnt/vc/x"]).exit_code == 0
    assert "/1.0/instances/snp-vcli" in lxc("storage", "volume", "show", "default", "snp-vc")
    lxc("storage", "volume", "snapshot", "default", "snp-vc", "vs1")
    assert inst.execute(["rm", "/mnt/vc/x"]).exit_code == 0
    lxc("storage", "volume", "restore", "default", "snp-vc", "vs1")
    assert inst.execute(["test", "-e", "/mnt/vc/x"]).exit_code == 0  # same mount, restored
    lxc("storage", "volume", "detach", "default", "snp-vc", "snp-vcli")
    lxc("storage", "volume", "delete", "default", "snp-vc")


@pytest.mark.parametrize("pool_driver", ["dir", "btrfs"])
def test_volume_snapshots(daemon, client, volumes, pool_driver):
    pool_name = "default"
    if pool_driver == "btrfs":
        pool_name = "snpvsb"
        client.storage_pools.create({"name": pool_name, "driver": "btrfs",
                                     "config": {"size": "512MiB"}})
    try:
        vol = _create(client, volumes, "snp-vs", pool=pool_name)
        path = os.path.join(daemon.lxd_dir, "storage-pools", pool_name, "custom", "snp-vs")
        with open(os.path.join(path, "f"), "w") as f:
            f.write("one")
        snap = vol.snapshots.create("s1", wait=True)
        assert snap.name == "s1" and snap.expires_at is None
        with open(os.path.join(path, "f"), "w") as f:
            f.write("two")
        with open(os.path.join(path, "extra"), "w") as f:
            f.write("x")
        vol.restore_from("s1", wait=True)
        with open(os.path.join(path, "f")) as f:
            assert f.read() == "one"
        assert not os.path.exists(os.path.join(path, "extra"))
        vol.snapshots.get("s1").rename("s2")
        assert [s.split("/")[-1] for s in vol.snapshots.all()] == ["s2"]
        status, err = _fails(vol.snapshots.create, "s2", wait=True)
        assert status == 409
        vol.snapshots.create("s3", wait=True)
        vol.snapshots.get("s3").delete(wait=True)
        snapdir = os.path.join(daemon.lxd_dir, "storage-pools", pool_name,
                               "custom-snapshots", "snp-vs")
        assert sorted(os.listdir(snapdir)) == ["s2"]
        vol.delete()
        assert not os.path.exists(snapdir) and not os.path.exists(path)
    finally:
        if pool_driver == "btrfs":
            try:
                client.api.storage_pools[pool_name].volumes.custom["snp-vs"].delete()
            except pylxd.exceptions.LXDAPIException:
                pass
            client.storage_pools.get(pool_name).delete()


def test_volume_snapshot_expiry(daemon, client, volumes):
    import datetime
    import time
    vol = _create(client, volumes, "snp-vexp")
    soon = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=1.5)
    vol.snapshots.create("short", expires_at=soon.isoformat().replace("+00:00", "Z"),
                         wait=True)
    vol.snapshots.create("kept", wait=True)
    deadline = time.time() + 10
    while time.time() < deadline and len(vol.snapshots.all()) > 1:
        time.sleep(0.2)
    assert [s.split("/")[-1] for s in vol.snapshots.all()] == ["kept"]


def _start_fails(inst) -> str:
    with pytest.raises(pylxd.exceptions.LXDAPIException) as exc:
        inst.start(wait=True)
    return str(exc.value)


def test_stopped_instance_root_as_disk(client, make_instance):
    """A rescue system mounts another, stopped instance's root through the API
    (pool disk, source container/<name>), reads and repairs it; never a running one."""
    broken = make_instance("snp-broken", start=True)
    assert broken.execute(["sh", "-c", "echo precious > /root/marker"]).exit_code == 0
    disk = {"type": "disk", "pool": "default", "source": "container/snp-broken",
            "path": "/mnt/rescue"}
    rescue = make_instance("snp-rescuer", start=False, devices={"root-of": disk})
    assert "running" in _start_fails(rescue)
    broken.stop(force=True, wait=True)
    rescue.start(wait=True)
    out = rescue.execute(["cat", "/mnt/rescue/root/marker"])
    assert out.stdout == "precious\n", out.stderr
    assert rescue.execute(["sh", "-c", "echo fixed > /mnt/rescue/root/marker"]).exit_code == 0
    assert rescue.execute(["stat", "-c", "%u", "/mnt/rescue/root/marker"]).stdout.strip() == "0"
    rescue.stop(force=True, wait=True)
    broken.start(wait=True)
    assert broken.execute(["cat", "/root/marker"]).stdout == "fixed\n"
    broken.stop(force=True, wait=True)

    # hot-plugged into a running instance as well
    rescue.start(wait=True)
    rescue.devices = {}
    rescue.save(wait=True)
    rescue.devices = {"again": dict(disk, path="/mnt/again")}
    rescue.save(wait=True)
    assert rescue.execute(["cat", "/mnt/again/root/marker"]).stdout == "fixed\n"

    for name, source, why in (("snp-other", "container/snp-nothere", "not found"),
                              ("snp-self", "container/snp-self", "own root")):
        other = make_instance(name, start=False, devices={"x": dict(disk, source=source)})
        err = _start_fails(other)
        assert why in err, err
