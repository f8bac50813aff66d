"""Copy and move instances between hosts over websockets (pull and push modes).

The source answers `POST /1.0/instances/<n> {"migration": true}` with a
websocket operation holding two one-time secrets, `control` and `fs`; the target
(`source.type: migration`) connects to both over HTTPS, pinning the source's
certificate and presenting its own. In push mode the roles of who connects are
swapped; the data flow is the same.

Our own wire format (LXD's protobuf/rsync protocol is not needed between our
daemons):
  control, sender -> receiver: JSON header (instance record, profiles, snapshots,
      the id map the files are owned by on the sender, whether it was running)
  control, receiver -> sender: {"ready": true} or {"error": ...}
  fs: for each snapshot (oldest first) then the instance, a tar stream as binary
      frames ended by the text frame "end"
  control, receiver -> sender: {"success": true} or {"success": false, "error": ...}

In pull mode the receiver reads `fs` on a blocking socket in a thread
(runtime/wsclient.py) and writes it straight into `tar -x`; the event loop
only sees the control messages.

Files travel with their owners as numeric host ids; the receiver shifts them to
its own id map. Nothing is held in memory beyond one chunk. If either side
dies, the other sees its websocket close: the receiver removes the half-made
instance, the sender restarts an instance it had stopped for the move.
"""
from __future__ import annotations

import asyncio
import fcntl
import json
import logging
import os
import queue
import shutil
import threading
import time

import aiohttp
from aiohttp import web

from runtime import arch, crashpoint, proc, targuard, wsclient
from runtime.instances import restrictions
from runtime.appkeys import DAEMON
from runtime.errors import BadRequest, Conflict, RuntimeAPIError
from runtime.base.idmap import IdMap
from runtime.storage import shift, volume_name

LOG = logging.getLogger(__name__)
# The websocket subprotocol naming this wire format: offered by whoever connects,
# picked by whoever accepts when it speaks it too (see runtime/migration/__init__).
WIRE_PROTOCOL = "nova-lxd-migration-1"
CHUNK = 4 * 1024 * 1024
PIPE_SIZE = 1024 * 1024
CONNECT_TIMEOUT = 30.0
IDLE_TIMEOUT = 300.0    # a blocking fs stream that stalls this long has failed
# Volatile keys that describe the sender's host, not the instance.
_HOST_VOLATILE = ("volatile.last_state.idmap", "volatile.idmap.base", "volatile.idmap.current",
                  "volatile.idmap.next", "volatile.last_state.power", "volatile.apply_template")
_F_SETPIPE_SZ = 1031
_VOLUME_ENTRIES = ["rootfs", "metadata.yaml", "templates"]
# The dir pool's overlay instances: an image layer (named in .lower) and their own
# upper layer. When the target has the same image, only the upper layer travels.
_LAYER_ENTRIES = [".upper", "metadata.yaml", "templates"]


def overlay_base(pool, path: str) -> str | None:
    """The image fingerprint a volume (or snapshot) is layered on, if any."""
    return pool.layer_base(path)


class TransferError(RuntimeAPIError):
    status = 500


# CRIU ------------------------------------------------------------------------
_criu_result: str | None = None


async def criu_problem() -> str | None:
    """Why live migration can't work here (None when `criu check` passes)."""
    global _criu_result
    if _criu_result is None:
        if not shutil.which("criu"):
            _criu_result = "criu is not installed"
        else:
            rc, out, err = await proc.run(["criu", "check"], check=False)
            _criu_result = "" if rc == 0 else (err or out).strip().splitlines()[-1:][0] \
                if (err or out).strip() else f"criu check exited {rc}"
    return _criu_result or None


async def refuse_live() -> None:
    problem = await criu_problem()
    if problem:
        raise BadRequest("Live migration needs CRIU, and `criu check` fails on this host "
                         f"({problem}): stop the instance or migrate it stateless")
    raise BadRequest("Live migration is not implemented by this runtime: migrate stateless")


