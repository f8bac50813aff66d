"""Does a daemon's disk agree with its database, and is nothing left over?

Read from outside the daemon (its SQLite file read-only, the pool directories,
/proc/self/mounts, the cgroup trees, the bridges' ports), so a test can ask it
right after a crash and a restart. `problems()` returns one line per
disagreement; an empty list means every instance, snapshot and image is whole
or gone, and no temporary file, mount, cgroup, monitor or veth is orphaned.
"""
from __future__ import annotations

import json
import os
import sqlite3

from tools import statedir
from runtime.instances import cgroups, lxc
from runtime.storage import volume_name

_TEMP_MARKS = (".tmp", ".publish-", ".restore", ".old-", ".flat")


def _listdir(path: str) -> list[str]:
    try:
        return sorted(os.listdir(path))
    except (FileNotFoundError, NotADirectoryError):
        return []


def _pool_dir(lxd_dir: str, name: str, source: str | None) -> str:
    return source if source and os.path.isdir(source) else os.path.join(
        lxd_dir, "storage-pools", name)


def _rows(lxd_dir: str) -> dict:
    db = sqlite3.connect(f"file:{os.path.join(lxd_dir, statedir.DB)}?mode=ro", uri=True)
    db.row_factory = sqlite3.Row
    try:
        return {
            "instances": [dict(r) for r in db.execute("SELECT * FROM instances")],
            "snapshots": [dict(r) for r in db.execute(
                "SELECT s.name AS snap, i.project AS project, i.name AS inst, i.pool AS pool "
                "FROM snapshots s JOIN instances i ON i.id = s.instance_id")],
            "images": {r[0] for r in db.execute("SELECT fingerprint FROM images")},
            # a pool's directory: its source, unless that is a loop file or device
            # (btrfs), then its mount point under storage-pools/
            "pools": {r[0]: _pool_dir(lxd_dir, r[0], json.loads(r[1]).get("source"))
                      for r in db.execute("SELECT name, config FROM storage_pools")},
        }
    finally:
        db.close()


def problems(lxd_dir: str, bridges: list[str] = ()) -> list[str]:
    rows = _rows(lxd_dir)
    out: list[str] = []
    running = {name for _pid, _path, name in statedir.monitors_below(lxd_dir)}
    vols: dict[str, set[str]] = {p: set() for p in rows["pools"]}
    for inst in rows["instances"]:
        vol = volume_name(inst["project"], inst["name"])
        vols.setdefault(inst["pool"], set()).add(vol)
        if "volatile.incomplete" in json.loads(inst["config"]):
            out.append(f"instance {vol}: still marked incomplete")
    snaps = {(volume_name(s["project"], s["inst"]), s["snap"]) for s in rows["snapshots"]}
    lowers: set[str] = set()
    for pool, path in rows["pools"].items():
        base = os.path.join(path, "containers")
        on_disk = set(_listdir(base))
        for vol in sorted(on_disk - vols.get(pool, set())):
            out.append(f"pool {pool}: volume {vol} on disk without a record")
        for vol in sorted(vols.get(pool, set()) - on_disk):
            out.append(f"pool {pool}: instance {vol} has no volume")
        for vol in on_disk:
            lower = os.path.join(base, vol, ".lower")
            if os.path.exists(lower):
                lowers.add(open(lower).read().strip())
        sbase = os.path.join(path, "containers-snapshots")
        for vol in _listdir(sbase):
            for snap in _listdir(os.path.join(sbase, vol)):
                if (vol, snap) not in snaps:
                    out.append(f"pool {pool}: snapshot volume {vol}/{snap} without a record")
                lower = os.path.join(sbase, vol, snap, ".lower")
                if os.path.exists(lower):
                    lowers.add(open(lower).read().strip())
        for s in rows["snapshots"]:
            vol = volume_name(s["project"], s["inst"])
            if s["pool"] == pool and not os.path.isdir(os.path.join(sbase, vol, s["snap"])):
                out.append(f"pool {pool}: snapshot {vol}/{s['snap']} has no volume")
        for fp in _listdir(os.path.join(path, "images")):
            if fp not in rows["images"] and fp not in lowers:
                out.append(f"pool {pool}: image volume {fp} nobody uses")
        for sub in ("containers", "images", "containers-snapshots"):
            for entry in _listdir(os.path.join(path, sub)):
                if any(m in entry for m in _TEMP_MARKS):
                    out.append(f"pool {pool}: temporary {sub}/{entry} left")
    for name in _listdir(os.path.join(lxd_dir, "images")):
        fp = name.removesuffix(".rootfs")
        if fp not in rows["images"]:
            out.append(f"image store: {name} without a record")
    # Mounts: only running instances' root filesystems (stopped ones are unmounted).
    roots = {os.path.join(path, "containers", vol, "rootfs")
             for pool, path in rows["pools"].items() for vol in vols.get(pool, set())
             if vol in running}
    every = {v for s in vols.values() for v in s}
    allowed = roots | set(rows["pools"].values())
    disks = os.path.join(lxd_dir, "disks") + "/"
    for target in statedir.mounts_below(lxd_dir):
        if target in allowed or (target.startswith(disks) and
                                 target[len(disks):].split("/")[0] in every):
            continue
        out.append(f"mount {target} left")
    # Containers: every monitor is an instance's; cgroups only for running ones.
    for name in sorted(running - every):
        out.append(f"container {name} runs without a record")
    for root in cgroups.hierarchies():
        for parent in lxc.daemon_cgroup_dirs(lxd_dir):
            for name in _listdir(os.path.join(root, parent)):
                if os.path.isdir(os.path.join(root, parent, name)) and name not in running:
                    out.append(f"cgroup {root}/{parent}/{name} of a stopped container left")
    # Veths on the daemon's bridges: only those of running containers.
    wanted = set()
    for inst in rows["instances"]:
        if volume_name(inst["project"], inst["name"]) in running:
            wanted |= {v for k, v in json.loads(inst["config"]).items()
                       if k.endswith(".host_name")}
    for bridge in bridges:
        for port in _listdir(f"/sys/class/net/{bridge}/brif"):
            if port not in wanted:
                out.append(f"bridge {bridge}: port {port} of no running container")
    return sorted(set(out))
