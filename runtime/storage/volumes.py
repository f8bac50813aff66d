"""Custom storage volumes: the pool layer over the drivers (rows, rules, snapshots).

A custom volume is a directory (a subvolume on btrfs) under the pool's `custom/`,
owned by the default id map's root so an unprivileged container sees it as its
own root's. Instances use it as a `disk` device (`pool` + `source` + `path`);
while any instance or profile does, it can't be renamed or deleted. A `size` is
enforced where the driver can (btrfs qgroups); elsewhere it is stored, the
volume's state says it is not enforced and the daemon logs a warning.

Snapshots are rows of type "custom-snapshot" named "<volume>/<snapshot>" (as LXD
names them), stored by the driver (a read-only subvolume on btrfs). The API
(`runtime.api.volumes`) parses and renders; everything that touches a row or a
driver is here, and the drivers see only generic volume operations.
"""
from __future__ import annotations

import logging
import os
import re
import time

from runtime import proc
from runtime.base.values import parse_size, validate_snapshot_name
from runtime.errors import BadRequest, Conflict, NotFound
from runtime.storage.base import PoolDriver, volume_name

LOG = logging.getLogger(__name__)
SNAP_TYPE = "custom-snapshot"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,62}$")


def check_name(name: object, vproj: str) -> str:
    """On disk a volume is `<project>_<name>`, but plain `<name>` in the default
    project: there a `_` could make it another project's (project names have none)."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise BadRequest(f"Invalid storage volume name {name!r}")
    if vproj == "default" and "_" in name:
        raise BadRequest(f"Invalid storage volume name {name!r}: no '_' in the default "
                         "project (it would collide with another project's volumes)")
    return name


def disk_name(row: dict) -> str:
    """The driver's name of a custom volume row."""
    return volume_name(row["project"], row["name"])


def snap_name(srow: dict) -> str:
    """The snapshot part of a snapshot row's `<volume>/<snapshot>` name."""
    return srow["name"].split("/", 1)[1]


