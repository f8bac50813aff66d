"""Moving containers to and from an LXD daemon, in LXD's own migration protocol.

`lxd_protocol` has the messages, `lxd_rsync` the file transfer; this module
plays the two roles: `LxdReceiver` takes an instance an LXD source offers (and
its snapshots), `LxdSender` offers one of ours to an LXD target. Everything the
native wire format checks (names, config, profiles, snapshots, the id map) goes
through the same checks here: the LXD offer and its index header are turned
into a native header first. Files arrive through `rsync --server` into the new
volume; then the volume is held to what a native stream may hold (its own
top-level entries, no device nodes an unprivileged container could not make)
and re-owned from the source's id map to ours.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import stat

import aiohttp

from runtime.errors import BadRequest, RuntimeAPIError
from runtime.instances import restrictions
from runtime.migration import common
from runtime.migration import lxd_protocol as proto
from runtime.migration import lxd_rsync
from runtime.storage import VOLUME, shift, volume_name

LOG = logging.getLogger(__name__)
# What a received volume directory may hold at its top (LXD adds backup.yaml).
_TOP = {"rootfs": stat.S_IFDIR, "metadata.yaml": stat.S_IFREG, "templates": stat.S_IFDIR}
# How our volumes are sent: the whole volume's entries only (whatever a driver keeps
# beside them stays home).
_SEND_FILTER = ["--include=/rootfs/", "--include=/metadata.yaml", "--include=/templates/",
                "--exclude=/*"]


class PeerFailed(common.TransferError):
    """The LXD peer reported a failure on the control channel."""


# Control and fs framing ------------------------------------------------------------
async def recv_message(ws, cls, timeout: float | None):
    msg = await ws.receive(timeout=timeout)
    if msg.type == aiohttp.WSMsgType.BINARY:
        return proto.parse(cls, msg.data)
    if msg.type == aiohttp.WSMsgType.TEXT:
        raise proto.ProtocolError("The migration peer sent text where LXD's protocol has a "
                                  "protobuf message (a runtime speaking another wire format?)")
    raise common.TransferError(f"Migration peer went away ({msg.type.name})")


async def send_message(ws, msg) -> None:
    await ws.send_bytes(msg.SerializeToString())


async def send_failure(ws, error: BaseException | str) -> None:
    """Tell the LXD peer we failed, as its sendControl does; never raises."""
    if ws is None or getattr(ws, "closed", False):
        return
    try:
        await asyncio.wait_for(send_message(ws, proto.control(False, str(error))), 5)
    except (OSError, RuntimeError, ConnectionError, TimeoutError, aiohttp.ClientError):
        pass


async def watch_control(ws) -> None:
    """Return never; raise when the peer reports a failure or goes away mid-transfer."""
    while True:
        msg = await recv_message(ws, proto.MigrationControl, None)
        if not msg.success:
            raise PeerFailed(f"LXD peer failed: {msg.message}")
        LOG.warning("unexpected success message from the LXD peer before the end")


async def with_control(control, work):
    """Run work while watching control; the first to fail stops the other."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(watch_control(control))
    try:
        done, _ = await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            return task.result()
        return watcher.result()     # raises: the watcher only ends by failing
    finally:
        for t in (task, watcher):
            if not t.done():
                t.cancel()
        await asyncio.gather(task, watcher, return_exceptions=True)


async def recv_frames(ws, limit: int = 4 * 1024 * 1024) -> bytes:
    """Binary frames up to the empty text frame (the index header and its answer)."""
    out = b""
    while True:
        msg = await ws.receive()
        if msg.type == aiohttp.WSMsgType.TEXT:
            return out
        if msg.type != aiohttp.WSMsgType.BINARY:
            raise common.TransferError(f"Migration peer went away ({msg.type.name})")
        out += msg.data
        if len(out) > limit:
            raise proto.ProtocolError("Migration index header too large")


async def send_frames(ws, data: bytes) -> None:
    await ws.send_bytes(data)
    await ws.send_str("")


