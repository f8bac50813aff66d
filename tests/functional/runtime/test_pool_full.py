"""A full storage pool: create, publish and migration fail with a clear "no space
left" error naming the pool, leave nothing half-made (no record, volume, temporary
file, mount or image), a migration's source stays untouched, and once space is
freed the same action succeeds.

The pools are small and real: a dir pool on a 64 MiB ext4 loop filesystem (what
most people run) and a btrfs pool on its own 256 MiB loop file (btrfs' smallest
here), filled with a file beside the pool's directories."""
import contextlib
import os
import uuid

import pylxd
import pytest

from tests.functional.fullfs import fill, free, small_ext4
from tests.functional.runtime import consistency
from tests.functional.runtime.harness import import_busybox
from tests.functional.runtime.remote_hosts import Hosts

if os.geteuid() != 0:
    pytest.skip("needs root (loop filesystems, real containers)", allow_module_level=True)


@pytest.fixture(scope="module")
def hosts():
    h = Hosts(2, netns=False)
    for i in range(2):
        import_busybox(h.local(i))
    yield h
    h.destroy()


@pytest.fixture(scope="module")
def fs():
    with small_ext4(64) as mnt:
        yield mnt


def _drop_pool(client, pool: str) -> None:
    for inst in client.instances.all():
        if inst.devices.get("root", {}).get("pool") == pool:
            if inst.status != "Stopped":
                inst.stop(force=True, wait=True)
            inst.delete(wait=True)
    with contextlib.suppress(pylxd.exceptions.NotFound):
        client.storage_pools.get(pool).delete()


@pytest.fixture(scope="module")
def dirpool(hosts, fs):
    """Pool 'smalldir' on daemon 1, on the small ext4."""
    c = hosts.local(1)
    c.storage_pools.create({"name": "smalldir", "driver": "dir",
                            "config": {"source": os.path.join(fs, "pool")}})
    yield os.path.join(fs, "pool")
    free(fs)
    _drop_pool(c, "smalldir")


@pytest.fixture(scope="module")
def btrfspool(hosts):
    c = hosts.local(1)
    c.storage_pools.create({"name": "smallbt", "driver": "btrfs",
                            "config": {"size": "256MiB"}})
    path = os.path.join(hosts.daemons[1].lxd_dir, "storage-pools", "smallbt")
    yield path
    free(path)
    _drop_pool(c, "smallbt")


def _root(pool: str) -> dict:
    return {"root": {"type": "disk", "path": "/", "pool": pool}}


def _create(client, name: str, pool: str) -> dict:
    env = client.api.instances.post(json={
        "name": name, "source": {"type": "image", "alias": "busybox"},
        "devices": _root(pool)}).json()
    if env["type"] == "error":
        return {"status": "Failure", "err": env["error"]}
    op = env["operation"].split("/")[-1]
    return client.api.operations[op].wait.get(params={"timeout": 120}).json()["metadata"]


def _assert_no_space(result: dict, pool: str) -> None:
    assert result["status"] == "Failure", result
    err = result["err"]
    print(f"error seen: {err}")
    assert "no space left" in err.lower(), err
    assert pool in err, err
    assert "Traceback" not in err and "Error:" not in err.split(":")[0], err


def _assert_clean(hosts, i: int, pool_path: str) -> None:
    assert consistency.problems(hosts.daemons[i].lxd_dir) == []
    for sub in ("containers", "containers-snapshots", "images"):
        left = [e for e in os.listdir(os.path.join(pool_path, sub))
                if e.endswith(".tmp") or e.startswith(".")]
        assert left == [], (sub, left)
    assert not [e for e in os.listdir(os.path.join(hosts.daemons[i].lxd_dir, "images"))
                if e.startswith(".")]


@pytest.mark.parametrize("which", ["dir", "btrfs"])
def test_create_on_full_pool(hosts, request, which):
    pool = "smalldir" if which == "dir" else "smallbt"
    path = request.getfixturevalue("dirpool" if which == "dir" else "btrfspool")
    c = hosts.local(1)
    name = f"pf-{uuid.uuid4().hex[:6]}"
    fill(path)
    try:
        _assert_no_space(_create(c, name, pool), pool)
        assert name not in [i.name for i in c.instances.all()]
        assert os.listdir(os.path.join(path, "containers")) == []
        assert os.listdir(os.path.join(path, "images")) == []   # image volume not kept
        _assert_clean(hosts, 1, path)
    finally:
        free(path)
    result = _create(c, name, pool)
    assert result["status"] == "Success", result
    inst = c.instances.get(name)
    inst.start(wait=True)
    assert inst.execute(["true"]).exit_code == 0
    inst.stop(force=True, wait=True)
    inst.delete(wait=True)


