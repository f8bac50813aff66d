"""Local copies (`source.type: copy`) and publishing instances/snapshots as images,
through unchanged pylxd against a real daemon with real containers."""
import io
import tarfile

import pylxd
import pytest
import yaml



@pytest.fixture
def cleanup(client):
    """Names of instances and image fingerprints a test makes; removed even on failure."""
    made = {"instances": [], "images": []}
    yield made
    for name in made["instances"]:
        try:
            inst = client.instances.get(name)
            if inst.status != "Stopped":
                inst.stop(force=True, wait=True)
            inst.delete(wait=True)
        except Exception:  # noqa: BLE001 - already gone
            pass
    for fp in made["images"]:
        try:
            client.images.get(fp).delete(wait=True)
        except Exception:  # noqa: BLE001
            pass


def _copy(client, cleanup, name: str, source: str, **extra):
    cleanup["instances"].append(name)
    body = {"name": name, "source": {"type": "copy", "source": source, **extra.pop(
        "source_extra", {})}}
    body.update(extra)
    return client.instances.create(body, wait=True)


def _write(inst, path: str, text: str) -> None:
    assert inst.execute(["sh", "-c", f"echo {text} > {path}"]).exit_code == 0


def _read(inst, path: str) -> str:
    return inst.execute(["cat", path]).stdout.strip()


def test_copy_stopped_with_and_without_snapshots(client, make_instance, cleanup):
    src = make_instance("snp-src", config={"user.a": "1"})
    _write(src, "/root/f", "s1")
    src.snapshots.create("s1", wait=True)
    _write(src, "/root/f", "now")
    src.stop(wait=True)

    full = _copy(client, cleanup, "snp-full", "snp-src")
    assert [s.name for s in full.snapshots.all()] == ["s1"]
    assert full.config["user.a"] == "1"
    assert full.config["volatile.uuid"] != src.config["volatile.uuid"]
    only = _copy(client, cleanup, "snp-only", "snp-src",
                 source_extra={"instance_only": True}, config={"user.b": "2"})
    assert only.snapshots.all() == []
    assert only.config["user.a"] == "1" and only.config["user.b"] == "2"

    full.start(wait=True)
    assert _read(full, "/root/f") == "now"
    # the copy is independent of its source
    _write(full, "/root/f", "changed")
    full.stop(wait=True)
    full.restore_snapshot("s1", wait=True)
    full.start(wait=True)
    assert _read(full, "/root/f") == "s1"
    src.start(wait=True)
    assert _read(src, "/root/f") == "now"


def test_copy_from_snapshot_and_running(client, make_instance, cleanup):
    src = make_instance("snp-src2")
    _write(src, "/root/f", "old")
    src.snapshots.create("s", wait=True)
    _write(src, "/root/f", "new")
    from_snap = _copy(client, cleanup, "snp-fromsnap", "snp-src2/s")
    assert from_snap.snapshots.all() == []
    running_copy = _copy(client, cleanup, "snp-fromrun", "snp-src2")
    src.sync()
    assert src.status == "Running"
    for inst, want in ((from_snap, "old"), (running_copy, "new")):
        inst.start(wait=True)
        assert _read(inst, "/root/f") == want


def test_copy_errors(client, make_instance, cleanup):
    make_instance("snp-src3", start=False)
    with pytest.raises(pylxd.exceptions.LXDAPIException, match="already exists"):
        client.instances.create({"name": "snp-src3", "source": {
            "type": "copy", "source": "snp-src3"}}, wait=True)
    with pytest.raises(pylxd.exceptions.LXDAPIException, match="not found"):
        _copy(client, cleanup, "snp-x", "snp-missing")
    with pytest.raises(pylxd.exceptions.LXDAPIException, match="not found"):
        _copy(client, cleanup, "snp-y", "snp-src3/nosnap")


def _export(client, fp: str) -> tarfile.TarFile:
    data = client.api.images[fp].export.get().content
    return tarfile.open(fileobj=io.BytesIO(data))


def test_publish_stopped_instance_with_properties_and_alias(client, make_instance, cleanup):
    src = make_instance("snp-pub")
    _write(src, "/root/marker", "published")
    assert src.execute(["chown", "1000:1000", "/root/marker"]).exit_code == 0
    src.stop(wait=True)
    resp = client.api.images.post(json={
        "source": {"type": "instance", "name": "snp-pub"},
        "properties": {"os": "snpos", "custom": "yes"},
        "aliases": [{"name": "snp-alias", "description": "from test"}]})
    op = client.operations.wait_for_operation(resp.json()["operation"])
    fp = op.metadata["fingerprint"]
    cleanup["images"].append(fp)
    image = client.images.get(fp)
    assert len(fp) == 64 and image.properties["os"] == "snpos"
    assert image.properties["custom"] == "yes"
    assert [a["name"] for a in image.aliases] == ["snp-alias"]

    tar = _export(client, fp)
    names = tar.getnames()
    assert "metadata.yaml" in names and "rootfs/bin/busybox" in names
    assert any(n.startswith("templates/") for n in names)
    meta = yaml.safe_load(tar.extractfile("metadata.yaml"))
    assert meta["properties"]["os"] == "snpos" and meta["architecture"]
    # owners are plain container ids again, not the host's shifted ids
    assert tar.getmember("rootfs/bin/busybox").uid == 0
    marker = tar.getmember("rootfs/root/marker")
    assert (marker.uid, marker.gid) == (1000, 1000)

    cleanup["instances"].append("snp-frompub")
    new = client.instances.create({"name": "snp-frompub", "source": {
        "type": "image", "alias": "snp-alias"}}, wait=True)
    new.start(wait=True)
    assert _read(new, "/root/marker") == "published"
    assert new.execute(["stat", "-c", "%u", "/root/marker"]).stdout.strip() == "1000"


