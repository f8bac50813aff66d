"""Instance snapshots through unchanged pylxd against a real daemon and real containers:
create, list, rename, delete, immutability, expiry, restore (stopped and running)."""
import datetime
import os
import time

import pylxd
import pytest



def _read(inst, path: str) -> str:
    return inst.execute(["cat", path]).stdout


def _write(inst, path: str, text: str) -> None:
    assert inst.execute(["sh", "-c", f"echo {text} > {path}"]).exit_code == 0


def _fails(call, *args, **kw) -> tuple[int, str]:
    """(status, error) of an API call pylxd raises on."""
    with pytest.raises(pylxd.exceptions.LXDAPIException) as exc:
        call(*args, **kw)
    return exc.value.response.status_code, exc.value.response.json()["error"]


def test_create_list_get_rename_delete(client, make_instance):
    inst = make_instance("snp-crud", start=False)
    inst.snapshots.create("first", wait=True)
    inst.snapshots.create("second", wait=True)
    assert sorted(s.name for s in inst.snapshots.all()) == ["first", "second"]
    snap = inst.snapshots.get("first")
    assert snap.name == "first" and snap.stateful is False
    raw = client.api.instances["snp-crud"].snapshots.first.get().json()["metadata"]
    assert raw["expires_at"].startswith("0001-01-01")
    assert raw["devices"] == inst.devices and "created_at" in raw

    snap.rename("renamed", wait=True)
    assert sorted(s.name for s in inst.snapshots.all()) == ["renamed", "second"]
    with pytest.raises(pylxd.exceptions.NotFound):
        inst.snapshots.get("first")

    inst.snapshots.get("second").delete(wait=True)
    assert [s.name for s in inst.snapshots.all()] == ["renamed"]
    # recursion=2 on the instance shows its snapshots (what `lxc list` uses)
    full = client.api.instances["snp-crud"].get(params={"recursion": "2"}).json()["metadata"]
    assert [s["name"] for s in full["snapshots"]] == ["renamed"]
    # the legacy /1.0/containers prefix serves the same collection
    legacy = client.api.containers["snp-crud"].snapshots.get().json()["metadata"]
    assert legacy == ["/1.0/containers/snp-crud/snapshots/renamed"]


def test_bad_requests_are_clear(client, make_instance):
    inst = make_instance("snp-bad", start=False)
    inst.snapshots.create("s", wait=True)
    api = client.api.instances["snp-bad"].snapshots
    status, err = _fails(api.post, json={"name": "s"})
    assert status == 409 and "already exists" in err
    status, err = _fails(api.post, json={"name": "a/b"})
    assert status == 400 and "Invalid snapshot name" in err
    status, err = _fails(api.post, json={"name": "st", "stateful": True})
    assert status == 400 and "criu" in err.lower()
    with pytest.raises(pylxd.exceptions.LXDAPIException):
        inst.snapshots.create("st2", stateful=True, wait=True)
    missing = client.api.instances["snp-bad"].put(json={"restore": "nope"})
    op = client.operations.wait_for_operation  # restore of a missing snapshot fails
    with pytest.raises(pylxd.exceptions.LXDAPIException, match="not found"):
        op(missing.json()["operation"])


def test_snapshot_is_immutable(client, make_instance):
    inst = make_instance("snp-immut", start=False, config={"user.k": "before"})
    inst.snapshots.create("s", wait=True)
    api = client.api.instances["snp-immut"].snapshots.s
    status, err = _fails(api.put, json={"config": {"user.k": "changed"}})
    assert status == 400 and "immutable" in err
    assert api.get().json()["metadata"]["config"]["user.k"] == "before"
    # changing the instance afterwards does not touch the snapshot
    inst.config["user.k"] = "after"
    inst.save(wait=True)
    assert api.get().json()["metadata"]["config"]["user.k"] == "before"
    # ... but its expiry may be changed
    later = (datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=1))
    resp = api.patch(json={"expires_at": later.isoformat().replace("+00:00", "Z")})
    assert resp.status_code in (200, 202)
    client.operations.wait_for_operation(resp.json()["operation"])
    assert api.get().json()["metadata"]["expires_at"].startswith(later.strftime("%Y-%m-%d"))


