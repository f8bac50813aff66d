"""What both migration wire formats share: the checked header, the two roles' common
parts, and the guard around a send.

`native` (our own wire format between our daemons) and `lxd_peer` (LXD's protobuf
and rsync protocol) each play the sender and the receiver; both build and check
the same header (`check_header`: nothing of a peer's reaches a path, a config file
or the database unchecked), record received snapshots the same way, and stop,
restart and unmount an instance around a send the same way (`SendGuard`). Volume
data is the pool layer's (runtime.storage.pool.Pool): which directory and entries
carry a volume, and where a received one is unpacked.
"""
from __future__ import annotations

import logging
import time

from runtime import arch, crashpoint
from runtime.base.idmap import IdMap
from runtime.errors import BadRequest, RuntimeAPIError
from runtime.instances import restrictions
from runtime.storage import LAYER, VOLUME, Pool, volume_name

LOG = logging.getLogger(__name__)
CONNECT_TIMEOUT = 30.0
MAX_SNAPSHOTS = 10000
# Volatile keys that describe the sender's host, not the instance.
_HOST_VOLATILE = ("volatile.last_state.idmap", "volatile.idmap.base", "volatile.idmap.current",
                  "volatile.idmap.next", "volatile.last_state.power", "volatile.apply_template")


class TransferError(RuntimeAPIError):
    status = 500


def _record(inst) -> dict:
    return {"name": inst.name, "architecture": inst.architecture, "config": inst.config,
            "devices": inst.devices, "profiles": inst.profiles, "ephemeral": inst.ephemeral,
            "description": inst.description, "stateful": inst.stateful}


class SenderBase:
    """The source of a migration: the instance (with its snapshots), or one snapshot
    sent as a new instance."""

    def __init__(self, d, inst, body: dict, snapshot: str | None = None):
        self.d, self.inst, self.snapshot = d, inst, snapshot
        self.op = None
        self._sent = 0
        self._t0 = self._last = 0.0
        self.instance_only = bool(body.get("instance_only") or body.get("container_only"))
        self.allow_inconsistent = bool(body.get("allow_inconsistent"))
        # LXD's Go client always sends `live` and starts the target itself after a
        # stateless move (lxc move --stateless); pylxd's migrate() sends no `live` and
        # never starts it, so then the daemons finish the move: the target starts it.
        self.finish_move = "live" not in body

    def header(self, running: bool) -> dict:
        d, inst = self.d, self.inst
        profiles = {}
        for name in inst.profiles:
            row = d.profile_rows.get(d.profile_project(inst.project), name)
            if row:
                profiles[name] = {"config": row["config"], "devices": row["devices"],
                                  "description": row["description"]}
        snaps = [] if self.instance_only or self.snapshot else [
            {k: s[k] for k in ("name", "created_at", "expires_at", "stateful", "description",
                               "architecture", "ephemeral", "config", "devices", "profiles")}
            for s in d.snapshot_rows.list(inst.id, order="id")]
        pool = d.instances.pool(inst)
        vol = volume_name(inst.project, inst.name)
        record = _record(inst)
        if self.snapshot:
            row = d.snapshot_rows.get(inst.id, self.snapshot)
            if row is None:
                raise TransferError(f"Snapshot {self.snapshot!r} is gone")
            record.update({k: row[k] for k in ("architecture", "config", "devices",
                                               "profiles", "ephemeral", "description")})
        base = pool.layer_base(vol, self.snapshot, tuple(s["name"] for s in snaps)) \
            if LAYER in pool.migration_types() else None
        return {"version": 1, "instance": record, "profiles": profiles,
                "snapshots": snaps, "idmap": d.instances.idmap_of(inst).encode(),
                "running": running, "start": running and self.finish_move,
                "base_image": base}

    def source(self, pool: Pool, vol: str, mtype: str = VOLUME) -> tuple[str, list[str]]:
        """(directory, entries) that carry what is sent, in migration type mtype."""
        return pool.send_source(vol, self.snapshot, mtype)

    async def mount(self, pool: Pool, vol: str) -> None:
        if self.snapshot:
            await pool.mount_snapshot(vol, self.snapshot)
        else:
            await pool.mount(vol)

    def progress(self, n: int) -> None:
        """LXD's `fs_progress` operation metadata (migration_progress extension)."""
        crashpoint.hit("migration.source.sending")
        now = time.monotonic()
        if not self._t0:
            self._t0 = now
        self._sent += n
        if self.op is not None and now - self._last >= 0.25:
            self._last = now
            rate = self._sent / max(now - self._t0, 1e-3)
            self.op.update_metadata(fs_progress=f"rootfs: {self._sent / 1e6:.2f}MB "
                                                f"({rate / 1e6:.2f}MB/s)",
                                    fs_progress_bytes=self._sent)

    def guard(self, pool: Pool, vol: str) -> SendGuard:
        return SendGuard(self.d, self.inst, pool, vol, self.snapshot)


