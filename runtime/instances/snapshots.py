"""Instance snapshots (create, rename, delete, restore, expiry) and local copies.

A snapshot is a database record (the instance's config, devices and profiles at
that moment) plus a pool snapshot of its root volume. Both are immutable: only
`expires_at` and `description` may change later. A running instance is frozen
only for the moment its volume is copied, and not at all on pools whose
snapshots are atomic (btrfs). Expired snapshots are removed by one background
task that sleeps until the next expiry.

The daemon builds `Snapshots` and the `Copier` (the `copy` source of instance
creation) and runs their background tasks while it serves.
"""
from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import os
import re
import shutil
import time
from collections.abc import Awaitable, Callable
from typing import Any

from runtime import crashpoint, proc
from runtime.instances import restrictions
from runtime.errors import BadRequest, Conflict, NotFound
from runtime.base.timefmt import parse_time, render_time, timestamp
from runtime.instances import config as cfg
from runtime.instances.config import split_source
from runtime.instances.model import Instance, expand
from runtime.storage import volume_name

LOG = logging.getLogger(__name__)
_MAX_SLEEP = 60.0
_EXPIRY = re.compile(r"^(\d+)([MHdwmy])$")
_EXPIRY_SECONDS = {"M": 60, "H": 3600, "d": 86400, "w": 7 * 86400, "m": 30 * 86400,
                   "y": 365 * 86400}
# volatile keys that describe the volume's data, so a snapshot or copy keeps them
_DATA_VOLATILE = ("volatile.base_image", "volatile.last_state.idmap", "volatile.idmap.base")
# Set while a restore swaps volumes: "<token of the prepared volume>/<snapshot>".
RESTORE_KEY = "volatile.restore"


# Parsing ---------------------------------------------------------------------------
def parse_expiry(value: str | None) -> float:
    """`snapshots.expiry` ("1d", "2H 30M", ...) as seconds; 0 when unset."""
    if not value:
        return 0.0
    total = 0.0
    for part in value.split():
        m = _EXPIRY.match(part)
        if not m:
            raise BadRequest(f"Invalid snapshots.expiry {value!r}: use e.g. '30M', '2H', "
                             "'1d', '1w', '1m', '1y'")
        total += int(m.group(1)) * _EXPIRY_SECONDS[m.group(2)]
    return total


_CRON_ALIASES = {"@hourly": "0 * * * *", "@daily": "0 0 * * *", "@midnight": "0 0 * * *",
                 "@weekly": "0 0 * * 0", "@monthly": "0 0 1 * *", "@yearly": "0 0 1 1 *",
                 "@annually": "0 0 1 1 *"}
_CRON_RANGES = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))


def _cron_field(text: str, lo: int, hi: int) -> set[int]:
    out: set[int] = set()
    for part in text.split(","):
        rng, _, step = part.partition("/")
        if rng == "*":
            a, b = lo, hi
        elif "-" in rng:
            a, b = (int(x) for x in rng.split("-", 1))
        else:
            a = b = int(rng)
        n = int(step) if step else 1
        if not (lo <= a <= b <= hi) or n < 1:
            raise ValueError(part)
        out.update(range(a, b + 1, n))
    return out


def parse_schedule(value: str) -> list[tuple[set[int], ...]]:
    """`snapshots.schedule`: a cron line or comma-separated aliases (@hourly, @daily...)."""
    value = (value or "").strip()
    if not value:
        return []
    specs = [_CRON_ALIASES.get(a.strip(), a.strip()) for a in value.split(",")] \
        if value.startswith("@") else [value]
    out = []
    for spec in specs:
        fields = spec.split()
        if len(fields) != 5:
            raise BadRequest(f"Invalid snapshots.schedule {value!r}: use a cron line "
                             "'<minute> <hour> <day> <month> <weekday>' or @hourly, @daily...")
        try:
            parsed = tuple(_cron_field(f, lo, hi) for f, (lo, hi) in zip(fields, _CRON_RANGES,
                                                                         strict=True))
        except ValueError as exc:
            raise BadRequest(f"Invalid snapshots.schedule {value!r}: bad field {exc}")
        if 7 in parsed[4]:
            parsed[4].add(0)
        out.append(parsed + (fields[2] != "*", fields[4] != "*"))
    return out