def test_restore_stopped_brings_back_files_and_config(client, make_instance):
    inst = make_instance("snp-rs", config={"user.k": "v1"})
    _write(inst, "/root/data", "one")
    inst.stop(wait=True)
    inst.snapshots.create("s1", wait=True)
    inst.start(wait=True)
    _write(inst, "/root/data", "two")
    _write(inst, "/root/extra", "new")
    inst.stop(wait=True)
    inst.config["user.k"] = "v2"
    inst.save(wait=True)

    inst.restore_snapshot("s1", wait=True)
    inst.sync()
    assert inst.status == "Stopped"
    assert inst.config["user.k"] == "v1"
    inst.start(wait=True)
    assert _read(inst, "/root/data").strip() == "one"
    assert inst.execute(["test", "-e", "/root/extra"]).exit_code != 0
    # the snapshot itself is unchanged by the restore and by later writes
    _write(inst, "/root/data", "three")
    inst.stop(wait=True)
    inst.restore_snapshot("s1", wait=True)
    inst.start(wait=True)
    assert _read(inst, "/root/data").strip() == "one"


def test_snapshot_and_restore_running(client, make_instance):
    inst = make_instance("snp-rr")
    _write(inst, "/root/data", "kept")
    inst.snapshots.create("live", wait=True)
    inst.sync()
    assert inst.status == "Running"  # frozen only for the copy, thawed again
    _write(inst, "/root/data", "lost")
    pid_before = inst.state().pid
    inst.restore_snapshot("live", wait=True)
    inst.sync()
    assert inst.status == "Running"
    assert inst.state().pid != pid_before  # restarted on the restored volume
    assert _read(inst, "/root/data").strip() == "kept"


def test_expires_at_is_honoured(client, make_instance):
    inst = make_instance("snp-exp", start=False)
    soon = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=1.5)
    resp = client.api.instances["snp-exp"].snapshots.post(json={
        "name": "short", "expires_at": soon.isoformat().replace("+00:00", "Z")})
    client.operations.wait_for_operation(resp.json()["operation"])
    inst.snapshots.create("forever", wait=True)
    assert sorted(s.name for s in inst.snapshots.all()) == ["forever", "short"]
    deadline = time.time() + 10
    while time.time() < deadline and "short" in [s.name for s in inst.snapshots.all()]:
        time.sleep(0.2)
    assert [s.name for s in inst.snapshots.all()] == ["forever"]


def test_snapshots_expiry_config_sets_expiry(client, make_instance):
    inst = make_instance("snp-expcfg", start=False, config={"snapshots.expiry": "2d"})
    inst.snapshots.create("s", wait=True)
    meta = client.api.instances["snp-expcfg"].snapshots.s.get().json()["metadata"]
    expires = datetime.datetime.fromisoformat(meta["expires_at"].replace("Z", "+00:00"))
    delta = expires - datetime.datetime.now(datetime.UTC)
    assert datetime.timedelta(days=1, hours=23) < delta <= datetime.timedelta(days=2)


def test_delete_instance_removes_snapshots(daemon, client, make_instance):
    inst = make_instance("snp-del", start=False)
    inst.snapshots.create("s", wait=True)
    snapdir = os.path.join(daemon.lxd_dir, "storage-pools", "default",
                           "containers-snapshots", "snp-del")
    assert os.path.isdir(os.path.join(snapdir, "s"))
    inst.delete(wait=True)
    assert not os.path.exists(snapdir)
    # a new instance of the same name starts without snapshots
    again = make_instance("snp-del", start=False)
    assert again.snapshots.all() == []


def test_renamed_instance_keeps_its_snapshots(client, make_instance):
    inst = make_instance("snp-ren", start=False)
    inst.snapshots.create("s", wait=True)
    inst.rename("snp-ren2", wait=True)
    try:
        moved = client.instances.get("snp-ren2")
        assert [s.name for s in moved.snapshots.all()] == ["s"]
        moved.restore_snapshot("s", wait=True)
        moved.start(wait=True)
        assert moved.execute(["true"]).exit_code == 0
        moved.stop(wait=True)
    finally:
        client.instances.get("snp-ren2").delete(wait=True)


