"""The runtime daemon: state directory, listeners, start-up reconciliation.

`nova-lxd-runtime` runs in the foreground. Its state directory is $LXD_DIR
(default /var/lib/nova-lxd-runtime) and it listens on $LXD_DIR/unix.socket, so
pylxd and the lxc CLI find it exactly as they find LXD. Containers are not the
daemon's children: stopping or restarting the daemon leaves them running.
"""
import argparse
import asyncio
import logging
import os
import signal
import subprocess
import sys

from aiohttp import web

from runtime import db as dbmod
from runtime import recovery
from runtime.events import EventBus
from runtime.images.store import ImageStore
from runtime.instances import idmap
from runtime.instances.devices import Devices
from runtime.instances.manager import InstanceManager
from runtime.operations import Operations
from runtime.storage import driver_class

LOG = logging.getLogger("runtime")
DEFAULT_DIR = "/var/lib/nova-lxd-runtime"


class Paths:
    def __init__(self, lxd_dir: str):
        self.lxd_dir = os.path.abspath(lxd_dir)
        self.socket = os.path.join(self.lxd_dir, "unix.socket")
        self.db = os.path.join(self.lxd_dir, "database", "runtime.db")
        self.lxcpath = os.path.join(self.lxd_dir, "containers")
        self.logs = os.path.join(self.lxd_dir, "logs")
        self.images = os.path.join(self.lxd_dir, "images")
        self.server_crt = os.path.join(self.lxd_dir, "server.crt")
        self.server_key = os.path.join(self.lxd_dir, "server.key")

    def create(self) -> None:
        os.makedirs(self.lxd_dir, mode=0o711, exist_ok=True)
        os.chmod(self.lxd_dir, 0o711)
        for sub, mode in ((os.path.dirname(self.db), 0o700), (self.lxcpath, 0o711),
                          (self.logs, 0o700), (self.images, 0o700),
                          (os.path.join(self.lxd_dir, "storage-pools"), 0o711)):
            os.makedirs(sub, mode=mode, exist_ok=True)


class Daemon:
    def __init__(self, lxd_dir: str):
        self.paths = Paths(lxd_dir)
        self.db: dbmod.Database | None = None
        self.bus = EventBus()
        self.ops: Operations | None = None
        self.pools: dict = {}
        self.runners: list[web.AppRunner] = []
        self.https = None
        # Coroutines run with the web app once the unix socket listens (HTTPS...),
        # and at shutdown; extensions append to them.
        self.start_hooks: list = []
        self.stop_hooks: list = []
        self.lxc_version = _lxc_version()

    # Start-up ------------------------------------------------------------------
    async def setup(self) -> None:
        self.paths.create()
        self.db = dbmod.Database(self.paths.db)
        self.ops = Operations(self.bus)
        self.host_idrange = idmap.ensure_ranges()
        self.default_idmap = idmap.default_map(self.host_idrange)
        await self._seed()
        for row in self.db.select("storage_pools"):
            self.pools[row["name"]] = driver_class(row["driver"])(
                row["name"], row["config"], self.paths.lxd_dir)
        self.instances = InstanceManager(self)
        self.images = ImageStore(self)
        self.images.sweep()
        for pool in self.pools.values():
            if os.path.isdir(os.path.join(pool.path, "containers")):
                pool.secure_layout()      # pools made before LXD's modes were applied
                await pool.sweep_partial()
        self.devices = Devices(self)
        self._extensions()
        if getattr(self, "snapshots", None) is not None:
            await self.snapshots.restore_leftovers()   # before anything starts instances
        lost = await self.instances.reconcile()
        await recovery.reconcile(self)
        asyncio.get_running_loop().create_task(self.instances.autostart(lost))

    def _extensions(self) -> None:
        """Optional subsystems (snapshots, networks, TLS, migration...) plug in here."""
        import importlib
        for modname in ("runtime.extensions",):
            try:
                mod = importlib.import_module(modname)
            except ModuleNotFoundError as exc:
                if exc.name == modname:
                    continue
                raise
            mod.attach(self)

    async def _seed(self) -> None:
        """What a fresh state directory starts with: project, pool, profile."""
        if not self.db.get("projects", name="default"):
            self.db.insert("projects", name="default", description="Default project",
                           config={"features.images": "true", "features.profiles": "true",
                                   "features.storage.volumes": "true"})
        if not self.db.get("storage_pools", name="default"):
            await driver_class("dir")("default", {}, self.paths.lxd_dir).create()
            self.db.insert("storage_pools", name="default", driver="dir",
                           description="Default storage pool", config={})
        if not self.db.get("profiles", project="default", name="default"):
            self.db.insert("profiles", project="default", name="default",
                           description="Default profile", config={},
                           devices={"root": {"type": "disk", "path": "/", "pool": "default"}})

    # Lookups -------------------------------------------------------------------
    def pool(self, name: str):
        from runtime.errors import NotFound
        if name not in self.pools:
            raise NotFound(f"Storage pool {name!r} not found")
        return self.pools[name]

    async def add_pool(self, name: str, driver: str, config: dict, description: str) -> None:
        from runtime.errors import BadRequest
        cls = driver_class(driver)
        pool = cls(name, config, self.paths.lxd_dir)
        try:
            await pool.create()
        except Exception as exc:
            await pool.delete()
            raise BadRequest(f"Failed to create storage pool {name!r}: {exc}")
        self.db.insert("storage_pools", name=name, driver=driver, description=description,
                       config=pool.config)
        self.pools[name] = pool
        self.bus.lifecycle("storage-pool-created", f"/1.0/storage-pools/{name}", "default")

    async def remove_pool(self, name: str) -> None:
        pool = self.pool(name)
        await pool.delete()
        self.db.delete("storage_pools", name=name)
        self.pools.pop(name, None)
        self.bus.lifecycle("storage-pool-deleted", f"/1.0/storage-pools/{name}", "default")

    def _feature(self, project: str, feature: str) -> str:
        row = self.db.get("projects", name=project)
        if row and row["config"].get(feature) == "true":
            return project
        return "default"

    def profile_project(self, project: str) -> str:
        return self._feature(project, "features.profiles")

    def image_project(self, project: str) -> str:
        return self._feature(project, "features.images")

    # Server identity (TLS pieces are filled in when HTTPS support is attached) -----
    def https_addresses(self) -> list[str]:
        addr = self.db.config_get().get("core.https_address")
        return [addr] if addr else []

    def server_cert_pem(self) -> str:
        try:
            with open(self.paths.server_crt) as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def server_cert_fp(self) -> str:
        return ""

    async def apply_server_config(self, config: dict) -> None:
        self.db.config_replace(config)

    # Listeners -------------------------------------------------------------------
    async def listen_unix(self, app: web.Application) -> None:
        sock = self.paths.socket
        if os.path.exists(sock):
            if _socket_alive(sock):
                raise SystemExit(f"another daemon is already listening on {sock}")
            os.unlink(sock)
        # Open websockets (events, exec) must not hold a shutdown for aiohttp's 60 s.
        runner = web.AppRunner(app, access_log=None, handle_signals=False,
                               shutdown_timeout=1.0)
        await runner.setup()
        site = web.UnixSite(runner, sock)
        await site.start()
        os.chown(sock, 0, 0)
        os.chmod(sock, 0o660)
        self.runners.append(runner)

    async def shutdown(self) -> None:
        for hook in self.stop_hooks:
            await hook()
        for runner in self.runners:
            await runner.cleanup()
        if getattr(self, "instances", None) is not None:
            await self.instances.renderer.close()
        if self.db:
            self.db.close()