def schedule_due(schedule: list, when: datetime.datetime) -> bool:
    """Whether a parsed schedule fires in the minute `when` falls in (cron semantics)."""
    dow = (when.weekday() + 1) % 7
    for minute, hour, dom, month, wday, dom_set, dow_set in schedule:
        if when.minute not in minute or when.hour not in hour or when.month not in month:
            continue
        day_ok = (when.day in dom or dow in wday) if (dom_set and dow_set) else \
            (when.day in dom and dow in wday)
        if day_ok:
            return True
    return False


# Criu ------------------------------------------------------------------------------
_criu_reason: str | None = None


async def stateful_unsupported_reason() -> str:
    """Why stateful snapshots can't be taken here (checked once per daemon)."""
    global _criu_reason
    if _criu_reason is None:
        if shutil.which("criu") is None:
            _criu_reason = "CRIU is not installed on this host"
        else:
            rc, out, err = await proc.run(["criu", "check"], check=False, timeout=30)
            reason = (err or out).strip().splitlines()
            _criu_reason = ("`criu check` fails on this host: " + (reason[-1] if reason
                                                                   else f"exit {rc}")
                            if rc != 0 else
                            "stateful snapshots are not implemented by this runtime")
    return _criu_reason


class Snapshots:
    def __init__(self, daemon):
        self.d = daemon
        self.wake = asyncio.Event()
        self.tasks: list[asyncio.Task] = []

    # Records -------------------------------------------------------------------
    def rows(self, inst: Instance) -> list[dict]:
        return self.d.db.select("snapshots", {"instance_id": inst.id}, order="created_at, id")

    def row(self, inst: Instance, name: str) -> dict:
        row = self.d.db.get("snapshots", instance_id=inst.id, name=name)
        if row is None:
            raise NotFound(f"Snapshot {name!r} of instance {inst.name!r} not found")
        return row

    def url(self, inst: Instance, name: str) -> str:
        suffix = "" if inst.project == "default" else f"?project={inst.project}"
        return f"/1.0/instances/{inst.name}/snapshots/{name}{suffix}"

    def render(self, inst: Instance, row: dict) -> dict:
        econfig, edevices = self._expand(inst.project, row)
        return {
            "architecture": row["architecture"], "config": row["config"],
            "created_at": timestamp(row["created_at"]), "devices": row["devices"],
            "ephemeral": bool(row["ephemeral"]), "expanded_config": econfig,
            "expanded_devices": edevices, "expires_at": render_time(row["expires_at"]),
            "last_used_at": render_time(0), "name": row["name"],
            "profiles": row["profiles"], "size": -1, "stateful": bool(row["stateful"]),
            "description": row["description"],
        }

    def render_all(self, inst: Instance) -> list[dict]:
        return [self.render(inst, r) for r in self.rows(inst)]

    def _expand(self, project: str, row: dict) -> tuple[dict, dict]:
        profiles = []
        for name in row["profiles"]:
            p = self.d.profile_rows.get(self.d.profile_project(project), name)
            if p:
                profiles.append(p)
        return expand(profiles, row["config"], row["devices"])

    def _pool(self, inst: Instance):
        return self.d.pool(inst.pool)

    # Create ----------------------------------------------------------------------
    async def validate_create(self, inst: Instance, body: dict) -> dict:
        """Check a create request fully before the operation starts (clear 4xx)."""
        restrictions.rules(self.d, inst.project).check_snapshots(f"instance {inst.name!r}")
        if body.get("stateful"):
            raise BadRequest("Stateful snapshots are not possible: "
                             + await stateful_unsupported_reason())
        name = body.get("name")
        if not name:
            name = self._next_name(inst)
        cfg.validate_snapshot_name(name)
        if self.d.db.get("snapshots", instance_id=inst.id, name=name):
            raise Conflict(f"Snapshot {name!r} of instance {inst.name!r} already exists")
        if "expires_at" in body and body["expires_at"] is not None:
            expires = parse_time(body["expires_at"])
        else:
            ttl = parse_expiry(inst.expanded_config.get("snapshots.expiry"))
            expires = time.time() + ttl if ttl else 0.0
        return {"name": name, "expires_at": expires,
                "description": str(body.get("description") or "")}

    def _next_name(self, inst: Instance) -> str:
        pattern = inst.expanded_config.get("snapshots.pattern") or "snap%d"
        taken = {r["name"] for r in self.rows(inst)}
        if "%d" not in pattern:
            if pattern not in taken:
                return pattern
            pattern += "-%d"
        n = 0
        while pattern.replace("%d", str(n)) in taken:
            n += 1
        return pattern.replace("%d", str(n))

    @contextlib.asynccontextmanager
    async def quiesced(self, inst: Instance):
        """Freeze a running instance around a volume copy (not needed on atomic pools)."""
        pool = self._pool(inst)
        mgr = self.d.instances
        frozen = False
        # Straight to the freezer, without pause/resume events: nobody paused it.
        if not pool.atomic_snapshots and mgr.pid(inst) and \
                mgr.status(inst) == "Running":
            await mgr.lxc.freeze(mgr.paths(inst).name, mgr.cgroup(inst))
            frozen = True
        try:
            yield
        finally:
            if frozen:
                try:
                    await mgr.lxc.unfreeze(mgr.paths(inst).name, mgr.cgroup(inst))
                except Exception:  # noqa: BLE001 - never leave it frozen silently
                    LOG.exception("could not unfreeze %s after a volume copy", inst.name)
                    raise

    async def create(self, inst: Instance, spec: dict) -> dict:
        restrictions.rules(self.d, inst.project).check_snapshots(f"instance {inst.name!r}")
        async with self.d.instances.lock(inst.project, inst.name):
            inst = self.d.instances.load(inst.project, inst.name)
            if self.d.db.get("snapshots", instance_id=inst.id, name=spec["name"]):
                raise Conflict(f"Snapshot {spec['name']!r} already exists")
            vol = volume_name(inst.project, inst.name)
            pool = self._pool(inst)
            async with self.quiesced(inst):
                crashpoint.hit("snapshot.frozen")
                await pool.create_snapshot(vol, spec["name"])
            try:
                crashpoint.hit("snapshot.volume")
                config = dict(inst.config)
                self.d.db.insert("snapshots", instance_id=inst.id, name=spec["name"],
                                 created_at=time.time(), expires_at=spec["expires_at"],
                                 stateful=False, description=spec["description"],
                                 architecture=inst.architecture, ephemeral=inst.ephemeral,
                                 config=config, devices=inst.devices,
                                 profiles=inst.profiles)
            except BaseException:
                await pool.delete_snapshot(vol, spec["name"])
                raise
        if spec["expires_at"]:
            self.wake.set()
        self.d.bus.lifecycle("instance-snapshot-created", self.url(inst, spec["name"]),
                             inst.project)
        LOG.info("instance %s/%s: snapshot %s created", inst.project, inst.name,
                 spec["name"])
        return self.row(inst, spec["name"])

    # Change ------------------------------------------------------------------------
    def update(self, inst: Instance, name: str, body: dict, patch: bool) -> None:
        """Only the expiry and description of a snapshot may change: it is immutable."""
        row = self.row(inst, name)
        values = {}
        if "expires_at" in body or not patch:
            values["expires_at"] = parse_time(body.get("expires_at"))
        if "description" in body or not patch:
            values["description"] = str(body.get("description") or "")
        for key in ("config", "devices", "profiles", "architecture", "ephemeral"):
            if key in body and body[key] not in (None, row[key] if key != "ephemeral"
                                                 else bool(row[key])):
                raise BadRequest(f"Snapshots are immutable: {key!r} can't be changed "
                                 "(only 'expires_at' and 'description')")
        if values:
            self.d.db.update("snapshots", {"id": row["id"]}, **values)
            self.wake.set()
        self.d.bus.lifecycle("instance-snapshot-updated", self.url(inst, name), inst.project)

    async def rename(self, inst: Instance, old: str, new: object) -> None:
        new = cfg.validate_snapshot_name(new)
        async with self.d.instances.lock(inst.project, inst.name):
            row = self.row(inst, old)
            if self.d.db.get("snapshots", instance_id=inst.id, name=new):
                raise Conflict(f"Snapshot {new!r} already exists")
            vol = volume_name(inst.project, inst.name)
            pool = self._pool(inst)
            await pool.unmount_snapshot(vol, old)
            await pool.rename_snapshot(vol, old, new)
            self.d.db.update("snapshots", {"id": row["id"]}, name=new)
        self.d.bus.lifecycle("instance-snapshot-renamed", self.url(inst, new), inst.project,
                             {"old_name": old})

    async def delete(self, inst: Instance, name: str) -> None:
        async with self.d.instances.lock(inst.project, inst.name):
            row = self.row(inst, name)
            await self._pool(inst).delete_snapshot(volume_name(inst.project, inst.name), name)
            self.d.db.delete("snapshots", id=row["id"])
        self.d.bus.lifecycle("instance-snapshot-deleted", self.url(inst, name), inst.project)
        LOG.info("instance %s/%s: snapshot %s deleted", inst.project, inst.name, name)

    # Restore -----------------------------------------------------------------------
    async def restore(self, inst: Instance, snap_name: str) -> None:
        """Root volume and config back to the snapshot; a running instance is restarted."""
        mgr = self.d.instances
        if isinstance(snap_name, str) and "/" in snap_name:
            # The lxc CLI sends "instance/snapshot"; pylxd sends the bare name.
            owner, _, snap_name = snap_name.partition("/")
            if owner != inst.name:
                raise BadRequest(f"Snapshot {owner}/{snap_name} belongs to another instance")
        async with mgr.lock(inst.project, inst.name):
            inst = mgr.load(inst.project, inst.name)
            row = self.row(inst, snap_name)
            # A snapshot taken before the project was restricted can't bring back
            # what the restrictions now forbid.
            restrictions.check_instance(self.d, inst.project, inst.name,
                                        *self._expand(inst.project, row))
            was_running = mgr.pid(inst) is not None
            if was_running:
                ephemeral = inst.ephemeral
                inst.ephemeral = False  # stopping must not delete an ephemeral instance
                try:
                    await mgr.stop(inst, True, 0)
                finally:
                    inst.ephemeral = ephemeral
                # Stopped only for the restore: should the daemon die before the
                # restart below, its next start starts it again (autostart).
                mgr.set_volatile(inst, {"volatile.last_state.power": "RUNNING"})
            vol = volume_name(inst.project, inst.name)
            pool = self._pool(inst)
            token = await pool.prepare_restore(vol, snap_name)
            crashpoint.hit("restore.prepared")
            # Between the swap and the new record, a crash leaves the token: the next
            # start rolls forward (restore_leftovers).
            mgr.set_volatile(inst, {RESTORE_KEY: f"{token}/{snap_name}"})
            await pool.commit_restore(vol)
            crashpoint.hit("restore.swapped")
            self._restored_record(inst, row)
            await pool.finish_restore(vol, snap_name)
            restored = mgr.load(inst.project, inst.name)
            await mgr.apply_root_size(restored)  # the snapshot's size, on the new volume
            if was_running:
                await mgr.start(restored)
        self.d.bus.lifecycle("instance-restored", inst.url, inst.project,
                             {"snapshot": snap_name})
        LOG.info("instance %s/%s restored from snapshot %s", inst.project, inst.name,
                 snap_name)

    def _restored_record(self, inst: Instance, row: dict) -> None:
        """The instance record as the snapshot had it (one statement: atomic)."""
        current = self.d.db.get("instances", id=inst.id)["config"]
        config = {k: v for k, v in row["config"].items()
                  if not k.startswith("volatile.") or k in _DATA_VOLATILE}
        for key, value in current.items():
            if key.startswith("volatile.") and key not in _DATA_VOLATILE and key != RESTORE_KEY:
                config[key] = value
        profiles = [p for p in row["profiles"]
                    if self.d.profile_rows.exists(self.d.profile_project(inst.project), p)]
        self.d.db.update("instances", {"id": inst.id}, config=config,
                         devices=row["devices"], profiles=profiles,
                         architecture=row["architecture"],
                         ephemeral=bool(row["ephemeral"]))

    async def restore_leftovers(self) -> None:
        """At start: finish (or forget) restores a dead daemon was in the middle of."""
        for inst in self.d.instances.list(None):
            pending = inst.config.get(RESTORE_KEY)
            if not pending:
                continue
            token, _, snap = pending.partition("/")
            pool = self._pool(inst)
            vol = volume_name(inst.project, inst.name)
            row = self.d.db.get("snapshots", instance_id=inst.id, name=snap)
            try:
                if row is not None and pool.restore_committed(vol, token):
                    self._restored_record(inst, row)
                    await pool.finish_restore(vol, snap)
                    LOG.warning("instance %s/%s: restore of %s completed after a restart",
                                inst.project, inst.name, snap)
                else:
                    await pool.abandon_restore(vol)
                    self.d.instances.set_volatile(inst, {RESTORE_KEY: None})
                    LOG.warning("instance %s/%s: unfinished restore of %s abandoned",
                                inst.project, inst.name, snap)
            except Exception:  # noqa: BLE001 - the other instances still get theirs
                LOG.exception("instance %s/%s: restore recovery failed", inst.project,
                              inst.name)

    # Expiry --------------------------------------------------------------------------
    async def expire_due(self) -> float:
        """Delete snapshots whose time has come; returns seconds until the next one."""
        now = time.time()
        rows = self.d.db.conn.execute(
            "SELECT s.name AS snap, i.project AS project, i.name AS inst, s.expires_at AS "
            "expires_at FROM snapshots s JOIN instances i ON i.id = s.instance_id "
            "WHERE s.expires_at > 0 ORDER BY s.expires_at").fetchall()
        nxt = _MAX_SLEEP
        for r in rows:
            if r["expires_at"] > now:
                nxt = min(nxt, r["expires_at"] - now)
                break
            try:
                inst = self.d.instances.load(r["project"], r["inst"])
                await self.delete(inst, r["snap"])
                LOG.info("snapshot %s/%s expired", r["inst"], r["snap"])
            except NotFound:
                pass
            except Exception:  # noqa: BLE001 - keep the loop alive, retry later
                LOG.exception("could not expire snapshot %s/%s", r["inst"], r["snap"])
        nxt = min(nxt, await self.d.volumes.expire_snapshots(now))
        return max(nxt, 0.05)

    async def expiry_loop(self) -> None:
        while True:
            self.wake.clear()
            try:
                delay = await self.expire_due()
            except Exception:  # noqa: BLE001
                LOG.exception("snapshot expiry pass failed")
                delay = _MAX_SLEEP
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), delay)

    # Schedules ----------------------------------------------------------------------
    async def scheduled_tick(self, when: datetime.datetime) -> list[str]:
        """Take the snapshots `snapshots.schedule` asks for in this minute."""
        taken = []
        for inst in self.d.instances.list(None):
            conf = inst.expanded_config
            if not conf.get("snapshots.schedule"):
                continue
            try:
                schedule = parse_schedule(conf["snapshots.schedule"])
            except BadRequest as exc:
                LOG.error("instance %s: %s", inst.name, exc)
                continue
            if not schedule_due(schedule, when):
                continue
            if self.d.instances.pid(inst) is None and \
                    not cfg.truthy(conf.get("snapshots.schedule.stopped")):
                continue
            try:
                spec = await self.validate_create(inst, {})
                await self.create(inst, spec)
                taken.append(f"{inst.name}/{spec['name']}")
            except Exception:  # noqa: BLE001 - one instance must not stop the others
                LOG.exception("scheduled snapshot of %s failed", inst.name)
        return taken

    async def schedule_loop(self) -> None:
        while True:
            now = time.time()
            await asyncio.sleep(60 - now % 60 + 0.05)
            minute = datetime.datetime.now().replace(second=0, microsecond=0)
            try:
                await self.scheduled_tick(minute)
            except Exception:  # noqa: BLE001
                LOG.exception("snapshot schedule pass failed")

    async def cleanup_leftovers(self) -> None:
        """What a daemon killed mid-way leaves: publish snapshots, replaced volumes."""
        for pool in list(self.d.pools.values()):
            base = os.path.join(pool.path, "containers-snapshots")
            for vol in _listdir(base):
                for snap in _listdir(os.path.join(base, vol)):
                    if snap.startswith(".publish-"):
                        try:
                            await pool.delete_snapshot(vol, snap)
                        except Exception:  # noqa: BLE001
                            LOG.exception("could not remove %s/%s", vol, snap)
            await pool.sweep_restore_leftovers()

    async def running(self, app):
        """aiohttp cleanup context: expiry, schedules and leftover sweeping."""
        loop = asyncio.get_running_loop()
        tasks = [loop.create_task(self.expiry_loop()),
                 loop.create_task(self.schedule_loop()),
                 loop.create_task(self.cleanup_leftovers())]
        yield
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except (FileNotFoundError, NotADirectoryError):
        return []