# Websocket helpers ----------------------------------------------------------------
async def _recv_json(ws, timeout: float | None = None) -> dict:
    msg = await ws.receive(timeout=timeout)
    if msg.type != aiohttp.WSMsgType.TEXT:
        raise TransferError(f"Migration peer went away ({msg.type.name})")
    try:
        data = json.loads(msg.data)
    except json.JSONDecodeError as exc:
        raise TransferError(f"Bad migration control message: {exc}")
    if not isinstance(data, dict):
        raise TransferError("Bad migration control message")
    return data


async def _send_json(ws, data: dict) -> None:
    await ws.send_str(json.dumps(data))


def _ws_url(operation: str, secret: str) -> str:
    url = operation.rstrip("/")
    if url.startswith("https://"):
        url = "wss://" + url[len("https://"):]
    elif url.startswith("http://"):
        url = "ws://" + url[len("http://"):]
    return f"{url}/websocket?secret={secret}"


class _Peer:
    """Client-side websockets to the other daemon's operation (control and fs)."""

    def __init__(self, d, operation: str, secrets: dict, certificate: str | None):
        if not operation or not isinstance(secrets, dict) or not secrets.get("control") \
                or not secrets.get("fs"):
            raise BadRequest("Migration source needs 'operation' and 'secrets' with "
                             "'control' and 'fs'")
        self.d, self.operation, self.secrets = d, operation, secrets
        self.certificate = certificate
        self.session: aiohttp.ClientSession | None = None

    async def connect(self, receive: bool = False) -> tuple:
        """(control, fs); a receiver's fs is a BlockingWebSocket read in a thread."""
        tls = getattr(self.d, "tls", None)
        ssl_ctx = tls.client_ssl(self.certificate) if tls else False
        self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(
            total=None, connect=CONNECT_TIMEOUT))

        def aio(name: str):
            return self.session.ws_connect(
                _ws_url(self.operation, self.secrets[name]), ssl=ssl_ctx,
                max_msg_size=wsclient.MAX_MESSAGE,
                autoping=True, heartbeat=None, protocols=(WIRE_PROTOCOL,))
        fs = asyncio.to_thread(wsclient.BlockingWebSocket(
            _ws_url(self.operation, self.secrets["fs"]), ssl_ctx or None,
            CONNECT_TIMEOUT, IDLE_TIMEOUT, protocols=(WIRE_PROTOCOL,)).connect) \
            if receive else aio("fs")
        # Both handshakes at once: each TLS handshake costs a few round trips.
        results = await asyncio.gather(aio("control"), fs, return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            for r in results:
                if not isinstance(r, BaseException):
                    await _close(r)
            await self.close()
            exc = errors[0]
            if isinstance(exc, (aiohttp.ClientError, OSError, wsclient.WebSocketError)):
                raise BadRequest(f"Can't reach the migration peer at {self.operation}: {exc}")
            raise exc
        return tuple(results)

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()
            self.session = None


async def _close(*sockets) -> None:
    for ws in sockets:
        if isinstance(ws, wsclient.BlockingWebSocket):
            await asyncio.to_thread(ws.close)
        elif ws is not None and not ws.closed:
            try:
                await asyncio.wait_for(ws.close(), 2)
            except (TimeoutError, OSError, RuntimeError):
                pass


def _websocket_op(d, description: str, run, project: str, resources: dict):
    """A websocket operation whose metadata is exactly its secrets (what pylxd reads)."""
    op = d.ops.create("websocket", description, run, project=project, resources=resources,
                      websockets=["control", "fs"])
    op.ws_protocols = (WIRE_PROTOCOL,)
    op.metadata.pop("fds", None)
    op.metadata.update(op.secrets)
    return op


# Sender -------------------------------------------------------------------------
def _pipe() -> tuple[int, int]:
    r, w = os.pipe2(os.O_CLOEXEC)
    try:
        fcntl.fcntl(w, _F_SETPIPE_SZ, PIPE_SIZE)
    except OSError:
        pass
    return r, w


class TarSource:
    """A `tar -c` of directory/entries, started early so it overlaps the handshake.

    Its output is read by a thread (blocking reads release the GIL), so reading
    the pipe overlaps with the event loop encrypting and sending the last chunk.
    """

    def __init__(self, directory: str, entries: list[str]):
        self.directory = directory
        self.entries = [e for e in entries if os.path.lexists(os.path.join(directory, e))]
        self.p: asyncio.subprocess.Process | None = None
        self.rfd: int | None = None
        self.streaming = False

    async def start(self) -> "TarSource":
        r, w = _pipe()
        try:
            self.p = await asyncio.create_subprocess_exec(
                "tar", "-c", "-f", "-", "-b", "256", "--numeric-owner", "--xattrs",
                "--xattrs-include=*", "-C", self.directory, "--", *self.entries,
                stdout=w, stderr=asyncio.subprocess.PIPE)
        except BaseException:
            os.close(r)
            raise
        finally:
            os.close(w)
        self.rfd = r
        return self

    async def stream(self, fs, progress=None) -> int:
        """Send as binary frames (what one read gives, up to 1 MB), then "end"."""
        if self.p is None:
            await self.start()
        p, loop = self.p, asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue(maxsize=8)
        stop = threading.Event()

        def reader() -> None:
            while not stop.is_set():
                try:
                    data = os.read(self.rfd, PIPE_SIZE)
                except OSError:
                    data = b""
                asyncio.run_coroutine_threadsafe(queue.put(data), loop).result()
                if not data:
                    return
        thread = threading.Thread(target=reader, name="tar-send", daemon=True)
        self.streaming = True
        thread.start()
        total = 0
        try:
            while data := await queue.get():
                await fs.send_bytes(data)
                total += len(data)
                if progress is not None:
                    progress(len(data))
            err = await p.stderr.read()
            rc = await p.wait()
            if rc != 0:
                raise TransferError(f"tar failed on the source: {err.decode(errors='replace')}")
            await fs.send_str("end")
            return total
        finally:
            stop.set()
            await self.kill()
            while thread.is_alive():          # unblock a reader waiting on a full queue
                while not queue.empty():
                    queue.get_nowait()
                await asyncio.sleep(0.01)
            self.streaming = False
            self._close()

    def _close(self) -> None:
        if self.rfd is not None:
            os.close(self.rfd)
            self.rfd = None

    async def kill(self) -> None:
        if self.p is not None and self.p.returncode is None:
            self.p.kill()
            await self.p.wait()
        if not self.streaming:
            self._close()


async def _tar_send(fs, directory: str, entries: list[str], progress=None) -> int:
    return await TarSource(directory, entries).stream(fs, progress)


def _record(inst) -> dict:
    return {"name": inst.name, "architecture": inst.architecture, "config": inst.config,
            "devices": inst.devices, "profiles": inst.profiles, "ephemeral": inst.ephemeral,
            "description": inst.description, "stateful": inst.stateful}


class Sender:
    """Streams an instance (with its snapshots), or one snapshot as a new instance."""

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
            for s in d.db.select("snapshots", {"instance_id": inst.id}, order="id")]
        pool = d.instances.pool(inst)
        vol = volume_name(inst.project, inst.name)
        record = _record(inst)
        if self.snapshot:
            row = d.db.get("snapshots", instance_id=inst.id, name=self.snapshot)
            if row is None:
                raise TransferError(f"Snapshot {self.snapshot!r} is gone")
            record.update({k: row[k] for k in ("architecture", "config", "devices",
                                               "profiles", "ephemeral", "description")})
        base = overlay_base(pool, self._dir(pool, vol))
        if base and any(overlay_base(pool, pool.snapshot_path(vol, s["name"])) != base
                        for s in snaps):
            base = None
        return {"version": 1, "instance": record, "profiles": profiles,
                "snapshots": snaps, "idmap": d.instances.idmap_of(inst).encode(),
                "running": running, "start": running and self.finish_move,
                "base_image": base}

    def _dir(self, pool, vol: str) -> str:
        return pool.snapshot_path(vol, self.snapshot) if self.snapshot else \
            pool.instance_path(vol)

    async def _mount(self, pool, vol: str) -> None:
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

    async def run(self, control, fs) -> None:
        d = self.d
        async with d.instances.lock(self.inst.project, self.inst.name):
            inst = self.inst = d.instances.load(self.inst.project, self.inst.name)
            running = d.instances.pid(inst) is not None and not self.snapshot
            stop_it = running and not self.allow_inconsistent
            header = self.header(stop_it)
            pool = d.instances.pool(inst)
            vol = volume_name(inst.project, inst.name)
            early = None
            if not stop_it and not header["snapshots"]:
                # Nothing to stop first: let tar start while the target gets ready
                # (betting on the layer alone when the target may have the image).
                if header["base_image"]:
                    early = await TarSource(self._dir(pool, vol), _LAYER_ENTRIES).start()
                else:
                    await self._mount(pool, vol)
                    early = await TarSource(self._dir(pool, vol), _VOLUME_ENTRIES).start()
            stopped = False
            try:
                await _send_json(control, header)
                reply = await _recv_json(control, CONNECT_TIMEOUT * 4)
                if not reply.get("ready"):
                    raise TransferError(f"Migration target refused: {reply.get('error')}")
                layered = bool(reply.get("layered"))
                entries = _LAYER_ENTRIES if layered else _VOLUME_ENTRIES
                if early is not None and early.entries != [
                        e for e in entries if os.path.lexists(os.path.join(early.directory, e))]:
                    await early.kill()
                    early = None
                if stop_it:
                    await d.instances.stop(inst, True, 0)
                    stopped = True
                for snap in header["snapshots"]:
                    if not layered:
                        await pool.mount_snapshot(vol, snap["name"])
                    try:
                        await _tar_send(fs, pool.snapshot_path(vol, snap["name"]),
                                        entries, self.progress)
                    finally:
                        if not layered:
                            await pool.unmount_snapshot(vol, snap["name"])
                if early is None:
                    if not layered:
                        await self._mount(pool, vol)
                    early = TarSource(self._dir(pool, vol), entries)
                sent = await early.stream(fs, self.progress)
                result = await _recv_json(control, None)
                if not result.get("success"):
                    raise TransferError(f"Migration target failed: {result.get('error')}")
                LOG.info("instance %s/%s sent (%d bytes of root filesystem)", inst.project,
                         inst.name, sent)
                if stopped:
                    d.instances.set_volatile(inst, {"volatile.last_state.power": "STOPPED"})
            except BaseException:
                if early is not None:
                    await early.kill()
                if stopped:
                    try:
                        await d.instances.start(d.instances.load(inst.project, inst.name))
                    except Exception as exc:  # noqa: BLE001 - report the first error
                        LOG.error("restarting %s after a failed move: %s", inst.name, exc)
                raise
            finally:
                if self.snapshot:
                    await pool.unmount_snapshot(vol, self.snapshot)
                elif d.instances.pid(inst) is None:
                    await pool.unmount(vol)


