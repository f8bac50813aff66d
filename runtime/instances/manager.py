"""Instance lifecycle: create, start, stop, freeze, update, rename, delete, reconcile.

Every mutating action on one instance holds that instance's lock, so API calls
racing on the same instance run one after the other. The database row is the
reservation of a name; a failed creation removes both the row and the volume.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import shutil
import sqlite3
import uuid

from runtime import arch, crashpoint
from runtime.instances import restrictions
from runtime import db as dbmod
from runtime.errors import BadRequest, Conflict, NotFound
from runtime.instances import cgroups, lxc, templates
from runtime.instances import config as cfg
from runtime.instances.files import InstanceFS
from runtime.base.idmap import PRIVILEGED, IdMap, allocate_isolated
from runtime.instances.devices import block_source, missing_hwaddrs
from runtime.instances.model import Instance, expand, root_disk
from runtime.storage import volume_name
from runtime.storage.base import copy_tree

LOG = logging.getLogger(__name__)
LIVE_PREFIXES = ("limits.",)


class InstanceManager:
    def __init__(self, daemon):
        self.d = daemon
        self.lxc = lxc.LxcDriver(daemon.paths.lxcpath)
        self.locks: dict[tuple[str, str], asyncio.Lock] = {}
        self.pids: dict[int, int] = {}          # instance id -> init pid
        self.watchers: dict[int, asyncio.Task] = {}
        self.viewers: dict[int, int] = {}       # instance id -> file requests on its root
        # listing(): per scope, the stamp of profiles/projects and {raw row: entry}
        self._listed: dict[str | None, tuple[tuple, dict]] = {}
        self.renderer = templates.Renderer()    # image templates, in a worker process

    # Lookup --------------------------------------------------------------------
    def lock(self, project: str, name: str) -> asyncio.Lock:
        return self.locks.setdefault((project, name), asyncio.Lock())

    def _profiles(self, project: str, names: list[str]) -> list[dict]:
        rows = []
        for name in names:
            row = self.d.profile_rows.get(self.d.profile_project(project), name)
            if row is None:
                raise BadRequest(f"Profile {name!r} not found")
            rows.append(row)
        return rows

    def load(self, project: str, name: str) -> Instance:
        row = self.d.db.get("instances", project=project, name=name)
        if row is None:
            raise NotFound(f"Instance {name!r} not found")
        return Instance.from_row(row, self._profiles(project, row["profiles"]))

    def list(self, project: str | None) -> list[Instance]:
        """Every instance (of a project), expanded; profiles are read once per call,
        not once per instance (a listing of thousands is an API call clients poll)."""
        where = {"project": project} if project else {}
        rows = self.d.db.select("instances", where, order="name")
        profiles = {(p["project"], p["name"]): p for p in self.d.profile_rows.list()}
        homes: dict[str, str] = {}
        out = []
        for r in rows:
            home = homes.get(r["project"])
            if home is None:
                home = homes[r["project"]] = self.d.profile_project(r["project"])
            found = [profiles.get((home, name)) for name in r["profiles"]]
            if None in found:  # a profile gone meanwhile: the usual clear error
                found = self._profiles(r["project"], r["profiles"])
            out.append(Instance.from_row(r, found))
        return out

    def listing(self, project: str | None) -> list[tuple[str, str]]:
        """(project, JSON of the instance object) of every instance (of a project), as
        a recursion=1 listing shows them.

        Clients poll listings, and on a host with thousands of instances decoding,
        expanding and encoding every record is most of the cost while nearly nothing
        changed since the last poll. So each instance's JSON is kept, keyed by its
        raw database row, and reused while that row, the profiles and projects
        (which expand it) and its status are what they were."""
        db = self.d.db.conn
        stamp = (self.d.profile_rows.stamp(), self.d.project_rows.stamp())
        old_stamp, old = self._listed.get(project, ((), {}))
        if old_stamp != stamp:
            old = {}
        sql, args = "SELECT * FROM instances", ()
        if project:
            sql, args = sql + " WHERE project = ?", (project,)
        raws = db.execute(sql + " ORDER BY name", args).fetchall()
        fresh: dict = {}
        out = []
        missing = [r for r in raws if tuple(r) not in old]
        if missing:
            by_id = {i.id: i for i in self.list(project)}
        for raw in raws:
            key = tuple(raw)
            entry = old.get(key) or (by_id.get(raw["id"]), {})
            inst, texts = entry
            if inst is None:
                continue  # appeared between the two reads: the next listing has it
            fresh[key] = entry
            status = self.status(inst)
            text = texts.get(status)
            if text is None:
                text = texts[status] = json.dumps(inst.render(status), separators=(",", ":"))
            out.append((inst.project, text))
        self._listed[project] = (stamp, fresh)
        return out

    def paths(self, inst: Instance) -> lxc.Paths:
        vol = volume_name(inst.project, inst.name)
        return lxc.Paths(self.d.paths.lxcpath, vol, os.path.join(self.d.paths.logs, vol))

    def pool(self, inst: Instance):
        return self.d.pool(inst.pool)

    def cgroup(self, inst: Instance) -> str:
        return lxc.cgroup_dir(self.d.paths.lxd_dir, volume_name(inst.project, inst.name))

    # Status --------------------------------------------------------------------
    def pid(self, inst: Instance) -> int | None:
        pid = self.pids.get(inst.id)
        if pid and os.path.exists(f"/proc/{pid}"):
            return pid
        return None

    def status(self, inst: Instance) -> str:
        if self.pid(inst) is None:
            return "Stopped"
        return "Frozen" if cgroups.frozen(self.cgroup(inst)) else "Running"

    def require_running(self, inst: Instance) -> int:
        pid = self.pid(inst)
        if pid is None:
            raise BadRequest(f"Instance {inst.name!r} is not running")
        return pid

    def fs(self, inst: Instance, rootfs: str | None = None) -> InstanceFS:
        idmap = self.idmap_of(inst)
        pid = self.pid(inst)
        root = f"/proc/{pid}/root" if pid else rootfs or self.pool(inst).rootfs(
            volume_name(inst.project, inst.name))
        return InstanceFS(root, idmap.to_host, idmap.to_container)

    async def mounted_fs(self, inst: Instance) -> InstanceFS:
        """Files view of a running or stopped instance (mounting its rootfs if needed).

        A root on a block device is seen through a second, plain mount of it: the
        container's own mount is idmapped, and the host's root is not in that map,
        so nothing could be created through it. Owners are stored as the container
        sees them (its root is 0 on the volume)."""
        root = root_disk(inst.expanded_devices)
        if root and block_source(root[1]):
            plain = dict(root[1], shift="false", readonly="false")
            path = await self.d.devices.mount_block(inst, root[0] + ".files", plain)
            return InstanceFS(path, PRIVILEGED.to_host, PRIVILEGED.to_container)
        if self.pid(inst):
            return self.fs(inst)
        return self.fs(inst, await self.mount_root(inst))

    @contextlib.asynccontextmanager
    async def files_view(self, inst: Instance):
        """The files view for one request. A stopped instance's root is mounted for
        the request only: as in LXD, stopped instances hold no mount (a host with
        thousands of them would hold thousands). Mount and unmount happen under the
        instance's lock, so a start never meets a root being unmounted."""
        if self.pid(inst):
            yield await self.mounted_fs(inst)
            return
        async with self.lock(inst.project, inst.name):
            view = await self.mounted_fs(inst)
            self.viewers[inst.id] = self.viewers.get(inst.id, 0) + 1
        try:
            yield view
        finally:
            self.viewers[inst.id] -= 1
            if not self.viewers[inst.id]:
                del self.viewers[inst.id]
                async with self.lock(inst.project, inst.name):
                    if inst.id not in self.viewers and not self.pid(inst) and \
                            self.d.db.get("instances", id=inst.id):
                        await self.unmount_root(inst)

    async def unmount_root(self, inst: Instance) -> None:
        """Undo mount_root and the files view's mount of a stopped instance."""
        root = root_disk(inst.expanded_devices)
        if root and block_source(root[1]):
            await self.d.devices.unmount_blocks(inst, root[0] + ".files")
            return
        await self.pool(inst).unmount(volume_name(inst.project, inst.name))

    async def mount_root(self, inst: Instance) -> str:
        """The instance's root filesystem, mounted: its pool volume, or the block
        device its root disk names (boot from volume)."""
        root = root_disk(inst.expanded_devices)
        if root and block_source(root[1]):
            return await self.d.devices.mount_block(inst, root[0], root[1])
        return await self.pool(inst).mount(volume_name(inst.project, inst.name))

    # Id maps -------------------------------------------------------------------
    def idmap_of(self, inst: Instance) -> IdMap:
        current = inst.config.get("volatile.last_state.idmap")
        return IdMap.decode(current) if current else self.wanted_idmap(inst)

    def wanted_idmap(self, inst: Instance, config: dict | None = None) -> IdMap:
        conf = config if config is not None else inst.expanded_config
        if cfg.truthy(conf.get("security.privileged")):
            return PRIVILEGED
        if cfg.truthy(conf.get("security.idmap.isolated")):
            base = inst.config.get("volatile.idmap.base") if config is None else None
            if base and int(base) != self.d.default_idmap.base:
                return IdMap(int(base), int(conf.get("security.idmap.size") or 65536))
            used = [IdMap.decode(i.config["volatile.last_state.idmap"])
                    for i in self.list(None)
                    if i.config.get("volatile.last_state.idmap") and i.id != inst.id]
            size = int(conf.get("security.idmap.size") or 65536)
            return allocate_isolated(self.d.host_idrange, used, size)
        return self.d.default_idmap

    # Create --------------------------------------------------------------------
    def validate_new(self, project: str, body: dict, image: dict | None = None) -> dict:
        """Check a creation request completely before anything is made.

        `image`: the source image already resolved (a remote lookup done off the loop).
        """
        if not isinstance(body, dict):
            raise BadRequest("Request body must be a JSON object")
        name = body.get("name")
        if not name:
            name = "i-" + secrets.token_hex(4)
        cfg.validate_name(name)
        if self.d.db.get("instances", project=project, name=name):
            raise Conflict(f"Instance {name!r} already exists")
        itype = body.get("type") or "container"
        if itype != "container":
            raise BadRequest(f"Instance type {itype!r} is not supported (containers only)")
        profiles = body.get("profiles")
        if profiles is None:
            profiles = ["default"]
        if not isinstance(profiles, list) or not all(isinstance(p, str) for p in profiles):
            raise BadRequest("'profiles' must be a list of profile names")
        profile_rows = self._profiles(project, profiles)
        config = cfg.validate_config(body.get("config") or {})
        devices = cfg.validate_devices(body.get("devices") or {})
        source = body.get("source") or {"type": "none"}
        if not isinstance(source, dict):
            raise BadRequest("'source' must be an object")
        rules = restrictions.rules(self.d, project)
        config = rules.check_volatile(f"instance {name!r}", config, {}, strip=source.get(
            "type") in ("copy", "migration"))
        econfig, edevices = expand(profile_rows, config, devices)
        rules.check(f"instance {name!r}", econfig, edevices)
        root = root_disk(edevices)
        if root is None:
            raise BadRequest("No root disk device: add one to the instance or a profile "
                             "(type: disk, path: /, pool: <pool>)")
        pool = root[1].get("pool")
        if not pool or not self.d.db.get("storage_pools", name=pool):
            raise BadRequest(f"Root disk device {root[0]!r}: storage pool {pool!r} not found")
        architecture = body.get("architecture")
        stype = source.get("type", "none")
        if stype == "image":
            image = image or self.d.images.resolve_source(project, source)
            architecture = architecture or image["architecture"]
        elif stype not in ("none", "copy", "migration"):
            raise BadRequest(f"Unknown source type {stype!r}")
        architecture = arch.normalize(architecture) if architecture else arch.host()
        if architecture not in arch.supported():
            raise BadRequest(f"Architecture {architecture!r} can't run on this host "
                             f"({', '.join(arch.supported())})")
        return {"name": name, "profiles": profiles, "config": config, "devices": devices,
                "pool": pool, "architecture": architecture, "image": image,
                "source": source, "ephemeral": bool(body.get("ephemeral", False)),
                "description": str(body.get("description") or ""),
                "start": bool(body.get("start", False)),
                "expanded_devices": edevices}

    def insert(self, project: str, spec: dict, extra_config: dict | None = None) -> Instance:
        """Reserve the name: write the record (volatile keys included), marked
        incomplete until the caller's `completed()`."""
        config = dict(spec["config"])
        config["volatile.uuid"] = str(uuid.uuid4())
        config.update(missing_hwaddrs(spec["expanded_devices"], config))
        config.update(extra_config or {})
        config[cfg.INCOMPLETE_KEY] = "true"
        try:
            self.d.db.insert("instances", project=project, name=spec["name"],
                             architecture=spec["architecture"], ephemeral=spec["ephemeral"],
                             description=spec["description"], created_at=dbmod.now(),
                             config=config, devices=spec["devices"],
                             profiles=spec["profiles"], pool=spec["pool"])
        except sqlite3.IntegrityError:
            raise Conflict(f"Instance {spec['name']!r} already exists")
        return self.load(project, spec["name"])

    def reserve(self, project: str, spec: dict) -> Instance:
        """The record of an instance made from an image or empty, written while the
        request is answered: of two creations of one name, the second gets a 409
        instead of an operation that fails later."""
        image = spec["image"]
        extra = {}
        if image:
            extra["volatile.base_image"] = image["fingerprint"]
            from runtime.images.store import clean_properties
            for key, value in clean_properties(image.get("properties") or {}, "image").items():
                extra[f"image.{key}"] = value
            extra["volatile.apply_template"] = "create"
        return self.insert(project, spec, extra)

    async def create(self, project: str, spec: dict, inst: Instance | None = None) -> Instance:
        """Make the record (unless reserved) and root volume; undo all on failure."""
        image = spec["image"]
        if inst is None:
            inst = self.reserve(project, spec)
        try:
            crashpoint.hit("create.recorded")
            async with self.lock(project, inst.name):
                idmap = self.wanted_idmap(inst)
                pool = self.pool(inst)
                vol = volume_name(project, inst.name)
                if image:
                    await self.d.images.ensure_volume(pool, image["fingerprint"])
                await pool.create_instance(vol, image["fingerprint"] if image else None,
                                           idmap, self.d.default_idmap)
                if image:
                    src = pool.image_path(image["fingerprint"])
                    for entry in ("metadata.yaml", "templates"):
                        if os.path.exists(os.path.join(src, entry)):
                            await copy_tree(os.path.join(src, entry),
                                            os.path.join(pool.instance_path(vol), entry))
                    self.d.images.mark_used(image["fingerprint"])
                self.set_volatile(inst, {"volatile.last_state.idmap": idmap.encode(),
                                          "volatile.idmap.base": str(idmap.base)})
                await self.apply_root_size(inst)
                crashpoint.hit("create.volume")
                self.completed(inst)
        except BaseException:
            await self.purge(inst)
            raise
        self.d.bus.lifecycle("instance-created", inst.url, project)
        LOG.info("instance %s/%s created", project, inst.name)
        return self.load(project, inst.name)

    def completed(self, inst: Instance) -> None:
        """The instance is whole: a daemon restart keeps it from now on."""
        self.set_volatile(inst, {cfg.INCOMPLETE_KEY: None})

    async def apply_root_size(self, inst: Instance) -> None:
        root = root_disk(inst.expanded_devices)
        size = root[1].get("size") if root else None
        enforced = await self.pool(inst).set_size(
            volume_name(inst.project, inst.name), cfg.parse_size(size) if size else None)
        if size and not enforced:
            LOG.warning("instance %s: root disk size %s is not enforced by pool %s (%s)",
                        inst.name, size, inst.pool, self.pool(inst).driver)

    async def purge(self, inst: Instance) -> None:
        """Remove everything an instance has on disk and in the database."""
        paths = self.paths(inst)
        if self.d.db.get("instances", id=inst.id):
            # Should the daemon die half way, the next start finishes the job.
            self.set_volatile(inst, {cfg.INCOMPLETE_KEY: "true"})
        try:
            await self.pool(inst).delete_instance(volume_name(inst.project, inst.name))
            if inst.config.get("volatile.base_image"):
                await self.d.images.collect(self.pool(inst))
        finally:
            shutil.rmtree(paths.log_dir, ignore_errors=True)
            self.d.db.delete("instances", id=inst.id)
            self.locks.pop((inst.project, inst.name), None)

    def set_volatile(self, inst: Instance, values: dict[str, str | None]) -> None:
        row = self.d.db.get("instances", id=inst.id)
        config = row["config"]
        for key, value in values.items():
            if value is None:
                config.pop(key, None)
            else:
                config[key] = value
        self.d.db.update("instances", {"id": inst.id}, config=config)
        inst.config = config
        inst.expanded_config.update({k: v for k, v in values.items() if v is not None})

    # Start / stop --------------------------------------------------------------
    async def start(self, inst: Instance) -> None:
        if self.pid(inst):
            raise BadRequest(f"Instance {inst.name!r} is already running")
        paths = self.paths(inst)
        pool = self.pool(inst)
        vol = volume_name(inst.project, inst.name)
        idmap = self.wanted_idmap(inst)
        current = self.idmap_of(inst)
        if idmap != current:
            await pool.shift_instance(vol, current, idmap)
            self.set_volatile(inst, {"volatile.last_state.idmap": idmap.encode(),
                                      "volatile.idmap.base": str(idmap.base)})
        # As LXD: the instance's directory is 0100 and its root's alone, so no host
        # user reaches the setuid files and device nodes a tenant put in its rootfs.
        pool.secure_volume(vol, idmap.to_host(0))
        rootfs = await self.mount_root(inst)
        if not idmap.privileged:
            _check_traversable(rootfs, idmap.to_host(0))
        os.makedirs(paths.log_dir, exist_ok=True)
        volatile = self.d.devices.start_volatile(inst)
        if volatile:
            self.set_volatile(inst, volatile)
        pending = inst.config.get("volatile.apply_template")
        fs = self.fs(inst, rootfs)
        ctx = {"instance": {"name": inst.name, "architecture": inst.architecture,
                            "privileged": idmap.privileged, "ephemeral": inst.ephemeral},
               "config": inst.expanded_config, "devices": inst.expanded_devices}
        if pending:
            await templates.render_all(self.renderer, pool.instance_path(vol), fs, pending, ctx)
            self.set_volatile(inst, {"volatile.apply_template": None})
        await templates.render_all(self.renderer, pool.instance_path(vol), fs, "start", ctx)
        disk_sources = await self.d.devices.disk_sources(inst)
        text = lxc.render_config(
            name=paths.name, hostname=inst.name, rootfs=rootfs, paths=paths, idmap=idmap,
            config=inst.expanded_config, architecture=inst.architecture,
            host_arch=arch.host(), cgroup=self.cgroup(inst),
            device_lines=self.d.devices.lxc_lines(inst, disk_sources))
        with open(paths.config, "w") as f:
            f.write(text)
        with open(paths.seccomp, "w") as f:
            f.write(lxc.seccomp_policy(inst.expanded_config))
        await self.d.devices.before_start(inst)
        # A failed start can leave liblxc's monitor cgroup behind, and with a fixed
        # lxc.cgroup.dir.monitor every later start then fails ("Failed to create
        # monitor cgroup"): clear leftovers of this (stopped) instance first.
        cgroup = self.cgroup(inst)
        cgroups.remove_stale(cgroup, lxc.monitor_cgroup_dir(cgroup))
        pid = await self.lxc.start(paths)
        crashpoint.hit("start.spawned")
        self.pids[inst.id] = pid
        self._watch(inst, pid)
        await self.d.devices.after_start(inst, pid)
        self.d.db.update("instances", {"id": inst.id}, last_used_at=dbmod.now())
        self.set_volatile(inst, {"volatile.last_state.power": "RUNNING"})
        self.d.bus.lifecycle("instance-started", inst.url, inst.project)
        LOG.info("instance %s/%s started (init pid %d)", inst.project, inst.name, pid)

    def _watch(self, inst: Instance, pid: int) -> None:
        old = self.watchers.pop(inst.id, None)
        if old:
            old.cancel()
        self.watchers[inst.id] = asyncio.get_running_loop().create_task(
            self._watch_exit(inst.id, inst.project, inst.name, pid))

    async def _watch_exit(self, inst_id: int, project: str, name: str, pid: int) -> None:
        """Notice a container stopping by itself (poweroff inside, or killed)."""
        await lxc.wait_exit(pid)
        if self.pids.get(inst_id) != pid:
            return
        self.watchers.pop(inst_id, None)
        await asyncio.sleep(0.05)
        if self.pids.get(inst_id) != pid:
            return  # a stop through the API got there first and handles the rest
        try:
            inst = self.load(project, name)
        except NotFound:
            return
        newpid = await self.lxc.init_pid(self.paths(inst).name)
        if self.pids.get(inst_id) != pid:
            return
        if newpid:  # rebooted inside: liblxc restarted it
            self.pids[inst_id] = newpid
            self._watch(inst, newpid)
            return
        self.pids.pop(inst_id, None)
        if self.lock(project, name).locked():
            return  # a stop/restart in progress handles the rest
        await self._stopped(inst)

    async def _stopped(self, inst: Instance) -> None:
        await self.d.devices.after_stop(inst)
        if not self.viewers.get(inst.id):
            try:
                await self.unmount_root(inst)
            except Exception:  # noqa: BLE001 - stopped all the same; start remounts
                LOG.exception("instance %s/%s: unmounting its root failed", inst.project,
                              inst.name)
        self.set_volatile(inst, {"volatile.last_state.power": "STOPPED"})
        self.d.bus.lifecycle("instance-stopped", inst.url, inst.project)
        LOG.info("instance %s/%s stopped", inst.project, inst.name)
        if inst.ephemeral:
            await self.purge(inst)
            self.d.bus.lifecycle("instance-deleted", inst.url, inst.project)

    async def stop(self, inst: Instance, force: bool, timeout: float) -> None:
        pid = self.pid(inst)
        if pid is None:
            raise BadRequest(f"Instance {inst.name!r} is already stopped")
        if self.status(inst) == "Frozen":
            if not force:
                raise BadRequest(f"Instance {inst.name!r} is frozen: unfreeze it or force "
                                 "the stop")
            await self.lxc.stop(self.paths(inst).name, True, 0)
        else:
            await self.lxc.stop(self.paths(inst).name, force, timeout)
        await lxc.wait_exit(pid)
        self.pids.pop(inst.id, None)
        w = self.watchers.pop(inst.id, None)
        if w:
            w.cancel()
        await self._stopped(inst)

    async def restart(self, inst: Instance, force: bool, timeout: float) -> None:
        ephemeral = inst.ephemeral
        inst.ephemeral = False  # a restart must not delete an ephemeral instance
        try:
            await self.stop(inst, force, timeout)
        finally:
            inst.ephemeral = ephemeral
        await self.start(self.load(inst.project, inst.name))
        self.d.bus.lifecycle("instance-restarted", inst.url, inst.project)

    async def freeze(self, inst: Instance) -> None:
        self.require_running(inst)
        if self.status(inst) == "Frozen":
            raise BadRequest(f"Instance {inst.name!r} is already frozen")
        await self.lxc.freeze(self.paths(inst).name, self.cgroup(inst))
        # Recorded so a restart can tell it from a freeze the daemon made for a copy.
        self.set_volatile(inst, {"volatile.last_state.power": "FROZEN"})
        self.d.bus.lifecycle("instance-paused", inst.url, inst.project)

    async def unfreeze(self, inst: Instance) -> None:
        self.require_running(inst)
        if self.status(inst) != "Frozen":
            raise BadRequest(f"Instance {inst.name!r} is not frozen")
        await self.lxc.unfreeze(self.paths(inst).name, self.cgroup(inst))
        self.set_volatile(inst, {"volatile.last_state.power": "RUNNING"})
        self.d.bus.lifecycle("instance-resumed", inst.url, inst.project)

    async def change_state(self, inst: Instance, action: str, force: bool,
                           timeout: float, stateful: bool = False) -> None:
        if stateful:
            raise BadRequest("Stateful stop/start needs CRIU, which does not work on this "
                             "host (criu check fails); use a stateless action")
        async with self.lock(inst.project, inst.name):
            inst = self.load(inst.project, inst.name)
            if action == "start":
                await self.start(inst)
            elif action == "stop":
                await self.stop(inst, force, timeout)
            elif action == "restart":
                await self.restart(inst, force, timeout)
            elif action == "freeze":
                await self.freeze(inst)
            elif action == "unfreeze":
                await self.unfreeze(inst)
            else:
                raise BadRequest(f"Unknown action {action!r}")

    # Update / rename / delete --------------------------------------------------
    async def update(self, inst: Instance, body: dict, patch: bool) -> None:
        if not isinstance(body, dict):
            raise BadRequest("Request body must be a JSON object")
        config = cfg.validate_config(body.get("config", {} if not patch else inst.config))
        if patch and "config" in body:
            config = {**inst.config, **config}
        devices = cfg.validate_devices(body.get("devices", {} if not patch else inst.devices))
        if patch and "devices" in body:
            devices = {**inst.devices, **devices}
        profiles = body.get("profiles", inst.profiles if patch else ["default"])
        if not isinstance(profiles, list):
            raise BadRequest("'profiles' must be a list")
        profile_rows = self._profiles(inst.project, profiles)
        # Volatile keys belong to the daemon: keep ours unless the client sets them.
        for key, value in inst.config.items():
            if key.startswith("volatile.") and key not in config:
                config[key] = value
        # The API shows the id map in LXD's form; the same map sent back stays ours.
        shown, stored = config.get("volatile.last_state.idmap"), \
            inst.config.get("volatile.last_state.idmap")
        if shown and stored and shown != stored:
            try:
                if IdMap.decode(shown) == IdMap.decode(stored):
                    config["volatile.last_state.idmap"] = stored
            except ValueError:
                pass
        econfig, edevices = expand(profile_rows, config, devices)
        if root_disk(edevices) is None:
            raise BadRequest("No root disk device left after this change")
        rules = restrictions.rules(self.d, inst.project)
        rules.check_volatile(f"instance {inst.name!r}", config, inst.config, strip=False)
        rules.check(f"instance {inst.name!r}", econfig, edevices)
        architecture = arch.normalize(body["architecture"]) if body.get("architecture") \
            else inst.architecture
        ephemeral = bool(body.get("ephemeral", inst.ephemeral if patch else False))
        description = str(body.get("description", inst.description if patch else ""))
        async with self.lock(inst.project, inst.name):
            old_devices = inst.expanded_devices
            self.d.db.update("instances", {"id": inst.id}, config=config, devices=devices,
                             profiles=profiles, architecture=architecture,
                             ephemeral=ephemeral, description=description)
            new = self.load(inst.project, inst.name)
            if self.pid(new):
                try:
                    await self.apply_live(new, old_devices)
                except Exception:
                    # A change the running instance refused is not kept (as LXD).
                    self.d.db.update("instances", {"id": inst.id}, config=inst.config,
                                     devices=inst.devices, profiles=inst.profiles)
                    raise
            if (root_disk(old_devices) or ("", {}))[1].get("size") != \
                    (root_disk(edevices) or ("", {}))[1].get("size"):
                await self.apply_root_size(new)
        self.d.bus.lifecycle("instance-updated", inst.url, inst.project)

    async def apply_live(self, inst: Instance, old_devices: dict | None = None) -> None:
        """Push what can change on a running instance: cgroup limits, then devices."""
        name = self.paths(inst).name
        for setting, value in cgroups.live_limits(inst.expanded_config).items():
            await self.lxc.set_cgroup(name, setting, value)
        if old_devices is not None:
            await self.d.devices.hotplug(inst, old_devices)

    async def rename(self, inst: Instance, new_name: object) -> None:
        new_name = cfg.validate_name(new_name)
        async with self.lock(inst.project, inst.name):
            if self.pid(inst):
                raise BadRequest("Renaming a running instance isn't supported: stop it first")
            if self.d.db.get("instances", project=inst.project, name=new_name):
                raise Conflict(f"Instance {new_name!r} already exists")
            old_paths = self.paths(inst)
            old_vol = volume_name(inst.project, inst.name)
            new_vol = volume_name(inst.project, new_name)
            await self.pool(inst).rename_instance(old_vol, new_vol)
            self.d.db.update("instances", {"id": inst.id}, name=new_name)
            if os.path.isdir(old_paths.log_dir):
                os.rename(old_paths.log_dir, os.path.join(self.d.paths.logs, new_vol))
            self.locks.pop((inst.project, inst.name), None)
            new = self.load(inst.project, new_name)
            self.set_volatile(new, {"volatile.apply_template": "rename"}
                               if "volatile.apply_template" not in new.config else {})
        self.d.bus.lifecycle("instance-renamed", new.url, inst.project,
                             {"old_name": inst.name})

    async def delete(self, inst: Instance) -> None:
        async with self.lock(inst.project, inst.name):
            inst = self.load(inst.project, inst.name)
            if cfg.truthy(inst.expanded_config.get("security.protection.delete")):
                raise BadRequest("Instance is protected (security.protection.delete)")
            if self.pid(inst):
                raise BadRequest(f"Instance {inst.name!r} is running: stop it first")
            await self.d.devices.before_delete(inst)
            await self.purge(inst)
        self.d.bus.lifecycle("instance-deleted", inst.url, inst.project)
        LOG.info("instance %s/%s deleted", inst.project, inst.name)

    # Daemon start ----------------------------------------------------------------
    async def reconcile(self) -> list[Instance]:
        """After a daemon restart: adopt containers that kept running.

        Returns the instances that were running when the daemon went away but are
        not now (host reboot, or killed meanwhile): autostart restores them.
        """
        lost = []
        inits = lxc.running_inits(self.d.paths.lxcpath)
        for inst in self.list(None):
            name = self.paths(inst).name
            pid = inits.get(name)
            if pid is None and name in inits:
                pid = await self.lxc.init_pid(name)
            if inst.config.get(cfg.INCOMPLETE_KEY) and not pid:
                LOG.warning("removing %s/%s: it was still being made when the daemon "
                            "stopped", inst.project, inst.name)
                await self.purge(inst)
                continue
            if pid:
                self.pids[inst.id] = pid
                self._watch(inst, pid)
                if inst.config.get("volatile.last_state.power") not in ("RUNNING", "FROZEN"):
                    self.set_volatile(inst, {"volatile.last_state.power": "RUNNING"})
            elif inst.config.get("volatile.last_state.power") in ("RUNNING", "FROZEN"):
                try:  # what its stop would have undone: block mounts, device nodes, ifbs
                    await self.d.devices.after_stop(inst)
                except Exception:  # noqa: BLE001 - adopt the others all the same
                    LOG.exception("clean-up after %s/%s stopped failed", inst.project,
                                  inst.name)
                if inst.ephemeral:
                    await self.purge(inst)
                    continue
                self.set_volatile(inst, {"volatile.last_state.power": "STOPPED"})
                lost.append(inst)
        return lost

    async def autostart(self, lost: list[Instance]) -> None:
        """Start boot.autostart=true instances, and restore the last state where unset."""
        lost_ids = {i.id for i in lost}
        todo = []
        for inst in self.list(None):
            auto = inst.expanded_config.get("boot.autostart")
            if self.pid(inst) is None and (cfg.truthy(auto) or
                                           (auto is None and inst.id in lost_ids)):
                todo.append(inst)
        todo.sort(key=lambda i: -int(i.expanded_config.get("boot.autostart.priority") or 0))
        for inst in todo:
            try:
                await asyncio.sleep(float(inst.expanded_config.get(
                    "boot.autostart.delay") or 0))
                await self.change_state(inst, "start", False, 0)
            except Exception as exc:  # noqa: BLE001 - keep starting the others
                LOG.error("autostart of %s failed: %s", inst.name, exc)


def _check_traversable(path: str, root_uid: int) -> None:
    """An unprivileged container's root (a host uid without privileges) must be able to
    reach its rootfs: every parent directory needs the execute bit for others (or for
    its owner, where that is the container's root: its own 0100 volume directory)."""
    import stat
    parent = os.path.dirname(os.path.realpath(path))
    while parent and parent != "/":
        st = os.stat(parent)
        if not (st.st_mode & stat.S_IXOTH or
                (st.st_uid == root_uid and st.st_mode & stat.S_IXUSR)):
            raise BadRequest(
                f"Unprivileged containers can't reach their root filesystem: {parent} is "
                "not traversable by other users (it needs o+x); put LXD_DIR (or the "
                "storage pool) under world-traversable directories")
        parent = os.path.dirname(parent)