# Copy ----------------------------------------------------------------------------------
class Copier:
    """`source.type: copy`: a new instance from a local instance or snapshot."""

    def __init__(self, daemon, snapshots: Snapshots):
        self.d = daemon
        self.snaps = snapshots

    def _source(self, project: str, source: dict,
                require: Callable[[str], str]) -> tuple[Instance, dict | None]:
        name, snap = split_source(source.get("source"))
        src_project = require(source.get("project") or project)
        if not self.d.project_rows.exists(src_project):
            raise NotFound(f"Project {src_project!r} not found")
        inst = self.d.instances.load(src_project, name)
        return inst, (self.snaps.row(inst, snap) if snap else None)

    def prepare(self, project: str, body: dict,
                require: Callable[[str], str]) -> tuple[str, Callable[[Any], Awaitable[None]]]:
        """Check a copy request whole: the new instance's name and the job that makes it.

        `require(project)` is the caller's right to use the source's project (or raises).
        """
        source = body.get("source") or {}
        if source.get("refresh"):
            raise BadRequest("Refreshing an existing copy is not supported by this runtime")
        src, snap = self._source(project, source, require)
        base = snap if snap else {"config": src.config, "devices": src.devices,
                                  "profiles": src.profiles,
                                  "architecture": src.architecture}
        config = {k: v for k, v in base["config"].items() if not k.startswith("volatile.")}
        config.update(body.get("config") or {})
        devices = dict(base["devices"])
        devices.update(body.get("devices") or {})
        new_body = {"name": body.get("name"), "config": config, "devices": devices,
                    "profiles": body["profiles"] if body.get("profiles") is not None
                    else base["profiles"],
                    "architecture": body.get("architecture") or base["architecture"],
                    "ephemeral": body.get("ephemeral", False),
                    "description": body.get("description") or "",
                    "source": {"type": "copy"}}
        spec = self.d.instances.validate_new(project, new_body)
        instance_only = bool(source.get("instance_only")) or snap is not None
        if not instance_only:
            restrictions.check_snapshot_copies(self.d, project, spec["name"],
                                               self.snaps.rows(src))
        extra = {k: base["config"][k] for k in _DATA_VOLATILE if k in base["config"]}
        isolated = cfg.truthy(_econfig(self.d, project, spec).get("security.idmap.isolated"))
        if isolated:
            extra.pop("volatile.idmap.base", None)  # its own range, shifted at start
        if "volatile.base_image" in extra:
            extra["volatile.apply_template"] = "copy"
        start = bool(body.get("start"))
        reserved = self.d.instances.insert(project, spec, extra)  # a second copy: 409

        async def run(op):
            inst = await self.copy(src, snap, project, spec, extra, instance_only, reserved)
            if start:
                await self.d.instances.change_state(inst, "start", False, 0)
        return spec["name"], run

    async def copy(self, src: Instance, snap: dict | None, project: str, spec: dict,
                   extra: dict, instance_only: bool, inst: Instance | None = None) -> Instance:
        mgr = self.d.instances
        inst = inst or mgr.insert(project, spec, extra)
        src_vol = volume_name(src.project, src.name)
        dst_vol = volume_name(project, inst.name)
        src_pool = self.d.pool(src.pool)
        dst_pool = self.d.pool(inst.pool)
        try:
            snaps: list[dict] = []
            async with mgr.lock(src.project, src.name):
                if not instance_only:
                    snaps = self.snaps.rows(src)
                if src_pool is dst_pool:
                    if snap is not None:
                        await src_pool.copy_instance(src_vol, dst_vol, snap["name"])
                    else:
                        async with self.snaps.quiesced(src):
                            crashpoint.hit("copy.frozen")
                            await src_pool.copy_instance(src_vol, dst_vol)
                    for row in snaps:
                        await src_pool.copy_snapshot(src_vol, row["name"], dst_vol)
                else:
                    await self._copy_across(src, src_pool, src_vol, snap, dst_pool,
                                            dst_vol, snaps)
            for row in snaps:
                self.d.db.insert("snapshots", instance_id=inst.id, name=row["name"],
                                 created_at=row["created_at"], expires_at=row["expires_at"],
                                 stateful=False, description=row["description"],
                                 architecture=row["architecture"],
                                 ephemeral=row["ephemeral"], config=row["config"],
                                 devices=row["devices"], profiles=row["profiles"])
            await mgr.apply_root_size(mgr.load(project, inst.name))
            crashpoint.hit("copy.volume")
            mgr.completed(inst)
        except BaseException:
            await mgr.purge(inst)
            raise
        if any(r["expires_at"] for r in snaps):
            self.snaps.wake.set()
        self.d.bus.lifecycle("instance-created", inst.url, project)
        LOG.info("instance %s/%s created as a copy of %s/%s%s", project, inst.name,
                 src.project, src.name, f"/{snap['name']}" if snap else "")
        return mgr.load(project, inst.name)

    async def _copy_across(self, src: Instance, src_pool, src_vol: str, snap: dict | None,
                           dst_pool, dst_vol: str, snaps: list[dict]) -> None:
        """Between pools of different kinds: rsync each snapshot's view, then the state."""
        idmap = self.d.instances.idmap_of(src)
        await dst_pool.create_instance(dst_vol, None, idmap, self.d.default_idmap)
        dst_root = await dst_pool.mount(dst_vol)
        src_dir = src_pool.snapshot_path(src_vol, snap["name"]) if snap else \
            src_pool.instance_path(src_vol)
        for row in snaps:
            view = await src_pool.mount_snapshot(src_vol, row["name"])
            try:
                await rsync(view, dst_root)
            finally:
                await src_pool.unmount_snapshot(src_vol, row["name"])
            await dst_pool.create_snapshot(dst_vol, row["name"])
        if snap is not None:
            view = await src_pool.mount_snapshot(src_vol, snap["name"])
            try:
                await rsync(view, dst_root)
            finally:
                await src_pool.unmount_snapshot(src_vol, snap["name"])
        else:
            view = await src_pool.mount(src_vol)
            async with self.snaps.quiesced(src):
                await rsync(view, dst_root)
        for entry in ("metadata.yaml", "templates"):
            path = os.path.join(src_dir, entry)
            if os.path.exists(path):
                await proc.run(["cp", "-a", "--", path, dst_pool.instance_path(dst_vol)])


def _econfig(d, project: str, spec: dict) -> dict:
    rows = [d.profile_rows.get(d.profile_project(project), p)
            for p in spec["profiles"]]
    return expand([r for r in rows if r], spec["config"], spec["devices"])[0]


async def rsync(src: str, dst: str) -> None:
    """Make dst an exact copy of src (owners by number, hard links, xattrs, deletions).

    --checksum: successive snapshots synced into one tree can differ in a file of
    the same size and mtime second, which rsync's quick check would skip.
    """
    await proc.run(["rsync", "-aHAX", "--checksum", "--numeric-ids", "--delete", "--inplace",
                    src.rstrip("/") + "/", dst.rstrip("/") + "/"])