class CustomVolumes:
    def __init__(self, daemon):
        self.d = daemon

    # Rows --------------------------------------------------------------------------
    def get(self, pool: str, project: str, name: str) -> dict:
        """The row of a volume the project sees (features.storage.volumes)."""
        row = self.d.db.get("storage_volumes", pool=pool, project=self.d.volume_project(project),
                            type="custom", name=name)
        if row is None:
            raise NotFound(f"Storage volume {name!r} not found in pool {pool!r}")
        return row

    def rows(self, pool: str, project: str) -> list[dict]:
        return self.d.db.select("storage_volumes", {"pool": pool,
                                                    "project": self.d.volume_project(project),
                                                    "type": "custom"}, order="name")

    def used_by(self, pool: str, vproj: str, name: str) -> list[str]:
        """Instances and profiles with a disk device on this volume."""
        d = self.d
        out = []
        for inst in d.instances.list(None):
            if d.volume_project(inst.project) != vproj:
                continue
            for dev in inst.expanded_devices.values():
                if dev.get("type") == "disk" and dev.get("pool") == pool and \
                        dev.get("source") == name and dev.get("path") != "/":
                    out.append(inst.url)
                    break
        for prof in d.profile_rows.list():
            if d.volume_project(prof["project"]) != vproj:
                continue
            if any(dev.get("type") == "disk" and dev.get("pool") == pool and
                   dev.get("source") == name for dev in prof["devices"].values()):
                suffix = "" if prof["project"] == "default" else f"?project={prof['project']}"
                out.append(f"/1.0/profiles/{prof['name']}{suffix}")
        return sorted(out)

    def _not_in_use(self, pool: PoolDriver, row: dict) -> None:
        used = self.used_by(pool.name, row["project"], row["name"])
        if used:
            raise BadRequest(f"Storage volume {row['name']!r} is in use by {', '.join(used)}")

    # Volumes -----------------------------------------------------------------------
    async def create(self, pool: PoolDriver, project: str, name: object, description: str,
                     config: dict, source: dict | None = None) -> tuple[str, bool]:
        """A new volume (empty, or a copy of `source`); its name and whether its size
        is enforced."""
        d = self.d
        vproj = d.volume_project(project)
        name = check_name(name, vproj)
        if d.db.get("storage_volumes", pool=pool.name, project=vproj, type="custom", name=name):
            raise Conflict(f"Storage volume {name!r} already exists in pool {pool.name!r}")
        if config.get("size"):
            parse_size(config["size"])
        src_path = None
        if source is not None:
            src_pool = d.pool(source["pool"])
            src_row = self.get(src_pool.name, source["project"], source.get("name"))
            src_path = src_pool.custom_path(disk_name(src_row))
        disk = volume_name(vproj, name)
        path = pool.custom_path(disk)
        if os.path.lexists(path):
            raise Conflict(f"Storage volume path {path} already exists on disk")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        try:
            await pool.create_custom(disk, d.default_idmap)
            os.chmod(path, 0o711)
            if src_path:
                await proc.run(["rsync", "-aHAX", "--numeric-ids", src_path + "/", path + "/"])
            enforced = await self._apply_size(pool, disk, config.get("size"), name)
            d.db.insert("storage_volumes", pool=pool.name, project=vproj, type="custom",
                        name=name, description=description, config=config,
                        created_at=time.time())
        except BaseException:
            await pool.delete_custom(disk)
            raise
        LOG.info("storage volume %s/%s created (size %s%s)", pool.name, name,
                 config.get("size") or "unlimited",
                 "" if enforced or not config.get("size") else ", not enforced")
        return name, enforced

    async def _apply_size(self, pool: PoolDriver, disk: str, size: str | None,
                          name: str) -> bool:
        enforced = await pool.set_custom_size(disk, parse_size(size) if size else None)
        if size and not enforced:
            LOG.warning("storage volume %s: size %s is not enforced by pool %s (driver %s)",
                        name, size, pool.name, pool.driver)
        return enforced

    async def usage(self, pool: PoolDriver, row: dict) -> dict:
        size = row["config"].get("size")
        return {"used": await pool.custom_usage(disk_name(row)),
                "total": parse_size(size) if size else -1,
                "quota_enforced": pool.quota_supported()}

    async def update(self, pool: PoolDriver, row: dict, config: dict | None,
                     description: str | None) -> None:
        values: dict = {}
        if config is not None:
            if config.get("size") != row["config"].get("size"):
                if config.get("size"):
                    parse_size(config["size"])
                await self._apply_size(pool, disk_name(row), config.get("size"), row["name"])
            values["config"] = config
        if description is not None:
            values["description"] = description
        if values:
            self.d.db.update("storage_volumes", self._key(pool, row), **values)

    async def rename(self, pool: PoolDriver, row: dict, new: object) -> str:
        d = self.d
        new = check_name(new, row["project"])
        self._not_in_use(pool, row)
        if d.db.get("storage_volumes", pool=pool.name, project=row["project"], type="custom",
                    name=new):
            raise Conflict(f"Storage volume {new!r} already exists")
        renamed = {**row, "name": new}
        os.rename(pool.custom_path(disk_name(row)), pool.custom_path(disk_name(renamed)))
        old_snaps = pool.custom_snapshot_path(disk_name(row))
        if os.path.isdir(old_snaps):
            os.rename(old_snaps, pool.custom_snapshot_path(disk_name(renamed)))
        for srow in self.snapshots(pool, row):
            d.db.update("storage_volumes", self._key(pool, srow), name=f"{new}/{snap_name(srow)}")
        d.db.update("storage_volumes", self._key(pool, row), name=new)
        return new

    async def delete(self, pool: PoolDriver, row: dict) -> None:
        self._not_in_use(pool, row)
        for srow in self.snapshots(pool, row):
            await pool.delete_custom_snapshot(disk_name(row), snap_name(srow))
            self.d.db.delete("storage_volumes", **self._key(pool, srow))
        await pool.remove_dir(pool.custom_snapshot_path(disk_name(row)))
        await pool.delete_custom(disk_name(row))
        self.d.db.delete("storage_volumes", **self._key(pool, row))

    @staticmethod
    def _key(pool: PoolDriver, row: dict) -> dict:
        return {"pool": pool.name, "project": row["project"], "type": row["type"],
                "name": row["name"]}

    # Snapshots ---------------------------------------------------------------------
    def snapshots(self, pool: PoolDriver, row: dict) -> list[dict]:
        rows = self.d.db.select("storage_volumes", {"pool": pool.name, "project": row["project"],
                                                    "type": SNAP_TYPE}, order="created_at")
        return [r for r in rows if r["name"].startswith(row["name"] + "/")]

    def snapshot(self, pool: PoolDriver, row: dict, snap: str) -> dict:
        srow = self.d.db.get("storage_volumes", pool=pool.name, project=row["project"],
                             type=SNAP_TYPE, name=f"{row['name']}/{snap}")
        if srow is None:
            raise NotFound(f"Snapshot {snap!r} of storage volume {row['name']!r} not found")
        return srow

    def next_snapshot_name(self, pool: PoolDriver, row: dict, snap: str | None) -> str:
        """The requested name when free, else LXD's first free `snap<n>`."""
        existing = {snap_name(r) for r in self.snapshots(pool, row)}
        if not snap:
            n = 0
            while f"snap{n}" in existing:
                n += 1
            snap = f"snap{n}"
        validate_snapshot_name(snap)
        if snap in existing:
            raise Conflict(f"Snapshot {snap!r} of storage volume {row['name']!r} already exists")
        return snap

    async def create_snapshot(self, pool: PoolDriver, row: dict, snap: str, description: str,
                              expires: float) -> None:
        os.makedirs(pool.custom_snapshot_path(disk_name(row)), exist_ok=True)
        try:
            await pool.snapshot_custom(disk_name(row), snap)
            self.d.db.insert("storage_volumes", pool=pool.name, project=row["project"],
                             type=SNAP_TYPE, name=f"{row['name']}/{snap}",
                             description=description,
                             config={**row["config"], "_expires_at": str(expires)},
                             created_at=time.time())
        except BaseException:
            await pool.delete_custom_snapshot(disk_name(row), snap)
            raise

    def update_snapshot(self, pool: PoolDriver, srow: dict, expires: float | None,
                        description: str | None) -> None:
        config = dict(srow["config"])
        if expires is not None:
            config["_expires_at"] = str(expires)
        values: dict = {"config": config}
        if description is not None:
            values["description"] = description
        self.d.db.update("storage_volumes", self._key(pool, srow), **values)

    def rename_snapshot(self, pool: PoolDriver, row: dict, srow: dict, new: object) -> None:
        new = validate_snapshot_name(new)
        if self.d.db.get("storage_volumes", pool=pool.name, project=row["project"],
                         type=SNAP_TYPE, name=f"{row['name']}/{new}"):
            raise Conflict(f"Snapshot {new!r} already exists")
        os.rename(pool.custom_snapshot_path(disk_name(row), snap_name(srow)),
                  pool.custom_snapshot_path(disk_name(row), new))
        self.d.db.update("storage_volumes", self._key(pool, srow), name=f"{row['name']}/{new}")

    async def delete_snapshot(self, pool: PoolDriver, row: dict, srow: dict) -> None:
        await pool.delete_custom_snapshot(disk_name(row), snap_name(srow))
        self.d.db.delete("storage_volumes", **self._key(pool, srow))

    async def restore(self, pool: PoolDriver, row: dict, snap: str) -> None:
        self.snapshot(pool, row, snap)
        await pool.restore_custom(disk_name(row), snap)

    async def expire_snapshots(self, now: float) -> float:
        """Delete snapshots past expires_at; seconds until the next one."""
        d = self.d
        nxt = float("inf")
        for srow in d.db.select("storage_volumes", {"type": SNAP_TYPE}):
            when = float(srow["config"].get("_expires_at") or 0)
            if not when:
                continue
            if when > now:
                nxt = min(nxt, when - now)
                continue
            vol = srow["name"].partition("/")[0]
            row = d.db.get("storage_volumes", pool=srow["pool"], project=srow["project"],
                           type="custom", name=vol)
            if row is not None and srow["pool"] in d.pools:
                await d.pools[srow["pool"]].delete_custom_snapshot(disk_name(row),
                                                                   snap_name(srow))
            d.db.delete("storage_volumes", pool=srow["pool"], project=srow["project"],
                        type=SNAP_TYPE, name=srow["name"])
            LOG.info("storage volume snapshot %s/%s expired", srow["pool"], srow["name"])
        return nxt
