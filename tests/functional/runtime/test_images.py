"""Images: unified and split uploads, sha256 fingerprints, aliases, export, delete."""
import hashlib
import io
import tarfile

import pylxd
import pytest

from tests.functional.runtime.harness import BUSYBOX


def _split(tmp_path):
    """Split the bundled unified tarball into a metadata tarball and a rootfs tarball."""
    meta, root = io.BytesIO(), io.BytesIO()
    with tarfile.open(BUSYBOX) as src, tarfile.open(fileobj=meta, mode="w:gz") as m, \
            tarfile.open(fileobj=root, mode="w:gz") as r:
        for member in src:
            data = src.extractfile(member) if member.isfile() else None
            if member.name.startswith("rootfs"):
                member.name = member.name[len("rootfs"):].lstrip("/") or "."
                r.addfile(member, data)
            else:
                m.addfile(member, data)
    return meta.getvalue(), root.getvalue()


def test_unified_upload_fingerprint_alias_export(client, busybox):
    with open(BUSYBOX, "rb") as f:
        data = f.read()
    assert busybox == hashlib.sha256(data).hexdigest()
    image = client.images.get(busybox)
    assert image.architecture == "x86_64" and image.properties["os"] == "busybox"
    assert {"name": "busybox", "description": "bundled busybox image"} in image.aliases
    # lookup by unique prefix
    assert client.images.get(busybox[:12]).fingerprint == busybox
    assert image.export().read() == data
    # same image again: refused (fingerprint exists)
    with pytest.raises(pylxd.exceptions.LXDAPIException):
        client.images.create(data, wait=True)


def test_split_upload_and_launch(client, tmp_path):
    meta, root = _split(tmp_path)
    image = client.images.create(root, metadata=meta, wait=True)
    try:
        assert image.fingerprint == hashlib.sha256(meta + root).hexdigest()
        inst = client.instances.create({"name": "split1", "source": {
            "type": "image", "fingerprint": image.fingerprint[:16]}}, wait=True)
        try:
            inst.start(wait=True)
            assert inst.execute(["busybox", "true"]).exit_code == 0
            assert inst.execute(["cat", "/etc/hostname"]).stdout == "split1\n"
        finally:
            inst.stop(force=True, wait=True)
            inst.delete(wait=True)
        exported = client.api.images[image.fingerprint].export.get()
        assert exported.headers["Content-Type"].startswith("multipart/form-data")
    finally:
        image.delete(wait=True)
    with pytest.raises(pylxd.exceptions.NotFound):
        client.images.get(image.fingerprint)


def test_aliases_crud(client, busybox):
    client.images.get(busybox).add_alias("bb-2", "second name")
    alias = client.api.images.aliases["bb-2"].get().json()["metadata"]
    assert alias["target"] == busybox and alias["description"] == "second name"
    client.api.images.aliases["bb-2"].post(json={"name": "bb-3"})
    assert client.images.get_by_alias("bb-3").fingerprint == busybox
    client.api.images.aliases["bb-3"].delete()
    with pytest.raises(pylxd.exceptions.NotFound):
        client.images.get_by_alias("bb-3")


def test_bad_uploads(client):
    with pytest.raises(pylxd.exceptions.LXDAPIException, match="not a valid tarball|"
                       "metadata"):
        client.images.create(b"this is not a tarball", wait=True)
    for bad in ("zz", "0" * 64):
        with pytest.raises(pylxd.exceptions.NotFound):
            client.images.get(bad)


def test_instance_from_missing_image_is_404_and_leaves_nothing(client):
    with pytest.raises(pylxd.exceptions.LXDAPIException) as exc:
        client.instances.create({"name": "noimg", "source": {"type": "image",
                                                             "alias": "nope"}}, wait=True)
    assert exc.value.response.status_code == 404
    assert not client.instances.exists("noimg")


def test_image_deleted_while_in_use_is_kept_until_last_instance_goes(client, daemon, tmp_path):
    import os
    meta, root = _split(tmp_path)
    image = client.images.create(root + b"\0" * 512, metadata=meta, wait=True)
    fp = image.fingerprint
    volume = os.path.join(daemon.lxd_dir, "storage-pools", "default", "images", fp)
    inst = client.instances.create({"name": "keeper", "source": {
        "type": "image", "fingerprint": fp}}, wait=True)
    try:
        image.delete(wait=True)
        assert os.path.isdir(volume), "an instance still clones this image volume"
        inst.start(wait=True)
        assert inst.execute(["true"]).exit_code == 0
        inst.stop(force=True, wait=True)
    finally:
        inst.delete(wait=True)
    assert not os.path.exists(volume), "the last instance frees the image volume"
