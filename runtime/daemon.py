"""The runtime daemon: state directory, listeners, start-up reconciliation.

`nova-lxd-runtime` runs in the foreground. Its state directory is $LXD_DIR
(default /var/lib/nova-lxd-runtime) and it listens on $LXD_DIR/unix.socket, so
pylxd and the lxc CLI find it exactly as they find LXD. Containers are not the
daemon's children: stopping or restarting the daemon leaves them running.
"""
import argparse
import asyncio
import grp
import logging
import os
import signal
import subprocess
import sys

from aiohttp import web

from runtime import db as dbmod
from runtime.db.certificates import Certificates
from runtime.db.config import ServerConfig
from runtime.db.image_aliases import ImageAliases
from runtime.db.images import Images as ImageRows
from runtime.db.networks import Networks as NetworkRows
from runtime.db.profiles import Profiles
from runtime.db.projects import Projects as ProjectRows
from runtime import recovery
from runtime.api.app import build_app
from runtime.base import logs
from runtime.errors import BadRequest, NotFound
from runtime.events import EventBus
from runtime.images.remote import RemoteImages
from runtime.images.store import ImageStore
from runtime.base import idmap
from runtime.instances.devices import Devices
from runtime.instances.manager import InstanceManager
from runtime.instances.publish import Publisher
from runtime.instances.seccomp_notify import SeccompServer
from runtime.instances.snapshots import Copier, Snapshots
from runtime.network import defaults as network_defaults
from runtime.network.manager import Networks
from runtime.operations import Operations
from runtime.projects import Projects
from runtime.storage import driver_class
from runtime.storage.volumes import CustomVolumes
from runtime.tls import TLS

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
    """Every subsystem of the runtime, built in one place (`setup`) as a typed attribute.

    Handlers reach them through the web app (`runtime.appkeys.DAEMON`); background
    work of each subsystem starts and stops with the app (`contexts()`, aiohttp's
    `cleanup_ctx`), in the order listed there and in reverse at shutdown.
    """

    db: dbmod.Database
    # The rows of the tables the API, images, networks, projects and TLS own (runtime/db/).
    certificate_rows: Certificates
    server_config: ServerConfig
    image_rows: ImageRows
    alias_rows: ImageAliases
    network_rows: NetworkRows
    profile_rows: Profiles
    project_rows: ProjectRows
    ops: Operations
    instances: InstanceManager
    images: ImageStore
    volumes: CustomVolumes
    devices: Devices
    networks: Networks
    snapshots: Snapshots
    publisher: Publisher
    copier: Copier
    seccomp: SeccompServer
    projects: Projects
    tls: TLS
    remote_images: RemoteImages

    def __init__(self, lxd_dir: str):
        self.paths = Paths(lxd_dir)
        self.bus = EventBus()
        self.pools: dict = {}
        self.runners: list[web.AppRunner] = []
        self.lxc_version = _lxc_version()

    # Start-up ------------------------------------------------------------------
    async def setup(self) -> None:
        """Open the state and build the subsystems; nothing runs in the background yet."""
        self.paths.create()
        self.db = dbmod.Database(self.paths.db)
        self.certificate_rows = Certificates(self.db)
        self.server_config = ServerConfig(self.db)
        self.image_rows = ImageRows(self.db)
        self.alias_rows = ImageAliases(self.db)
        self.network_rows = NetworkRows(self.db)
        self.profile_rows = Profiles(self.db)
        self.project_rows = ProjectRows(self.db)
        self.ops = Operations(self.bus)
        self.host_idrange = idmap.ensure_ranges()
        self.default_idmap = idmap.default_map(self.host_idrange)
        await self._seed()
        for row in self.db.select("storage_pools"):
            self.pools[row["name"]] = driver_class(row["driver"])(
                row["name"], row["config"], self.paths.lxd_dir)
        self.instances = InstanceManager(self)
        self.images = ImageStore(self)
        self.volumes = CustomVolumes(self)
        self.images.sweep()
        for pool in self.pools.values():
            if os.path.isdir(os.path.join(pool.path, "containers")):
                pool.secure_layout()      # pools made before LXD's modes were applied
                await pool.sweep_partial()
        self.devices = Devices(self)
        self.networks = Networks(self)
        self.networks.restore_all()
        network_defaults.seed_profiles(self.profile_rows)
        self.snapshots = Snapshots(self)
        self.publisher = Publisher(self, self.snapshots)
        self.copier = Copier(self, self.snapshots)
        self.seccomp = SeccompServer(self)
        self.projects = Projects(self)
        self.tls = TLS(self)
        self.remote_images = RemoteImages(self)

    def contexts(self) -> list:
        """aiohttp cleanup contexts: what runs while the daemon serves, in start order
        (they unwind in reverse, so the state closes after every other subsystem)."""
        return [self._state, self.seccomp.running, self._instances_running,
                self.tls.running, self.snapshots.running, self.remote_images.running,
                self._default_network]

    async def _state(self, app: web.Application):
        yield
        await self.instances.renderer.close()
        self.db.close()

    async def _instances_running(self, app: web.Application):
        """Reconcile with what really runs (the seccomp socket already listens)."""
        await self.snapshots.restore_leftovers()   # before anything starts instances
        lost = await self.instances.reconcile()
        await recovery.reconcile(self)
        asyncio.get_running_loop().create_task(self.instances.autostart(lost))
        yield

    async def _default_network(self, app: web.Application):
        try:
            await network_defaults.default_network(self)
        except Exception as exc:  # noqa: BLE001 - the daemon still serves without it
            LOG.error("default network %s: %s", os.environ.get(network_defaults.ENV_BRIDGE),
                      exc)
        yield

    async def _seed(self) -> None:
        """What a fresh state directory starts with: project, pool, profile."""
        if not self.project_rows.exists("default"):
            self.project_rows.create("default", "Default project",
                                     {"features.images": "true", "features.profiles": "true",
                                      "features.storage.volumes": "true"})
        if not self.db.get("storage_pools", name="default"):
            await driver_class("dir")("default", {}, self.paths.lxd_dir).create()
            self.db.insert("storage_pools", name="default", driver="dir",
                           description="Default storage pool", config={})
        if not self.profile_rows.exists("default", "default"):
            self.profile_rows.create("default", "default", "Default profile", config={},
                                     devices={"root": {"type": "disk", "path": "/",
                                                       "pool": "default"}})

    # Lookups -------------------------------------------------------------------
    def pool(self, name: str):
        if name not in self.pools:
            raise NotFound(f"Storage pool {name!r} not found")
        return self.pools[name]

    async def add_pool(self, name: str, driver: str, config: dict, description: str) -> None:
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

    def feature_project(self, project: str, feature: str) -> str:
        """The project whose objects `project` uses for one feature (its own or default)."""
        row = self.project_rows.get(project)
        if row and row["config"].get(feature) == "true":
            return project
        return "default"

    def profile_project(self, project: str) -> str:
        return self.feature_project(project, "features.profiles")

    def image_project(self, project: str) -> str:
        return self.feature_project(project, "features.images")

    def volume_project(self, project: str) -> str:
        """Custom volumes follow the same rule as images and profiles."""
        return self.feature_project(project, "features.storage.volumes")

    # Server identity and configuration ----------------------------------------------
    def https_addresses(self) -> list[str]:
        addr = self.server_config.get("core.https_address")
        return [addr] if addr else []

    def server_cert_pem(self) -> str:
        try:
            with open(self.paths.server_crt) as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def server_cert_fp(self) -> str:
        return self.tls.fingerprint

    async def apply_server_config(self, config: dict) -> None:
        """Store the server configuration (`PUT/PATCH /1.0`); the subsystems follow it."""
        old = self.server_config.all()
        config = await self.tls.prepare_config(old, config)
        self.server_config.replace(config)
        await self.tls.follow_config(old, config)
        if any(old.get(k) != config.get(k) for k in RemoteImages.CONFIG_KEYS):
            await self.remote_images.maintain()

    # Listeners -------------------------------------------------------------------
    async def listen_unix(self, app: web.Application, group: str | None = None) -> None:
        """The unix socket, root's (0660): also its group's when `group` is given."""
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
        os.chown(sock, 0, grp.getgrnam(group).gr_gid if group else 0)
        os.chmod(sock, 0o660)
        self.runners.append(runner)

    async def shutdown(self) -> None:
        """Close the listeners; the app's cleanup contexts then stop every subsystem."""
        for runner in self.runners:
            await runner.cleanup()


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


async def serve(lxd_dir: str, group: str | None = None) -> None:
    _use_pidfd_child_watcher(asyncio.get_running_loop())
    d = Daemon(lxd_dir)
    await d.setup()
    app = build_app(d)
    app.cleanup_ctx.extend(d.contexts())
    await d.listen_unix(app, group)
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
    parser.add_argument("--group", default=None,
                        help="group that may use the unix socket (as LXD's --group; "
                             "default: root only)")
    args = parser.parse_args(argv)
    level = logging.DEBUG if args.debug else logging.INFO if args.verbose else logging.WARNING
    logs.setup(level)
    if os.getuid() != 0:
        sys.exit("nova-lxd-runtime must run as root (it creates containers)")
    if args.group:
        try:
            grp.getgrnam(args.group)
        except KeyError:
            sys.exit(f"nova-lxd-runtime: no group {args.group!r}")
    _raise_fd_limit()
    asyncio.run(serve(args.lxd_dir, args.group))


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