def test_publish_running_instance_and_snapshot(client, make_instance, cleanup):
    src = make_instance("snp-pubrun")
    _write(src, "/root/state", "at-snapshot")
    src.snapshots.create("s", wait=True)
    _write(src, "/root/state", "live")
    image = src.publish(wait=True)
    cleanup["images"].append(image.fingerprint)
    src.sync()
    assert src.status == "Running"  # never stopped; frozen only for the volume copy
    snap_image = src.snapshots.get("s").publish(wait=True)
    cleanup["images"].append(snap_image.fingerprint)
    assert snap_image.fingerprint != image.fingerprint

    for img, want in ((image, "live"), (snap_image, "at-snapshot")):
        tar = _export(client, img.fingerprint)
        assert tar.extractfile("rootfs/root/state").read().decode().strip() == want
    # the private snapshot used for publishing is gone, the user's remains
    assert [s.name for s in src.snapshots.all()] == ["s"]


def test_publish_errors(client, make_instance):
    make_instance("snp-puberr", start=False)
    for body, match in (
            ({"source": {"type": "instance", "name": "snp-nope"}}, "not found"),
            ({"source": {"type": "snapshot", "name": "snp-puberr"}}, "instance/snapshot"),
            ({"source": {"type": "instance", "name": "snp-puberr"},
              "compression_algorithm": "rar"}, "compression_algorithm")):
        with pytest.raises(pylxd.exceptions.LXDAPIException, match=match):
            client.api.images.post(json=body)


def test_isolated_and_privileged_instances(client, make_instance, cleanup):
    iso = make_instance("snp-iso", config={"security.idmap.isolated": "true"})
    _write(iso, "/root/f", "iso")
    iso.snapshots.create("s", wait=True)
    copy = _copy(client, cleanup, "snp-isocopy", "snp-iso")
    copy.start(wait=True)
    copy.sync()
    iso.sync()
    base = int(iso.config["volatile.idmap.base"])
    assert int(copy.config["volatile.idmap.base"]) != base  # a range of its own
    assert _read(copy, "/root/f") == "iso"
    assert copy.execute(["stat", "-c", "%u", "/root/f"]).stdout.strip() == "0"

    image = iso.publish(wait=True)  # running, isolated: owners shifted back from its range
    cleanup["images"].append(image.fingerprint)
    tar = _export(client, image.fingerprint)
    assert tar.getmember("rootfs/root/f").uid == 0
    assert tar.getmember("rootfs/bin/busybox").uid == 0

    priv = make_instance("snp-priv", config={"security.privileged": "true"})
    _write(priv, "/root/p", "priv")
    priv.snapshots.create("s", wait=True)
    _write(priv, "/root/p", "later")
    priv.restore_snapshot("s", wait=True)
    assert _read(priv, "/root/p") == "priv"
    image = priv.snapshots.get("s").publish(wait=True)
    cleanup["images"].append(image.fingerprint)
    assert _export(client, image.fingerprint).getmember("rootfs/root/p").uid == 0


def test_copy_and_snapshots_in_a_project(client, cleanup):
    client.projects.create("snpproj", config={"features.images": "false",
                                              "features.profiles": "false"})
    try:
        r = client.api.instances.post(params={"project": "snpproj"}, json={
            "name": "snp-pi", "source": {"type": "image", "alias": "busybox"}})
        client.operations.wait_for_operation(r.json()["operation"])
        r = client.api.instances["snp-pi"].snapshots.post(
            params={"project": "snpproj"}, json={"name": "s"})
        client.operations.wait_for_operation(r.json()["operation"])
        r = client.api.instances.post(params={"project": "snpproj"}, json={
            "name": "snp-pi2", "source": {"type": "copy", "source": "snp-pi"}})
        client.operations.wait_for_operation(r.json()["operation"])
        snaps = client.api.instances["snp-pi2"].snapshots.get(
            params={"project": "snpproj"}).json()["metadata"]
        assert snaps == ["/1.0/instances/snp-pi2/snapshots/s"]
        # copy into the default project from the other one
        cleanup["instances"].append("snp-pi3")
        r = client.api.instances.post(json={"name": "snp-pi3", "source": {
            "type": "copy", "source": "snp-pi", "project": "snpproj",
            "instance_only": True}})
        client.operations.wait_for_operation(r.json()["operation"])
        copy = client.instances.get("snp-pi3")
        copy.start(wait=True)
        assert copy.execute(["true"]).exit_code == 0
    finally:
        for name in ("snp-pi2", "snp-pi"):
            try:
                r = client.api.instances[name].delete(params={"project": "snpproj"})
                client.operations.wait_for_operation(r.json()["operation"])
            except pylxd.exceptions.LXDAPIException:
                pass
        client.projects.get("snpproj").delete()


def test_publish_and_copy_an_empty_instance(client, cleanup):
    """An instance made from no image has no metadata.yaml: publish writes one."""
    cleanup["instances"] += ["snp-empty", "snp-empty2"]
    client.instances.create({"name": "snp-empty", "source": {"type": "none"}}, wait=True)
    _copy(client, cleanup, "snp-empty2", "snp-empty")
    resp = client.api.images.post(json={"source": {"type": "instance", "name": "snp-empty"},
                                        "properties": {"os": "empty"}})
    fp = client.operations.wait_for_operation(resp.json()["operation"]).metadata["fingerprint"]
    cleanup["images"].append(fp)
    tar = _export(client, fp)
    meta = yaml.safe_load(tar.extractfile("metadata.yaml"))
    assert meta["properties"] == {"os": "empty"} and meta["architecture"]
    assert "rootfs" in tar.getnames()
