"""The pool layer's bookkeeping on a real SQLite database and a dir pool in a
temporary directory (no containers): the repositories of the tables it owns, and
the daemon's set of pools (default pool, create, delete, refused drivers)."""
import asyncio
import os
import sqlite3

import pytest

from runtime.db import Database
from runtime.db.instances import Instances
from runtime.db.snapshots import Snapshots
from runtime.db.storage_pools import StoragePools
from runtime.db.storage_volumes import StorageVolumes
from runtime.errors import BadRequest, NotFound
from runtime.events import EventBus
from runtime.storage.pools import Pools


@pytest.fixture
def db(tmp_path):
    database = Database(str(tmp_path / "runtime.db"))
    yield database
    database.close()


def test_instance_and_snapshot_rows(db):
    rows, snaps = Instances(db), Snapshots(db)
    iid = rows.create(project="p", name="c1", architecture="x86_64", created_at=1.0,
                      pool="default")
    rows.create(project="default", name="c2", architecture="x86_64", created_at=1.0,
                pool="other")
    with pytest.raises(sqlite3.IntegrityError):
        rows.create(project="p", name="c1", architecture="x86_64", created_at=2.0)
    assert rows.get("p", "c1")["id"] == iid and rows.exists("p", "c1")
    assert [r["name"] for r in rows.list()] == ["c1", "c2"]
    assert [r["name"] for r in rows.list(pool="other")] == ["c2"]
    assert rows.names("p") == ["c1"]
    rows.update(iid, config={"limits.cpu": "2"})
    assert rows.get_by_id(iid)["config"] == {"limits.cpu": "2"}
    sid = snaps.create(iid, "s1", created_at=2.0)
    snaps.create(iid, "s0", created_at=1.0)
    assert [s["name"] for s in snaps.list(iid)] == ["s0", "s1"]      # oldest first
    assert [s["name"] for s in snaps.list(iid, order="id")] == ["s1", "s0"]
    snaps.update(sid, name="renamed")
    assert snaps.get(iid, "renamed")["id"] == sid
    rows.delete(iid)                    # snapshots go with their instance (cascade)
    assert snaps.list(iid) == [] and rows.get("p", "c1") is None


def test_volume_and_pool_rows(db):
    vols, pools = StorageVolumes(db), StoragePools(db)
    pools.create("p1", "dir", "", {})
    assert pools.exists("p1") and pools.get("p1")["driver"] == "dir"
    vols.create("p1", "default", "custom", "v", config={}, created_at=1.0)
    vols.create("p1", "default", "custom-snapshot", "v/s", config={}, created_at=2.0)
    row = vols.get("p1", "default", "custom", "v")
    vols.update(row, name="w")
    assert [r["name"] for r in vols.list("p1", vtype="custom")] == ["w"]
    assert [r["name"] for r in vols.list(project="default")] == ["v/s", "w"]
    vols.delete(vols.get("p1", "default", "custom-snapshot", "v/s"))
    assert vols.list(vtype="custom-snapshot") == []
    pools.delete("p1")
    assert pools.list() == []


def test_pools_default_create_delete(db, tmp_path):
    lxd_dir = str(tmp_path / "lxd")
    os.makedirs(lxd_dir)
    rows = StoragePools(db)
    pools = Pools(rows, lxd_dir, EventBus())

    async def scenario():
        await pools.open()
        assert [r["name"] for r in rows.list()] == ["default"]
        default = pools.get("default")
        assert default.driver_name == "dir" and "default" in pools
        assert os.stat(os.path.join(lxd_dir, "storage-pools", "default",
                                    "images")).st_mode & 0o777 == 0o700
        with pytest.raises(NotFound):
            pools.get("nope")
        with pytest.raises(BadRequest):
            await pools.create("bad", "zfs", {}, "")
        assert not rows.exists("bad") and "bad" not in pools
        await pools.create("second", "dir", {}, "a second pool")
        assert rows.get("second")["description"] == "a second pool"
        assert sorted(name for name, _ in pools.items()) == ["default", "second"]
        await pools.delete("second")
        assert not rows.exists("second") and "second" not in pools
        assert not os.path.exists(os.path.join(lxd_dir, "storage-pools", "second"))
    asyncio.run(scenario())