def _json(data: bytes, what: str) -> dict:
    try:
        value = json.loads(data or b"{}")
    except ValueError as exc:
        raise proto.ProtocolError(f"Bad {what} from the LXD peer: {exc}")
    if not isinstance(value, dict):
        raise proto.ProtocolError(f"Bad {what} from the LXD peer")
    return value


# Receiving from LXD ------------------------------------------------------------------
def _list_of_dicts(value: object, what: str) -> list[dict]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise proto.ProtocolError(f"Bad migration index header from the LXD peer: {what} "
                                  "must be a list of objects")
    return value


def native_header(offer, info: dict, src_map) -> dict:
    """LXD's offer and index header in our wire format's shape, then checked as such.

    Both come from the peer: only shapes are sorted out here (anything odd is a
    ProtocolError, never a TypeError), the content is common.check_header's job.
    """
    config = info.get("config")
    if not isinstance(config, dict):
        config = {}
    ci = {k.lower(): v for k, v in config.items()}
    container = ci.get("container")
    if container is not None and not isinstance(container, dict):
        raise proto.ProtocolError("Bad migration index header from the LXD peer: "
                                  "Container must be an object")
    container = container or {}
    instance = {k: container[k] for k in ("architecture", "config", "devices", "profiles",
                                          "ephemeral", "description", "stateful")
                if k in container}
    names = instance.get("profiles")
    if names is not None and (not isinstance(names, list) or
                              not all(isinstance(n, str) for n in names)):
        raise proto.ProtocolError("Bad migration index header from the LXD peer: "
                                  "the instance's profiles must be a list of names")
    used = set(names or [])
    profiles = {}
    for prof in _list_of_dicts(ci.get("profiles"), "Profiles"):
        name = prof.get("name")
        if isinstance(name, str) and name in used:
            profiles[name] = {k: prof.get(k) for k in ("config", "devices", "description")}
    described = {snap["name"]: snap
                 for snap in _list_of_dicts(ci.get("snapshots"), "Snapshots")
                 if isinstance(snap.get("name"), str)}
    if len(offer.snapshotNames) != len(offer.snapshots):
        raise proto.ProtocolError("The LXD source sent snapshot names without their records "
                                  "(LXD before 3.0?) or records without names")
    if len(offer.snapshots) > common.MAX_SNAPSHOTS:
        raise proto.ProtocolError(f"The LXD source offers more than {common.MAX_SNAPSHOTS} "
                                  "snapshots")
    snapshots = []
    for listed, msg in zip(offer.snapshotNames, offer.snapshots, strict=True):
        if listed != msg.name:
            raise proto.ProtocolError(f"The LXD source's snapshot {listed!r} comes with the "
                                      f"record of {msg.name!r}")
        record = proto.snapshot_record(msg)
        if isinstance(described.get(msg.name, {}).get("description"), str):
            record["description"] = described[msg.name]["description"]
        snapshots.append(record)
    return {"version": 1, "instance": instance, "profiles": profiles,
            "snapshots": snapshots, "idmap": src_map.encode(), "running": False,
            "start": False, "base_image": None}


