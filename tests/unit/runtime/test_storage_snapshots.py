"""Pure logic behind snapshots, copy and publish: time and expiry parsing, source
names, compression choice, owner maps and packing."""
import asyncio
import datetime
import hashlib
import os
import tarfile

import pytest

from runtime.base import timefmt
from runtime.base.idmap import IdMap
from runtime.errors import BadRequest
from runtime.instances import config, publish, snapshots
from runtime.storage.btrfs import is_subvolume
from runtime.storage.dir import DirPool


def test_parse_time_forms():
    assert timefmt.parse_time(None) == 0.0
    assert timefmt.parse_time("") == 0.0
    assert timefmt.parse_time("0001-01-01T00:00:00Z") == 0.0
    ts = timefmt.parse_time("2030-01-02T03:04:05Z")
    assert ts == datetime.datetime(2030, 1, 2, 3, 4, 5, tzinfo=datetime.UTC).timestamp()
    # Go clients send nanoseconds and offsets
    assert timefmt.parse_time("2030-01-02T03:04:05.123456789Z") == pytest.approx(ts + 0.123456)
    assert timefmt.parse_time("2030-01-02T05:04:05+02:00") == ts
    for bad in ("tomorrow", 12, "2030-13-01T00:00:00Z"):
        with pytest.raises(BadRequest, match="expires_at"):
            timefmt.parse_time(bad)


def test_parse_expiry():
    assert snapshots.parse_expiry(None) == 0
    assert snapshots.parse_expiry("30M") == 1800
    assert snapshots.parse_expiry("1d 2H") == 86400 + 7200
    assert snapshots.parse_expiry("1w") == 7 * 86400
    with pytest.raises(BadRequest, match="snapshots.expiry"):
        snapshots.parse_expiry("3 days")


def test_render_time_zero_is_lxd_zero():
    assert timefmt.render_time(0) == "0001-01-01T00:00:00Z"
    assert timefmt.render_time(86400).startswith("1970-01-02T00:00:00")


def test_split_source():
    assert config.split_source("c1") == ("c1", None)
    assert config.split_source("c1/snap0") == ("c1", "snap0")
    for bad in (None, "", 3):
        with pytest.raises(BadRequest):
            config.split_source(bad)


def test_compressor_choice(monkeypatch):
    monkeypatch.setattr(publish.shutil, "which", lambda name: f"/usr/bin/{name}"
                        if name != "pigz" else None)
    assert publish.compressor(None) == ["gzip", "-1", "-c"]
    assert publish.compressor(None, "zstd")[0] == "zstd"
    assert publish.compressor("xz", "zstd")[0] == "xz"
    assert publish.compressor("none") is None
    with pytest.raises(BadRequest, match="compression_algorithm"):
        publish.compressor("rar")


def test_new_metadata_merges_properties(tmp_path):
    (tmp_path / "metadata.yaml").write_text(
        "architecture: x86_64\ncreation_date: 1\nexpiry_date: 5\n"
        "properties:\n  os: busybox\n  release: '1'\n")
    meta = publish.new_metadata(str(tmp_path), "x86_64", {"release": "2", "extra": 3}, 0)
    assert meta["properties"] == {"os": "busybox", "release": "2", "extra": "3"}
    assert meta["creation_date"] > 1 and "expiry_date" not in meta
    meta = publish.new_metadata(str(tmp_path / "missing"), "aarch64", {}, 1234.5)
    assert meta == {"architecture": "aarch64", "creation_date": meta["creation_date"],
                    "expiry_date": 1234, "properties": {}}


def _tree(root):
    os.makedirs(os.path.join(root, "rootfs", "etc"))
    with open(os.path.join(root, "rootfs", "etc", "hostname"), "w") as f:
        f.write("x\n")
    os.symlink("hostname", os.path.join(root, "rootfs", "etc", "link"))
    os.makedirs(os.path.join(root, "templates"))
    with open(os.path.join(root, "templates", "t.tpl"), "w") as f:
        f.write("{{ container.name }}\n")