def _socket_alive(path: str) -> bool:
    import socket
    s = socket.socket(socket.AF_UNIX)
    try:
        s.connect(path)
        return True
    except OSError:
        return False
    finally:
        s.close()


def _lxc_version() -> str:
    try:
        return subprocess.run(["lxc-start", "--version"], capture_output=True,
                              text=True).stdout.strip()
    except OSError:
        return ""


def _use_pidfd_child_watcher(loop: asyncio.AbstractEventLoop) -> None:
    """Reap lxc-* children through pidfds: Python 3.11's default watcher starts a
    thread per subprocess, which is most of the cost of a quick exec."""
    if sys.version_info >= (3, 12) or not hasattr(asyncio, "PidfdChildWatcher"):
        return
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        watcher = asyncio.PidfdChildWatcher()
        watcher.attach_loop(loop)
        asyncio.set_child_watcher(watcher)


async def serve(lxd_dir: str) -> None:
    from runtime.api import build_app
    _use_pidfd_child_watcher(asyncio.get_running_loop())
    d = Daemon(lxd_dir)
    await d.setup()
    app = build_app(d)
    await d.listen_unix(app)
    for hook in d.start_hooks:
        await hook(app)
    LOG.info("listening on %s", d.paths.socket)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    LOG.info("shutting down (containers keep running)")
    await d.shutdown()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="nova-lxd-runtime", description=__doc__.split(
        "\n")[0])
    parser.add_argument("--debug", action="store_true", help="debug logging")
    parser.add_argument("--verbose", action="store_true", help="info logging")
    parser.add_argument("--lxd-dir", default=os.environ.get("LXD_DIR", DEFAULT_DIR),
                        help="state directory (default $LXD_DIR or %(default)s)")
    args = parser.parse_args(argv)
    level = logging.DEBUG if args.debug else logging.INFO if args.verbose else logging.WARNING
    logging.basicConfig(level=level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if os.getuid() != 0:
        sys.exit("nova-lxd-runtime must run as root (it creates containers)")
    _raise_fd_limit()
    asyncio.run(serve(args.lxd_dir))


def _raise_fd_limit() -> None:
    """Soft RLIMIT_NOFILE up to the hard limit: the daemon holds a pidfd per running
    container (to notice it stop) besides its sockets, and a dense host runs
    thousands; the usual soft default of 1024 would end in EMFILE (LXD's unit
    raises it the same way)."""
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        with open("/proc/sys/fs/nr_open") as f:
            hard = int(f.read())
    if hard > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


if __name__ == "__main__":
    main()