async def migrate_source(request: web.Request, inst, body: dict,
                         snapshot: str | None = None):
    """`POST /1.0/instances/<n> {"migration": true}`: expose or push the instance.

    With `snapshot`, the answer to `POST /1.0/instances/<n>/snapshots/<s>
    {"migration": true}`: that snapshot travels as a new instance (`lxc copy c/s r:`).
    """
    d = request.app[DAEMON]
    if body.get("live"):
        await refuse_live()
    if snapshot is not None and not d.db.get("snapshots", instance_id=inst.id,
                                             name=snapshot):
        from runtime.errors import NotFound
        raise NotFound(f"Snapshot {snapshot!r} not found")
    sender = Sender(d, inst, body, snapshot)
    resources = {"instances": [inst.url], "containers": [inst.url.replace(
        "/1.0/instances/", "/1.0/containers/")]}
    target = body.get("target")
    if isinstance(target, dict) and target.get("operation"):
        peer = _Peer(d, target["operation"], target.get("secrets") or {},
                     target.get("certificate"))

        async def push(op):
            control, fs = await peer.connect()
            try:
                await _sender_for(control, sender, d, inst, body, snapshot, op).run(control, fs)
            finally:
                await _close(control, fs)
                await peer.close()
        return _async(d.ops.create("task", "Migrating instance", push, project=inst.project,
                                   resources=resources, cancellable=True))

    async def pull(op):
        try:
            control = await op.socket("control", CONNECT_TIMEOUT)
            fs = await op.socket("fs", CONNECT_TIMEOUT)
        except TimeoutError:
            raise TransferError("Migration target never connected")
        try:
            await _sender_for(control, sender, d, inst, body, snapshot, op).run(control, fs)
        finally:
            for key in ("control", "fs"):
                op.metadata.pop(key, None)
    return _async(_websocket_op(d, "Migrating instance", pull, inst.project, resources))