def settle_volume(path: str, src_map, dst_map, privileged: bool) -> None:
    """Hold a volume rsync wrote to what a native stream may hold, then re-own it.

    Top level: rootfs/, metadata.yaml, templates/ as what they claim to be
    (never symlinks), anything else removed. Below rootfs: device nodes only
    those an unprivileged container could make itself (or any for a privileged
    one). Owners move from the source's map to ours, clamped into ours.
    """
    from runtime.instances.seccomp_notify import ALLOWED_CHAR
    for entry in os.listdir(path):
        full = os.path.join(path, entry)
        st = os.lstat(full)
        if _TOP.get(entry) != stat.S_IFMT(st.st_mode):
            if stat.S_ISDIR(st.st_mode):
                shutil.rmtree(full)
            else:
                os.unlink(full)
    rootfs = os.path.join(path, "rootfs")
    if not os.path.isdir(rootfs) or os.path.islink(rootfs):
        raise common.TransferError("The LXD source sent no root filesystem")
    for dirpath, dirnames, filenames in os.walk(rootfs):
        for name in filenames + dirnames:
            full = os.path.join(dirpath, name)
            st = os.lstat(full)
            if privileged or not (stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)):
                continue
            dev = (os.major(st.st_rdev), os.minor(st.st_rdev))
            if stat.S_ISBLK(st.st_mode) or dev not in ALLOWED_CHAR:
                LOG.warning("migration from LXD: dropped device node %s (%s %d:%d)", full,
                            "block" if stat.S_ISBLK(st.st_mode) else "char", *dev)
                os.unlink(full)
    shift.shift_tree(rootfs, src_map, dst_map, clamp=True)


class LxdReceiver(common.ReceiverBase):
    """The target of a migration whose source is an LXD daemon."""

    async def run(self, control, fs) -> None:
        d = self.d
        try:
            offer = await recv_message(control, proto.MigrationHeader,
                                       common.CONNECT_TIMEOUT * 4)
            self.mark("header")
            problem = proto.refusal(offer)
            if problem:
                raise BadRequest(f"Can't receive from this LXD source: {problem}")
            src_map = proto.idmap_from(offer.idmap)
            resp = proto.response_for(offer)
            await send_message(control, resp)
            info: dict = {}
            if resp.indexHeaderVersion >= 1:
                info = _json(await recv_frames(fs), "migration index header")
            header = common.check_header(native_header(offer, info, src_map))
            body_profiles = self.body.get("profiles")
            self.ensure_profiles(header, body_profiles if body_profiles is not None
                                  else header["instance"].get("profiles"))
            spec = self.spec(header)
            restrictions.check_snapshot_copies(d, self.project, spec["name"],
                                               header["snapshots"])
        except RuntimeAPIError as exc:
            await send_failure(control, exc)
            raise
        if resp.indexHeaderVersion >= 1:
            await send_frames(fs, json.dumps({"StatusCode": 200, "Error": "",
                                              "Refresh": False}).encode())
        inst = d.instances.insert(self.project, spec)
        self.inst = inst
        self.mark("record")
        try:
            await with_control(control, self._receive_rsync(
                inst, header, fs, proto.rsync_features(resp), src_map,
                final_sync=offer.HasField("criu") and offer.criu == proto.CRIU_NONE))
            await send_message(control, proto.control(True))
        except BaseException as exc:
            LOG.warning("incoming migration of %s from LXD failed: %s", inst.name, exc)
            try:
                await d.instances.purge(inst)
            finally:
                await send_failure(control, exc)
            raise
        d.bus.lifecycle("instance-created", inst.url, self.project)
        if self.body.get("start"):
            await d.instances.change_state(d.instances.load(self.project, inst.name),
                                           "start", False, 0)

    async def _receive_rsync(self, inst, header: dict, fs, features, src_map,
                             final_sync: bool) -> None:
        d = self.d
        mgr = d.instances
        async with mgr.lock(self.project, inst.name):
            idmap = mgr.wanted_idmap(inst)
            pool = mgr.pool(inst)
            vol = volume_name(self.project, inst.name)
            path, _tree = await pool.prepare_receive(vol, VOLUME, None, idmap,
                                                     d.default_idmap)
            self.mark("volume")
            for snap in header["snapshots"]:
                await lxd_rsync.receive(fs, path, features)
                await asyncio.to_thread(settle_volume, path, src_map, idmap,
                                        idmap.privileged)
                await pool.create_snapshot(vol, snap["name"])
                self.record_snapshot(inst, snap)
            self.mark("snapshots")
            for _ in range(2 if final_sync else 1):
                await lxd_rsync.receive(fs, path, features)
            self.mark("rootfs")
            await asyncio.to_thread(settle_volume, path, src_map, idmap, idmap.privileged)
            self.mark("shift")
            mgr.set_volatile(inst, {"volatile.last_state.idmap": idmap.encode(),
                                     "volatile.idmap.base": str(idmap.base)})
            mgr.completed(inst)
            await mgr.apply_root_size(inst)
            LOG.info("instance %s/%s received from LXD (%d snapshots; %s)", self.project,
                     inst.name, len(header["snapshots"]),
                     ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in self.marks))