def test_owner_maps_shift_back_to_container_ids(tmp_path):
    _tree(str(tmp_path))
    uid = os.getuid()
    if uid == 0:
        os.lchown(tmp_path / "rootfs" / "etc" / "hostname", 1000005, 1000007)
        idmap = IdMap(1000000, 65536)
        umap, gmap = publish.owner_maps(str(tmp_path / "rootfs"), idmap)
        assert "+1000005 +5" in umap.splitlines() and "+1000007 +7" in gmap.splitlines()
        assert "+0 +65534" in umap.splitlines()  # host root is not in the container's map
    else:
        umap, _ = publish.owner_maps(str(tmp_path / "rootfs"), IdMap(uid, 65536))
        assert umap.splitlines() == [f"+{uid} +0"]


def test_pack_writes_a_unified_tarball(tmp_path):
    vol = tmp_path / "vol"
    _tree(str(vol))
    uid = os.getuid()
    idmap = IdMap(uid, 65536) if uid else IdMap(0, 0)
    dest = tmp_path / "image.tar.gz"
    sha = asyncio.run(publish.pack(str(vol), str(vol / "rootfs"), idmap,
                                   {"architecture": "x86_64", "properties": {}},
                                   str(dest), ["gzip", "-1", "-c"]))
    assert sha == hashlib.sha256(dest.read_bytes()).hexdigest()
    with tarfile.open(dest) as tar:
        names = tar.getnames()
        assert {"metadata.yaml", "templates/t.tpl", "rootfs/etc/hostname",
                "rootfs/etc/link"} <= set(names)
        assert all(m.uid == 0 and m.gid == 0 for m in tar.getmembers()
                   if m.name.startswith("rootfs"))
        assert tar.getmember("rootfs/etc/link").linkname == "hostname"


def test_dir_pool_states_quota_not_enforced(tmp_path):
    pool = DirPool("p", {}, str(tmp_path))
    assert pool.quota_supported() is False
    state = pool.state()
    assert state["quota_enforced"] is False and "not enforce" in state["quota_reason"]
    assert asyncio.run(pool.set_size("v", 1 << 30)) is False


def test_is_subvolume_false_off_btrfs(tmp_path):
    assert is_subvolume(str(tmp_path)) in (False, True)  # True only if tmp is a btrfs root
    assert is_subvolume(str(tmp_path / "missing")) is False


def test_schedule_parsing_and_matching():
    at = datetime.datetime(2026, 11, 27, 6, 0)  # a Friday
    assert snapshots.parse_schedule("") == []
    assert snapshots.schedule_due(snapshots.parse_schedule("@hourly"), at)
    assert not snapshots.schedule_due(snapshots.parse_schedule("@hourly"),
                                      at.replace(minute=1))
    assert snapshots.schedule_due(snapshots.parse_schedule("@daily, @hourly"), at)
    assert not snapshots.schedule_due(snapshots.parse_schedule("@daily"), at)
    assert snapshots.schedule_due(snapshots.parse_schedule("*/15 6-8 * * 1-5"), at)
    assert not snapshots.schedule_due(snapshots.parse_schedule("*/15 6-8 * * 1-4"), at)
    # day of month and weekday both set: either matches (cron's rule)
    assert snapshots.schedule_due(snapshots.parse_schedule("0 6 1 * 5"), at)
    assert snapshots.schedule_due(snapshots.parse_schedule("0 6 27 * 0"), at)
    assert snapshots.schedule_due(snapshots.parse_schedule("0 6 * * 7"),
                                  datetime.datetime(2026, 11, 29, 6, 0))  # Sunday as 7
    for bad in ("* * *", "61 * * * *", "@fortnightly", "a b c d e"):
        with pytest.raises(BadRequest, match="snapshots.schedule"):
            snapshots.parse_schedule(bad)