def _async(op):
    """The operation the API answers with (202): migration builds no responses."""
    return op


def speaks_ours(ws) -> bool:
    """Whether the websocket handshake agreed on this wire format (if not: LXD's)."""
    return (getattr(ws, "ws_protocol", None) or getattr(ws, "protocol", None)) == WIRE_PROTOCOL


def _sender_for(control, sender, d, inst, body: dict, snapshot, op):
    if not speaks_ours(control):
        from runtime.migration.lxd_peer import LxdSender
        sender = LxdSender(d, inst, body, snapshot)
    sender.op = op
    return sender


# Receiver -----------------------------------------------------------------------
MAX_SNAPSHOTS = 10000


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


def _stream_policy(d, pool, tree: str, privileged: bool) -> targuard.Policy:
    """What one received volume stream may hold: its own entries, within free space."""
    from runtime.instances.seccomp_notify import ALLOWED_CHAR
    st = os.statvfs(pool.path)
    return targuard.Policy(
        "migration stream", int(st.f_bavail * st.f_frsize * 0.95),
        int(st.f_favail * 0.95) if st.f_files else 100_000_000,
        top_level=frozenset({tree, "metadata.yaml", "templates"}),
        directories=frozenset({tree, "templates"}), files=frozenset({"metadata.yaml"}),
        fifos="keep",
        # Device nodes an unprivileged container can make itself (LXD's mknod
        # interception: null, zero, full, random, urandom, tty, console, ptmx, and
        # overlay whiteouts); a privileged one may hold any.
        devices=None if privileged else frozenset(("c", a, b) for a, b in ALLOWED_CHAR))