def test_root_size_on_dir_is_accepted_and_stated(client, make_instance):
    root = {"root": {"type": "disk", "path": "/", "pool": "default", "size": "1GiB"}}
    inst = make_instance("snp-dirsize", start=False, devices=root)
    assert inst.devices["root"]["size"] == "1GiB"
    state = client.api.storage_pools.default.get().json()["metadata"]["state"]
    assert state["quota_enforced"] is False and "not enforce" in state["quota_reason"]


def test_daemon_restart_keeps_snapshots_and_clears_leftovers(daemon, client, make_instance):
    inst = make_instance("snp-restart", start=False)
    inst.snapshots.create("kept", wait=True)
    pool = os.path.join(daemon.lxd_dir, "storage-pools", "default")
    # what a daemon killed in the middle of a publish or a restore leaves behind
    leftovers = [os.path.join(pool, "containers-snapshots", "snp-restart", ".publish-dead"),
                 os.path.join(pool, "containers", "snp-restart.old-dead")]
    for path in leftovers:
        os.makedirs(os.path.join(path, "rootfs"))
    daemon.stop()
    daemon.start()
    deadline = time.time() + 5
    while time.time() < deadline and any(os.path.exists(p) for p in leftovers):
        time.sleep(0.1)
    assert not any(os.path.exists(p) for p in leftovers)
    assert [s.name for s in client.instances.get("snp-restart").snapshots.all()] == ["kept"]


def test_lxc_cli_snapshot_restore_copy_publish(daemon, client, make_instance, tmp_path):
    """The LXD 5.0 CLI's own request shapes (restore names 'instance/snapshot')."""
    import subprocess
    env = {"LXD_DIR": daemon.lxd_dir, "HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}

    def lxc(*args: str) -> str:
        out = subprocess.run(["lxc", *args], env=env, capture_output=True, text=True,
                             timeout=60)
        assert out.returncode == 0, out.stderr
        return out.stdout

    inst = make_instance("snp-cli")
    _write(inst, "/root/f", "before")
    lxc("snapshot", "snp-cli", "c1")
    _write(inst, "/root/f", "after")
    lxc("restore", "snp-cli", "c1")
    assert _read(inst, "/root/f").strip() == "before"
    lxc("move", "snp-cli/c1", "snp-cli/c2")
    assert "c2" in lxc("info", "snp-cli")
    try:
        lxc("copy", "snp-cli/c2", "snp-cli-copy")
        assert "snp-cli-copy,STOPPED" in lxc("list", "--format", "csv", "-c", "ns")
        out = lxc("publish", "snp-cli/c2", "--alias", "snp-cli-img", "os=cli")
        assert "fingerprint" in out
        assert client.images.get_by_alias("snp-cli-img").properties["os"] == "cli"
    finally:
        subprocess.run(["lxc", "delete", "snp-cli-copy"], env=env, capture_output=True)
        subprocess.run(["lxc", "image", "delete", "snp-cli-img"], env=env,
                       capture_output=True)
    lxc("delete", "snp-cli/c2")
    assert inst.snapshots.all() == []


def test_deletions_from_the_image_layer_are_snapshotted(client, make_instance):
    """On the overlay dir pool a deleted image file is a whiteout in the upper layer:
    snapshots, restores, copies and publishes must keep it deleted (and undeleted)."""
    inst = make_instance("snp-wh")
    assert inst.execute(["rm", "-rf", "/etc/network"]).exit_code == 0
    inst.snapshots.create("gone", wait=True)
    inst.stop(wait=True)
    inst.snapshots.create("gone-stopped", wait=True)
    inst.start(wait=True)
    assert inst.execute(["mkdir", "-p", "/etc/network/new"]).exit_code == 0
    inst.restore_snapshot("gone", wait=True)
    assert inst.execute(["test", "-e", "/etc/network"]).exit_code != 0
    assert inst.execute(["test", "-e", "/etc/inittab"]).exit_code == 0
    image = inst.snapshots.get("gone-stopped").publish(wait=True)
    try:
        import io
        import tarfile
        data = client.api.images[image.fingerprint].export.get().content
        names = tarfile.open(fileobj=io.BytesIO(data)).getnames()
        assert "rootfs/etc/inittab" in names
        assert not any(n.startswith("rootfs/etc/network") for n in names)
    finally:
        image.delete(wait=True)