# Sending to LXD -----------------------------------------------------------------------
def index_header(inst, snapshots: list[dict]) -> dict:
    """LXD's `Info`: the backup config the target reads volume settings from.

    Its Go struct has no JSON tags, so the keys are the Go field names.
    """
    return {"config": {
        "Container": {"name": inst.name, "architecture": inst.architecture,
                      "config": inst.config, "devices": inst.devices,
                      "profiles": inst.profiles, "ephemeral": inst.ephemeral,
                      "description": inst.description, "type": "container"},
        "Volume": {"name": inst.name, "type": "container", "config": {},
                   "description": "", "content_type": "filesystem"},
        "VolumeSnapshots": [{"name": s["name"], "config": {}, "description": "",
                             "content_type": "filesystem"} for s in snapshots]}}


class LxdSender(common.SenderBase):
    """The source of a migration whose target is an LXD daemon."""

    async def run(self, control, fs) -> None:
        try:
            await self._run(control, fs)
        except BaseException as exc:
            await send_failure(control, exc)
            raise

    async def _run(self, control, fs) -> None:
        d = self.d
        async with d.instances.lock(self.inst.project, self.inst.name):
            inst = self.inst = d.instances.load(self.inst.project, self.inst.name)
            running = d.instances.pid(inst) is not None and not self.snapshot
            stop_it = running and not self.allow_inconsistent
            header = self.header(stop_it)
            pool = d.instances.pool(inst)
            vol = volume_name(inst.project, inst.name)
            await send_message(control, proto.offer(d.instances.idmap_of(inst),
                                                    header["snapshots"]))
            resp = await recv_message(control, proto.MigrationHeader,
                                      common.CONNECT_TIMEOUT * 4)
            if resp.fs != proto.FS_RSYNC:
                raise proto.ProtocolError(
                    "The LXD target asks for a "
                    f"{proto.FS_NAMES.get(resp.fs, resp.fs)} transfer; this runtime sends "
                    "rsync")
            features = proto.rsync_features(resp)
            if resp.indexHeaderVersion >= 1:
                await send_frames(fs, json.dumps(index_header(
                    inst, header["snapshots"])).encode())
                answer = _json(await recv_frames(fs), "migration index header response")
                if answer.get("StatusCode") != 200:
                    raise PeerFailed(f"LXD target refused: {answer.get('Error')}")
            async with self.guard(pool, vol) as guard:
                if stop_it:
                    await guard.stop()
                await with_control(control, self._send_volumes(
                    pool, vol, header["snapshots"], fs, features, running and not stop_it))
                result = await recv_message(control, proto.MigrationControl, None)
                if not result.success:
                    raise PeerFailed(f"LXD target failed: {result.message}")
                guard.sent()
                LOG.info("instance %s/%s sent to LXD (%d snapshots)", inst.project, inst.name,
                         len(header["snapshots"]))

    async def _send_volumes(self, pool, vol: str, snapshots: list, fs, features,
                            inconsistent: bool) -> None:
        for snap in snapshots:
            await pool.mount_snapshot(vol, snap["name"])
            try:
                await lxd_rsync.send(fs, pool.send_source(vol, snap["name"], VOLUME)[0],
                                     features, _SEND_FILTER, self.progress)
            finally:
                await pool.unmount_snapshot(vol, snap["name"])
        await self.mount(pool, vol)
        await lxd_rsync.send(fs, self.source(pool, vol)[0], features, _SEND_FILTER,
                             self.progress, allow_vanished=inconsistent)