async def _tar_receive(fs, directory: str, policy: targuard.Policy) -> int:
    """Feed one received tar stream (binary frames, then "end") to `tar -x`, through
    the guard: the websocket fills one pipe, a thread checks every header and passes
    checked members on to tar's pipe."""
    r, w = _pipe()
    r2, w2 = _pipe()
    try:
        p = await asyncio.create_subprocess_exec(
            "tar", "-x", "-f", "-", "-b", "256", "--numeric-owner", "--same-owner",
            "--same-permissions", "--xattrs", "--xattrs-include=*", "-C", directory,
            stdin=r2, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    except BaseException:
        for fd in (r, w, w2):
            os.close(fd)
        raise
    finally:
        os.close(r2)
    guard = targuard.Guard(policy)

    def check() -> targuard.Result:
        try:
            result = guard.pump(r, w2)
            while os.read(r, PIPE_SIZE):   # what follows the end of the archive: ignored
                pass
            return result
        finally:
            os.close(r)
            os.close(w2)
    checker = asyncio.ensure_future(asyncio.to_thread(check))
    try:
        if isinstance(fs, wsclient.BlockingWebSocket):
            total = await _blocking_receive(fs, p, w, checker)
        else:
            total = await _aio_receive(fs, p, w, checker)
    finally:
        if not checker.done():
            await asyncio.wait([checker])
    result = checker.result()
    await asyncio.to_thread(targuard.remove_dropped, directory, result.dropped)
    return total


async def _tar_result(p, failure: str | None, checker=None) -> None:
    """tar's exit; the guard's verdict first (a refused stream makes tar fail too)."""
    if checker is not None:
        await asyncio.wait([checker])
        if checker.exception() is not None:
            if p.returncode is None:
                p.kill()
            raise checker.exception()
    err = await p.stderr.read()
    if await p.wait() != 0 or failure:
        raise TransferError(f"tar failed on the target: "
                            f"{err.decode(errors='replace') or failure}")


async def _blocking_receive(fs, p, w: int, checker=None) -> int:
    """The whole stream in one thread: TLS reads and pipe writes, off the event loop."""
    def pump() -> tuple[int, str]:
        try:
            return fs.stream_to(w)
        finally:
            os.close(w)
    worker = asyncio.ensure_future(asyncio.to_thread(pump))
    try:
        try:
            total, text = await asyncio.shield(worker)
        except wsclient.WebSocketError as exc:
            raise TransferError(f"Migration source went away mid-transfer ({exc})")
        except OSError as exc:          # the pipe: the guard or tar -x stopped
            await _tar_result(p, str(exc), checker)
            raise
        if text != "end":
            raise TransferError(f"Unexpected message in the fs stream: {text[:80]!r}")
        await _tar_result(p, None, checker)
        return total
    finally:
        if not worker.done():
            fs.abort()
            await asyncio.wait([worker])
        if p.returncode is None:
            p.kill()
            await p.wait()


async def _aio_receive(fs, p, w: int, checker=None) -> int:
    """aiohttp frames (push mode, where the source connects to us); a thread writes the pipe."""
    loop = asyncio.get_running_loop()
    slots = asyncio.Semaphore(8)
    chunks: queue.SimpleQueue = queue.SimpleQueue()
    failed: list[OSError] = []

    def writer() -> None:
        try:
            while (data := chunks.get()) is not None:
                view = memoryview(data)
                while view and not failed:
                    try:
                        view = view[os.write(w, view):]
                    except OSError as exc:
                        failed.append(exc)
                loop.call_soon_threadsafe(slots.release)
        finally:
            os.close(w)
    thread = threading.Thread(target=writer, name="tar-receive", daemon=True)
    thread.start()
    total = 0
    try:
        while True:
            msg = await fs.receive()
            if msg.type == aiohttp.WSMsgType.BINARY:
                await slots.acquire()
                chunks.put(msg.data)
                total += len(msg.data)
            elif msg.type == aiohttp.WSMsgType.TEXT and msg.data == "end":
                break
            else:
                raise TransferError(f"Migration source went away mid-transfer "
                                    f"({msg.type.name})")
            if failed:
                break
        chunks.put(None)
        await asyncio.to_thread(thread.join)
        await _tar_result(p, str(failed[0]) if failed else None, checker)
        return total
    finally:
        if p.returncode is None:
            p.kill()
            await p.wait()
        if thread.is_alive():
            failed.append(OSError("aborted"))
            chunks.put(None)


async def _empty_dir(path: str) -> None:
    for entry in os.listdir(path):
        full = os.path.join(path, entry)
        if os.path.isdir(full) and not os.path.islink(full):
            await proc.run(["rm", "-rf", "--one-file-system", "--", full])
        else:
            os.unlink(full)


class Receiver:
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

    def _spec(self, header: dict) -> dict:
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

    def _ensure_profiles(self, header: dict, names: list[str]) -> None:
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

    async def run(self, control, fs) -> None:
        d = self.d
        self._t = time.monotonic()
        header = await _recv_json(control, CONNECT_TIMEOUT * 4)
        self.mark("header")
        try:
            header = check_header(header)
            body_profiles = self.body.get("profiles")
            self._ensure_profiles(header, body_profiles if body_profiles is not None
                                  else (header.get("instance") or {}).get("profiles"))
            spec = self._spec(header)
            restrictions.check_snapshot_copies(d, self.project, spec["name"],
                                               header.get("snapshots") or [])
        except RuntimeAPIError as exc:
            await _send_json(control, {"error": str(exc)})
            raise
        inst = d.instances.insert(self.project, spec)
        self.inst = inst
        self.mark("record")
        try:
            await self._receive(inst, header, control, fs)
        except BaseException as exc:
            LOG.warning("incoming migration of %s failed: %s", inst.name, exc)
            try:
                await d.instances.purge(inst)
            finally:
                if not control.closed:
                    try:
                        await _send_json(control, {"success": False, "error": str(exc)})
                    except (OSError, RuntimeError, ConnectionError):
                        pass
            raise
        d.bus.lifecycle("instance-created", inst.url, self.project)
        if header.get("start") or self.body.get("start"):
            await d.instances.change_state(d.instances.load(self.project, inst.name),
                                           "start", False, 0)

    def _record_snapshot(self, inst, snap: dict) -> None:
        """The database row of a received snapshot (snap: a checked header entry)."""
        self.d.db.insert("snapshots", instance_id=inst.id, name=snap["name"],
                         created_at=snap.get("created_at") or 0,
                         expires_at=snap.get("expires_at") or 0,
                         stateful=bool(snap.get("stateful")),
                         description=snap.get("description") or "",
                         architecture=snap.get("architecture") or inst.architecture,
                         ephemeral=bool(snap.get("ephemeral")),
                         config=snap.get("config") or {}, devices=snap.get("devices") or {},
                         profiles=snap.get("profiles") or [])

    async def _local_base(self, pool, fingerprint: str | None, idmap) -> str | None:
        """Our copy of the image the sender's volume is layered on, ready in the pool."""
        d = self.d
        if not fingerprint or not pool.layered or idmap != d.default_idmap:
            return None
        if not d.image_rows.held(fingerprint) or not os.path.exists(
                d.images.file(fingerprint)):
            return None
        try:
            await d.images.ensure_volume(pool, fingerprint)
        except RuntimeAPIError:
            return None
        return fingerprint

    @staticmethod
    async def _receive_snapshot_dir(pool, vol: str, snap: str, fs, policy, src_map,
                                    idmap) -> int:
        """One snapshot's stream unpacked as that snapshot's directory (dir pool,
        plain volume: the layout create_snapshot's copy would have made)."""
        spath = pool.new_snapshot_dir(vol, snap)
        received = await _tar_receive(fs, spath, policy)
        rootfs = os.path.join(spath, "rootfs")
        if not os.path.isdir(rootfs):
            os.mkdir(rootfs)
            if not idmap.privileged:
                os.chown(rootfs, idmap.base, idmap.base)
        await asyncio.to_thread(shift.shift_tree, rootfs, src_map, idmap, True)
        return received

    async def _receive(self, inst, header: dict, control, fs) -> None:
        d = self.d
        mgr = d.instances
        async with mgr.lock(self.project, inst.name):
            idmap = mgr.wanted_idmap(inst)
            src_map = IdMap.decode(header.get("idmap") or "0:0")
            pool = mgr.pool(inst)
            vol = volume_name(self.project, inst.name)
            base = await self._local_base(pool, header.get("base_image"), idmap)
            await pool.create_instance(vol, base, idmap, d.default_idmap)
            path = pool.instance_path(vol)
            tree = os.path.join(path, ".upper" if base else "rootfs")
            self.mark("volume")
            await _send_json(control, {"ready": True, "layered": bool(base)})
            received = 0
            policy = _stream_policy(d, pool, ".upper" if base else "rootfs", idmap.privileged)
            # A plain (not layered) dir volume's snapshot is a copy of the whole tree:
            # the stream is unpacked straight into the snapshot's directory instead of
            # into the volume and then copied (each file made once, nothing to empty).
            direct = not base and getattr(pool, "driver", "") == "dir"
            for snap in header["snapshots"]:
                if direct:
                    received += await self._receive_snapshot_dir(
                        pool, vol, snap["name"], fs, policy, src_map, idmap)
                    self._record_snapshot(inst, snap)
                    continue
                await _empty_dir(tree)
                received += await _tar_receive(fs, path, policy)
                await asyncio.to_thread(shift.shift_tree, tree, src_map, idmap, True)
                await pool.create_snapshot(vol, snap["name"])
                self._record_snapshot(inst, snap)
                for entry in ("metadata.yaml", "templates"):
                    full = os.path.join(path, entry)
                    if os.path.isdir(full):
                        shutil.rmtree(full)
                    elif os.path.lexists(full):
                        os.unlink(full)
            self.mark("snapshots")
            await _empty_dir(tree)
            received += await _tar_receive(fs, path, policy)
            self.mark("layer" if base else "rootfs")
            await asyncio.to_thread(shift.shift_tree, tree, src_map, idmap, True)
            if base:
                d.images.mark_used(base)
            self.mark("shift")
            mgr.set_volatile(inst, {"volatile.last_state.idmap": idmap.encode(),
                                     "volatile.idmap.base": str(idmap.base)})
            mgr.completed(inst)
            await mgr.apply_root_size(inst)
            await _send_json(control, {"success": True})
            self.mark("finish")
            LOG.info("instance %s/%s received (%d bytes; %s)", self.project, inst.name, received,
                     ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in self.marks))