def test_create_on_full_pool_with_image_unpacked(hosts, dirpool):
    """The image volume is there already: only the instance's own layer is new."""
    c = hosts.local(1)
    keep = f"pf-{uuid.uuid4().hex[:6]}"
    assert _create(c, keep, "smalldir")["status"] == "Success"
    c.instances.get(keep).start(wait=True)
    name = f"pf-{uuid.uuid4().hex[:6]}"
    fill(dirpool)
    try:
        result = _create(c, name, "smalldir")
        if result["status"] == "Failure":
            _assert_no_space(result, "smalldir")
            assert name not in [i.name for i in c.instances.all()]
        # Writing inside a running container on a full pool fails inside it, cleanly.
        res = c.instances.get(keep).execute(["dd", "if=/dev/zero", "of=/x", "bs=1M",
                                             "count=4"])
        assert res.exit_code != 0 and "No space left" in res.stderr
        _assert_clean(hosts, 1, dirpool)
    finally:
        free(dirpool)
        for n in (name, keep):
            with contextlib.suppress(pylxd.exceptions.NotFound):
                inst = c.instances.get(n)
                if inst.status != "Stopped":
                    inst.stop(force=True, wait=True)
                inst.delete(wait=True)


def _publish(client, name: str) -> dict:
    env = client.api.images.post(json={"source": {"type": "instance", "name": name}}).json()
    op = env["operation"].split("/")[-1]
    return client.api.operations[op].wait.get(params={"timeout": 120}).json()["metadata"]


def test_publish_on_full_pool(hosts, dirpool):
    """Publishing a running instance takes a private snapshot on its pool first."""
    c = hosts.local(1)
    name = f"pf-{uuid.uuid4().hex[:6]}"
    assert _create(c, name, "smalldir")["status"] == "Success"
    inst = c.instances.get(name)
    inst.start(wait=True)
    try:
        assert inst.execute(["dd", "if=/dev/zero", "of=/data", "bs=1M",
                             "count=8"]).exit_code == 0
        images = {i.fingerprint for i in c.images.all()}
        fill(dirpool)
        try:
            _assert_no_space(_publish(c, name), "smalldir")
            assert {i.fingerprint for i in c.images.all()} == images
            snaps = os.path.join(dirpool, "containers-snapshots", name)
            assert not os.path.isdir(snaps) or os.listdir(snaps) == []
            _assert_clean(hosts, 1, dirpool)
            assert inst.execute(["true"]).exit_code == 0   # still running, unharmed
        finally:
            free(dirpool)
        result = _publish(c, name)
        assert result["status"] == "Success", result
        c.images.get(result["metadata"]["fingerprint"]).delete(wait=True)
    finally:
        inst.stop(force=True, wait=True)
        inst.delete(wait=True)


def _pull(src, dst, name: str, pool: str) -> dict:
    """Copy name from src into dst's pool (the target pulls); the target's result."""
    env = src.api.instances[name].post(json={"migration": True}).json()
    op = src.api.operations[env["operation"].split("/")[-1]]._api_endpoint
    env = dst.api.instances.post(json={"name": name, "devices": _root(pool), "source": {
        "type": "migration", "mode": "pull", "operation": op,
        "certificate": src.host_info["environment"]["certificate"],
        "secrets": env["metadata"]["metadata"]}}).json()
    tid = env["operation"].split("/")[-1]
    return dst.api.operations[tid].wait.get(params={"timeout": 120}).json()["metadata"]


def test_migration_into_full_pool(hosts, dirpool):
    a, b = hosts.https(0), hosts.https(1)
    name = f"pf-{uuid.uuid4().hex[:6]}"
    src = a.instances.create({"name": name, "source": {"type": "image", "alias": "busybox"}},
                             wait=True)
    try:
        src.start(wait=True)
        assert src.execute(["dd", "if=/dev/urandom", "of=/data", "bs=1M",
                            "count=16"]).exit_code == 0
        want = src.execute(["md5sum", "/data"]).stdout.split()[0]
        src.stop(force=True, wait=True)
        fill(dirpool)
        try:
            _assert_no_space(_pull(a, b, name, "smalldir"), "smalldir")
            assert name not in [i.name for i in b.instances.all()]
            _assert_clean(hosts, 1, dirpool)
            assert consistency.problems(hosts.daemons[0].lxd_dir) == []
            # The source is untouched: still there, stopped, its data whole.
            again = a.instances.get(name)
            assert again.status == "Stopped"
            again.start(wait=True)
            assert again.execute(["md5sum", "/data"]).stdout.split()[0] == want
            again.stop(force=True, wait=True)
        finally:
            free(dirpool)
        result = _pull(a, b, name, "smalldir")
        assert result["status"] == "Success", result
        copy = b.instances.get(name)
        assert copy.devices["root"]["pool"] == "smalldir"
        copy.start(wait=True)
        assert copy.execute(["md5sum", "/data"]).stdout.split()[0] == want
        copy.stop(force=True, wait=True)
        copy.delete(wait=True)
    finally:
        for c in (hosts.local(0), hosts.local(1)):
            with contextlib.suppress(pylxd.exceptions.NotFound):
                inst = c.instances.get(name)
                if inst.status != "Stopped":
                    inst.stop(force=True, wait=True)
                inst.delete(wait=True)