class SendGuard:
    """Around a send: stops the instance when asked (`stop`); if the send fails,
    restarts an instance it stopped; in any case unmounts what the send mounted.
    After a successful send of a stopped instance, `sent` records it stopped."""

    def __init__(self, d, inst, pool: Pool, vol: str, snapshot: str | None):
        self.d, self.inst, self.pool, self.vol, self.snapshot = d, inst, pool, vol, snapshot
        self.stopped = False

    async def stop(self) -> None:
        await self.d.instances.stop(self.inst, True, 0)
        self.stopped = True

    def sent(self) -> None:
        if self.stopped:
            self.d.instances.set_volatile(self.inst, {"volatile.last_state.power": "STOPPED"})

    async def __aenter__(self) -> SendGuard:
        return self

    async def __aexit__(self, exc_type, exc, tb) -> bool:
        d, inst = self.d, self.inst
        try:
            if exc_type is not None and self.stopped:
                try:
                    await d.instances.start(d.instances.load(inst.project, inst.name))
                except Exception as err:  # noqa: BLE001 - report the first error
                    LOG.error("restarting %s after a failed move: %s", inst.name, err)
        finally:
            if self.snapshot:
                await self.pool.unmount_snapshot(self.vol, self.snapshot)
            elif d.instances.pid(inst) is None:
                await self.pool.unmount(self.vol)
        return False


# Receiver -----------------------------------------------------------------------
class ReceiverBase:
    """The target of a migration: checks the header, makes the record, receives."""

    def __init__(self, d, project: str, body: dict):
        self.d, self.project, self.body = d, project, body
        self.inst = None
        self.marks: list[tuple[str, float]] = []
        self._t = time.monotonic()

    def mark(self, what: str) -> None:
        crashpoint.hit("migration.target." + what)
        now = time.monotonic()
        self.marks.append((what, now - self._t))
        self._t = now

    def spec(self, header: dict) -> dict:
        src = header.get("instance") or {}
        body = self.body
        merged = {"name": body.get("name") or src.get("name"), "type": "container",
                  "architecture": body.get("architecture") or src.get("architecture"),
                  "ephemeral": body.get("ephemeral", src.get("ephemeral", False)),
                  "description": body.get("description", src.get("description", "")),
                  "source": {"type": "migration"}}
        for key in ("config", "devices", "profiles"):
            merged[key] = body[key] if body.get(key) is not None else src.get(key)
        merged["config"] = {k: v for k, v in (merged["config"] or {}).items()
                            if k not in _HOST_VOLATILE and not (
                                k.startswith("volatile.") and k.endswith(".host_name"))}
        return self.d.instances.validate_new(self.project, merged)

    def ensure_profiles(self, header: dict, names: list[str]) -> None:
        """Profiles the instance uses follow it when the target doesn't have them
        (header['profiles'] was checked by check_header)."""
        d = self.d
        pproj = d.profile_project(self.project)
        for name in names or []:
            prof = (header.get("profiles") or {}).get(name)
            if prof is not None and not d.profile_rows.exists(pproj, name):
                if isinstance(prof.get("config") or {}, dict) and \
                        isinstance(prof.get("devices") or {}, dict):
                    restrictions.check_profile(d, pproj, self.project, name,
                                               prof.get("config") or {},
                                               prof.get("devices") or {})
                d.profile_rows.create(pproj, name, prof.get("description") or "",
                                      config=prof.get("config") or {},
                                      devices=prof.get("devices") or {})
                d.bus.lifecycle("profile-created", f"/1.0/profiles/{name}", self.project)

    def record_snapshot(self, inst, snap: dict) -> None:
        """The database row of a received snapshot (snap: a checked header entry)."""
        self.d.snapshot_rows.create(inst.id, snap["name"],
                         created_at=snap.get("created_at") or 0,
                         expires_at=snap.get("expires_at") or 0,
                         stateful=bool(snap.get("stateful")),
                         description=snap.get("description") or "",
                         architecture=snap.get("architecture") or inst.architecture,
                         ephemeral=bool(snap.get("ephemeral")),
                         config=snap.get("config") or {}, devices=snap.get("devices") or {},
                         profiles=snap.get("profiles") or [])