async def create_from_migration(request: web.Request, project: str, body: dict):
    """`POST /1.0/instances` with `source.type: migration` (pull or push mode)."""
    d = request.app[DAEMON]
    source = body.get("source") or {}
    if source.get("live") or body.get("live"):
        await refuse_live()
    name = body.get("name")
    if not name:
        raise BadRequest("A migrated instance needs a 'name'")
    if d.db.get("instances", project=project, name=name):
        raise Conflict(f"Instance {name!r} already exists")
    receiver = Receiver(d, project, body)
    resources = {"instances": [f"/1.0/instances/{name}"],
                 "containers": [f"/1.0/containers/{name}"]}
    mode = source.get("mode") or "pull"
    if mode == "push":
        async def wait_push(op):
            try:
                control = await op.socket("control", CONNECT_TIMEOUT)
                fs = await op.socket("fs", CONNECT_TIMEOUT)
            except TimeoutError:
                raise TransferError("Migration source never connected")
            try:
                control, chosen = await _push_receiver_for(control, receiver)
                await chosen.run(control, fs)
            finally:
                for key in ("control", "fs"):
                    op.metadata.pop(key, None)
        return _async(_websocket_op(d, "Creating instance", wait_push, project, resources))
    if mode != "pull":
        raise BadRequest(f"Unknown migration mode {mode!r} (pull or push)")
    peer = _Peer(d, source.get("operation"), source.get("secrets") or {},
                 source.get("certificate"))

    async def pull(op):
        t0 = time.monotonic()
        control, fs = await peer.connect(receive=True)
        receiver.marks.append(("connect", time.monotonic() - t0))
        try:
            if not speaks_ours(control):
                fs = fs.into_async()    # LXD's rsync talks back on fs
            await _receiver_for(control, receiver).run(control, fs)
        finally:
            await _close(control, fs)
            await peer.close()
    return _async(d.ops.create("task", "Creating instance", pull, project=project,
                               resources=resources, cancellable=True))


