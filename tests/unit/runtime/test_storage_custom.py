"""The drivers' generic custom-volume operations, on a dir pool in a temporary
directory (no containers, no loop devices): what the pool layer relies on."""
import asyncio
import os

from runtime.base.idmap import IdMap
from runtime.storage.dir import DirPool


def test_dir_custom_volume_life(tmp_path):
    pool = DirPool("p", {}, str(tmp_path))

    async def scenario():
        await pool.create()
        await pool.create_custom("v1", IdMap(0, 0))
        path = pool.custom_path("v1")
        with open(os.path.join(path, "f"), "w") as f:
            f.write("one")
        assert not await pool.set_custom_size("v1", 2**20)    # dir: not enforced
        assert not pool.quota_supported()
        assert await pool.custom_usage("v1") > 0
        os.makedirs(pool.custom_snapshot_path("v1"), exist_ok=True)
        await pool.snapshot_custom("v1", "s1")
        with open(os.path.join(path, "f"), "w") as f:
            f.write("two")
        os.unlink(os.path.join(path, "f"))
        with open(os.path.join(path, "g"), "w") as f:
            f.write("new")
        await pool.restore_custom("v1", "s1")
        assert sorted(os.listdir(path)) == ["f"]
        with open(os.path.join(path, "f")) as f:
            assert f.read() == "one"
        await pool.delete_custom_snapshot("v1", "s1")
        assert not os.path.exists(pool.custom_snapshot_path("v1", "s1"))
        await pool.delete_custom("v1")
        assert not os.path.exists(path)
    asyncio.run(scenario())


def test_ready_images_lists_only_unpacked_ones(tmp_path):
    pool = DirPool("p", {}, str(tmp_path))
    os.makedirs(os.path.join(pool.image_path("aaa"), "rootfs"))
    os.makedirs(pool.image_path("bbb.tmp"))
    assert list(pool.ready_images()) == ["aaa"]


def test_custom_volume_names():
    import pytest

    from runtime.errors import BadRequest
    from runtime.storage.volumes import check_name, disk_name, snap_name
    assert check_name("data_1", "p1") == "data_1"
    for bad, proj in (("a_b", "default"), ("../x", "p1"), ("", "p1"), (5, "p1")):
        with pytest.raises(BadRequest):
            check_name(bad, proj)
    assert disk_name({"project": "default", "name": "v"}) == "v"
    assert disk_name({"project": "p1", "name": "v"}) == "p1_v"
    assert snap_name({"name": "v/snap0"}) == "snap0"


def test_dir_sweeps_only_its_restore_leftovers(tmp_path):
    pool = DirPool("p", {}, str(tmp_path))
    base = os.path.join(pool.path, "containers")
    for entry in ("c1", "c1.restore", "c1.old-0a1b2c3d", "p1_c2"):
        os.makedirs(os.path.join(base, entry))
    asyncio.run(pool.sweep_restore_leftovers())
    assert sorted(os.listdir(base)) == ["c1", "p1_c2"]
    assert pool.layered and not pool.atomic_snapshots