def _fields(obj: object, what: str, spec: dict) -> dict:
    """obj as a dict whose present keys have the types spec names (a peer's header)."""
    if not isinstance(obj, dict):
        raise BadRequest(f"Migration header: {what} must be an object")
    for key, kinds in spec.items():
        value = obj.get(key)
        kinds = kinds if isinstance(kinds, tuple) else (kinds,)
        if value is None:
            continue
        if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
            raise BadRequest(f"Migration header: {what} {key!r} has the wrong type")
        if isinstance(value, float) and not 0 <= value < 2**40:
            raise BadRequest(f"Migration header: {what} {key!r} is out of range")
    return obj


_RECORD = {"name": str, "architecture": (str, int), "config": dict, "devices": dict,
           "profiles": list, "ephemeral": (bool, int), "description": str,
           "stateful": (bool, int)}
_SNAPSHOT = {**_RECORD, "created_at": (float, int), "expires_at": (float, int)}


def check_header(header: dict) -> dict:
    """A migration peer's header, checked like any API input before anything is made.

    The instance record goes through validate_new later; here: the shape, the id map,
    the image, profiles (name, config, devices) and snapshots (name, config, devices,
    times), so nothing from the peer reaches a path, a config file or the database
    unchecked.
    """
    from runtime.instances import config as cfg
    if header.get("version") != 1:
        raise BadRequest("Migration source speaks an unknown protocol version")
    _fields(header, "header", {"instance": dict, "profiles": dict, "snapshots": list,
                               "idmap": str, "running": bool, "start": bool,
                               "base_image": str})
    _fields(header.get("instance") or {}, "instance", _RECORD)
    try:
        src_map = IdMap.decode(header.get("idmap") or "0:0")
    except ValueError:
        raise BadRequest(f"Migration header: invalid id map {header.get('idmap')!r}")
    if src_map.base < 0 or src_map.size < 0 or src_map.base + src_map.size > 2**32 or \
            (src_map.base and not src_map.size):
        raise BadRequest(f"Migration header: invalid id map {header.get('idmap')!r}")
    base = header.get("base_image")
    if base is not None and (len(base) != 64 or not set(base) <= set("0123456789abcdef")):
        raise BadRequest(f"Migration header: invalid image fingerprint {base!r}")
    profiles = {}
    for name, prof in (header.get("profiles") or {}).items():
        cfg.validate_profile_name(name)
        _fields(prof, f"profile {name!r}", {"config": dict, "devices": dict,
                                             "description": str})
        profiles[name] = {"config": cfg.validate_config(prof.get("config") or {}, "profile"),
                          "devices": cfg.validate_devices(prof.get("devices") or {},
                                                          "profile"),
                          "description": prof.get("description") or ""}
    snaps, seen = [], set()
    if len(header.get("snapshots") or []) > MAX_SNAPSHOTS:
        raise BadRequest(f"Migration header: more than {MAX_SNAPSHOTS} snapshots")
    for snap in header.get("snapshots") or []:
        _fields(snap, "snapshot", _SNAPSHOT)
        name = cfg.validate_snapshot_name(snap.get("name"))
        if name in seen:
            raise BadRequest(f"Migration header: snapshot {name!r} appears twice")
        seen.add(name)
        plist = snap.get("profiles") or []
        if not all(isinstance(p, str) for p in plist):
            raise BadRequest(f"Migration header: snapshot {name!r} profiles must be names")
        snaps.append({
            "name": name, "created_at": float(snap.get("created_at") or 0),
            "expires_at": float(snap.get("expires_at") or 0),
            "stateful": bool(snap.get("stateful")), "ephemeral": bool(snap.get("ephemeral")),
            "description": snap.get("description") or "",
            "architecture": arch.normalize(snap["architecture"])
            if snap.get("architecture") else None,
            "config": cfg.validate_config(snap.get("config") or {}, "snapshot"),
            "devices": cfg.validate_devices(snap.get("devices") or {}, "snapshot"),
            "profiles": [cfg.validate_profile_name(p) for p in plist]})
    instance = dict(header.get("instance") or {})
    # validate_new checks the record again with the target's rules; checked here too
    # so that nothing of the peer's reaches the profiles step unchecked.
    for key in ("config", "devices"):
        if instance.get(key) is not None:
            check = cfg.validate_config if key == "config" else cfg.validate_devices
            instance[key] = check(instance[key], "instance")
    if instance.get("profiles") is not None:
        instance["profiles"] = [cfg.validate_profile_name(p) for p in instance["profiles"]]
    if instance.get("architecture") is not None:
        instance["architecture"] = arch.normalize(instance["architecture"])
    return {**header, "instance": instance, "profiles": profiles, "snapshots": snaps}