def _receiver_for(control, receiver):
    if speaks_ours(control):
        return receiver
    from runtime.migration.lxd_peer import LxdReceiver
    return LxdReceiver(receiver.d, receiver.project, receiver.body)


class _Replayed:
    """A websocket whose first message was already read (to tell the wire format)."""

    def __init__(self, ws, first):
        self._ws, self._first = ws, first

    async def receive(self, timeout: float | None = None):
        if self._first is not None:
            msg, self._first = self._first, None
            return msg
        return await self._ws.receive(timeout=timeout)

    def __getattr__(self, name: str):
        return getattr(self._ws, name)


async def _push_receiver_for(control, receiver) -> tuple:
    """(control, receiver) in push mode, where the source speaks first: a source that
    did not ask for our subprotocol is ours if its first message is JSON text
    (LXD's is a protobuf, binary)."""
    if speaks_ours(control):
        return control, receiver
    try:
        first = await control.receive(timeout=CONNECT_TIMEOUT * 4)
    except TimeoutError:
        raise TransferError("Migration source sent nothing")
    control = _Replayed(control, first)
    if first.type == aiohttp.WSMsgType.TEXT:
        return control, receiver
    return control, _receiver_for(control, receiver)


async def migrate_snapshot(request, inst, snap: str, body: dict):
    """`POST /1.0/instances/<n>/snapshots/<s> {"migration": true}`: send one snapshot."""
    return await migrate_source(request, inst, body, snapshot=snap)
