"""Start-up reconciliation of disk with the database after the daemon died (kill -9,
power loss) in the middle of an action.

Every action writes in an order that leaves at most one kind of leftover, and this
module removes exactly those, nothing a user made:
- an image file moved into the store whose database row was never written
  (`ImageStore.add` makes the file durable first): removed;
- an unpacked image volume no image and no instance uses any more: removed;
- a snapshot volume whose row was never written (`Snapshots.create` copies the
  volume first) or that belongs to no instance: removed; a snapshot row whose volume
  is gone (a delete that removed the volume first) is dropped;
- an instance the daemon froze for a consistent volume copy (snapshot, copy,
  publish) and never thawed: thawed; one a user froze (`volatile.last_state.power`
  FROZEN) stays frozen;
- cgroups of containers that are not running: removed;
- root filesystems of stopped instances: unmounted (only running ones are mounted).
Instances still being made are purged by `InstanceManager.reconcile`, unfinished
restores rolled forward or back by `Snapshots.restore_leftovers`, and temporary
upload files and publish snapshots by `ImageStore.sweep` and
`Snapshots.cleanup_leftovers`.
"""
from __future__ import annotations

import logging
import os

from runtime.instances import cgroups, lxc
from runtime.storage import volume_name

LOG = logging.getLogger(__name__)
_HEX = set("0123456789abcdef")


def _listdir(path: str) -> list[str]:
    try:
        return sorted(os.listdir(path))
    except (FileNotFoundError, NotADirectoryError):
        return []


async def reconcile(d) -> None:
    """Run once at start, after instances were adopted (their pids are known)."""
    for step in (_image_files, _image_volumes, _snapshots, _thaw, _cgroups, _unmount_stopped):
        try:
            await step(d)
        except Exception:  # noqa: BLE001 - one failed check must not stop the daemon
            LOG.exception("start-up reconciliation step %s failed", step.__name__)


async def _image_files(d) -> None:
    known = {r["fingerprint"] for r in d.image_rows.all()}
    for name in _listdir(d.paths.images):
        fp = name[:-len(".rootfs")] if name.endswith(".rootfs") else name
        if len(fp) == 64 and set(fp) <= _HEX and fp not in known:
            os.unlink(os.path.join(d.paths.images, name))
            LOG.warning("removed image file %s: its upload never completed", name)


async def _image_volumes(d) -> None:
    for pool in d.pools.values():
        await d.images.collect(pool)


async def _snapshots(d) -> None:
    wanted: dict[tuple[str, str], set[str]] = {}
    for inst in d.instances.list(None):
        rows = d.db.select("snapshots", {"instance_id": inst.id})
        pool = d.pool(inst.pool)
        vol = volume_name(inst.project, inst.name)
        names = set()
        for row in rows:
            if os.path.isdir(pool.snapshot_path(vol, row["name"])):
                names.add(row["name"])
            else:
                d.db.delete("snapshots", id=row["id"])
                LOG.warning("instance %s/%s: snapshot %s had no volume left (a delete "
                            "was interrupted): record dropped", inst.project, inst.name,
                            row["name"])
        wanted[(inst.pool, vol)] = names
    for pool in d.pools.values():
        base = os.path.join(pool.path, "containers-snapshots")
        for vol in _listdir(base):
            keep = wanted.get((pool.name, vol))
            for snap in _listdir(os.path.join(base, vol)):
                if snap.startswith(".publish-"):
                    continue  # Snapshots.cleanup_leftovers
                if keep is None or snap not in keep:
                    await pool.delete_snapshot(vol, snap)
                    LOG.warning("removed snapshot volume %s/%s: no record (its creation "
                                "was interrupted)", vol, snap)
            if keep is None and not _listdir(os.path.join(base, vol)):
                os.rmdir(os.path.join(base, vol))


async def _thaw(d) -> None:
    mgr = d.instances
    for inst in mgr.list(None):
        if mgr.pid(inst) and mgr.status(inst) == "Frozen" and \
                inst.config.get("volatile.last_state.power") != "FROZEN":
            await mgr.lxc.unfreeze(mgr.paths(inst).name, mgr.cgroup(inst))
            LOG.warning("instance %s/%s thawed: the daemon froze it for a volume copy "
                        "and died", inst.project, inst.name)


async def _cgroups(d) -> None:
    running = {mgr_name for mgr_name in _running_names(d)}
    for parent in lxc.daemon_cgroup_dirs(d.paths.lxd_dir):
        for root in cgroups.hierarchies():
            for name in _listdir(os.path.join(root, parent)):
                if os.path.isdir(os.path.join(root, parent, name)) and name not in running:
                    cgroups.remove_stale(f"{parent}/{name}")


async def _unmount_stopped(d) -> None:
    """Stopped instances hold no mount (made before that rule, or by a crash)."""
    mgr = d.instances
    for inst in mgr.list(None):
        if not mgr.pid(inst):
            await mgr.unmount_root(inst)


def _running_names(d) -> list[str]:
    mgr = d.instances
    return [volume_name(i.project, i.name) for i in mgr.list(None) if mgr.pid(i)]
