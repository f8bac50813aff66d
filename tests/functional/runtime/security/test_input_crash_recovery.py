"""What a daemon killed mid-way leaves behind is finished or removed when it starts.

A restore is prepared, swapped in one renameat2(RENAME_EXCHANGE) and recorded;
a crash after the swap rolls forward (volume and record of the snapshot), a
crash before it rolls back (the prepared copy goes). The crash points are made
here by running the pool driver's own steps against a stopped daemon's state
directory, then starting the daemon. Upload and publish leftovers and
half-unpacked images are swept; pools made with older modes get LXD's.
"""
from __future__ import annotations

import asyncio
import json
import os
import sqlite3

import pytest

from runtime.storage.dir import DirPool

DB = os.path.join("database", "runtime.db")


def _set_volatile(lxd_dir: str, name: str, key: str, value: str) -> None:
    with sqlite3.connect(os.path.join(lxd_dir, DB)) as conn:
        row = conn.execute("SELECT config FROM instances WHERE name = ?", (name,)).fetchone()
        config = json.loads(row[0])
        config[key] = value
        conn.execute("UPDATE instances SET config = ? WHERE name = ?",
                     (json.dumps(config), name))


@pytest.fixture
def restorable(daemon, client, make_instance):
    """A stopped instance whose snapshot s1 has content A and user.v=1; now B and 2."""
    inst = make_instance(config={"user.v": "1"})
    inst.files.put("/root/state", b"A")
    inst.stop(force=True, wait=True)
    inst.snapshots.create("s1", wait=True)
    inst.start(wait=True)
    inst.files.put("/root/state", b"B")
    inst.stop(force=True, wait=True)
    inst.config["user.v"] = "2"
    inst.save(wait=True)
    return inst


@pytest.mark.parametrize("crash", ["after-swap", "before-swap"])
def test_input_restore_recovered_at_start(daemon, client, restorable, crash):
    name = restorable.name
    pool = DirPool("default", {}, daemon.lxd_dir)
    daemon.stop()
    try:
        token = asyncio.run(pool.prepare_restore(name, "s1"))
        _set_volatile(daemon.lxd_dir, name, "volatile.restore", f"{token}/s1")
        if crash == "after-swap":
            asyncio.run(pool.commit_restore(name))
    finally:
        daemon.start()
    inst = client.instances.get(name)
    want = ("1", b"A") if crash == "after-swap" else ("2", b"B")
    assert inst.config.get("user.v") == want[0]
    assert "volatile.restore" not in inst.config
    assert inst.files.get("/root/state") == want[1]
    assert not os.path.lexists(pool.restore_staging(name))
    inst.start(wait=True)
    assert inst.execute(["cat", "/root/state"]).stdout == want[1].decode()


def test_input_restore_normal_path(client, restorable):
    restorable.restore_snapshot("s1", wait=True)
    restorable.sync()
    assert restorable.config.get("user.v") == "1"
    assert restorable.files.get("/root/state") == b"A"
    assert "volatile.restore" not in restorable.config


def test_input_leftovers_swept_and_modes_fixed_at_start(daemon, client, busybox):
    images = os.path.join(daemon.lxd_dir, "images")
    pool_images = os.path.join(daemon.lxd_dir, "storage-pools", "default", "images")
    daemon.stop()
    try:
        leftovers = [os.path.join(images, ".upload-0123456789ab"),
                     os.path.join(images, ".upload-ba9876543210.rootfs")]
        for path in leftovers:
            with open(path, "wb") as f:
                f.write(b"x" * 1024)
        os.makedirs(os.path.join(images, ".publish-abc", "rootfs"))
        half = os.path.join(pool_images, "f" * 64 + ".tmp")
        os.makedirs(os.path.join(half, "rootfs", "etc"))
        os.chmod(pool_images, 0o755)
    finally:
        daemon.start()
    assert not any(os.path.lexists(p) for p in leftovers)
    assert not os.path.lexists(os.path.join(images, ".publish-abc"))
    assert not os.path.lexists(half)
    assert os.stat(pool_images).st_mode & 0o777 == 0o700
    snaps = os.path.join(daemon.lxd_dir, "storage-pools", "default", "containers-snapshots")
    assert os.stat(snaps).st_mode & 0o777 == 0o711
