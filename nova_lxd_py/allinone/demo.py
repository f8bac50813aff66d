"""The all-in-one demo: an operator drives the cloud over HTTP.

The operator logs in at the identity stand-in (keystoneauth, password) and
does everything else through the endpoints of its catalog: the Compute API
with python-novaclient, the image API with Glance v2 calls, as against any
cloud. Only the proof that a server is a real container looks behind the
API, at the host's runtime daemon, as an operator would with ``lxc exec``.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import sys
import threading
import time
import traceback
import urllib.parse
from collections.abc import Iterator
from typing import Any

from nova_lxd_py.allinone.cloud import Cloud

PREFIX = "[aio]"
COMPUTE_API_VERSION = "2.96"
BUSYBOX = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), ".cache", "images", "busybox.tar.xz")
MEMORY_CMD = ("cat /sys/fs/cgroup/memory.max 2>/dev/null || "
              "cat /sys/fs/cgroup/memory/memory.limit_in_bytes")


CREDENTIALS = {"username": "admin", "password": "aio", "project_name": "aio",
               "user_domain_id": "default", "project_domain_id": "default"}


class Interrupted(Exception):
    """SIGTERM or SIGINT: stop what we do and clean up."""


def say(message: str) -> None:
    print(f"{PREFIX} {message}", flush=True)


@contextlib.contextmanager
def step(title: str) -> Iterator[None]:
    """Progress: one line when a step starts, one with its duration."""
    say(f"{title} ...")
    start = time.monotonic()
    yield
    say(f"  done in {time.monotonic() - start:.1f} s")


def table(headers: list[str], rows: list[list[Any]]) -> str:
    cells = [headers] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    line = "+" + "+".join("-" * (w + 2) for w in widths) + "+"
    out = [line]
    for index, row in enumerate(cells):
        out.append("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |")
        if index == 0:
            out.append(line)
    out.append(line)
    return "\n".join(out)


def cold_migration_supported() -> tuple[bool, str]:
    """Whether the driver implements the resize/migrate hooks nova calls."""
    from nova.virt import driver as nova_driver

    from nova_lxd_py.driver import LXDDriver

    missing = [name for name in ("migrate_disk_and_power_off", "finish_migration",
                                 "confirm_migration")
               if getattr(LXDDriver, name) is getattr(nova_driver.ComputeDriver, name)]
    if missing:
        return False, "the driver does not implement " + ", ".join(missing) + " yet"
    return True, ""


class Operator:
    """What an operator does, over HTTP only."""

    def __init__(self, identity_url: str):
        from keystoneauth1 import session
        from keystoneauth1.identity import v3
        from novaclient import client as nova_client

        # Logs in like any operator; endpoints come from the catalog.
        auth = v3.Password(auth_url=identity_url, **CREDENTIALS)
        self.session = session.Session(auth=auth)
        self.nova = nova_client.Client(COMPUTE_API_VERSION, session=self.session)
        self.image_url = self.session.get_endpoint(service_type="image",
                                                   interface="public").rstrip("/")

    # -- images ------------------------------------------------------------------
    def upload_image(self, name: str, path: str, disk_format: str) -> dict:
        image = self.session.post(self.image_url + "/v2/images", json={
            "name": name, "disk_format": disk_format, "container_format": "bare",
            "visibility": "public"}).json()
        with open(path, "rb") as data:
            self.session.put(f"{self.image_url}/v2/images/{image['id']}/file", data=data,
                             headers={"Content-Type": "application/octet-stream"})
        return self.image(image["id"])

    def image(self, image_id: str) -> dict:
        return self.session.get(f"{self.image_url}/v2/images/{image_id}").json()

    # -- servers -----------------------------------------------------------------
    def boot(self, name: str, image_id: str, flavor_id: str, host: str | None = None):
        kwargs = {"host": host} if host else {}
        return self.nova.servers.create(name, image_id, flavor_id, nics="none", **kwargs)

    def wait(self, server, states: tuple[str, ...] = ("ACTIVE",), timeout: float = 180,
             task_state_none: bool = False, failed=None):
        deadline = time.monotonic() + timeout
        while True:
            if failed and (why := failed()):
                raise RuntimeError(f"server {server.name}: {why}")
            server = self.nova.servers.get(server.id)
            task = getattr(server, "OS-EXT-STS:task_state", None)
            if server.status in states and (not task_state_none or task is None):
                return server
            if server.status == "ERROR" and "ERROR" not in states:
                fault = getattr(server, "fault", {}) or {}
                raise RuntimeError(f"server {server.name} went to ERROR: "
                                   f"{fault.get('message', 'no fault recorded')}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"server {server.name} is {server.status} "
                                   f"(task {task}) after {timeout:.0f} s")
            time.sleep(0.2)

    def migration_failed(self, server) -> str:
        """Why the server's last migration failed, or '' while it has not."""
        migrations = self.nova.migrations.list(instance_uuid=server.id)
        if migrations and migrations[0].status in ("error", "failed"):
            last = migrations[0]
            return (f"migration {last.id} {last.source_compute} -> {last.dest_compute} "
                    f"ended in status {last.status} (see nova's log)")
        return ""

    def wait_gone(self, server, timeout: float = 120) -> None:
        from novaclient import exceptions

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                self.nova.servers.get(server.id)
            except exceptions.NotFound:
                return
            time.sleep(0.2)
        raise RuntimeError(f"server {server.name} still exists after {timeout:.0f} s")


def host_of(server) -> str:
    return getattr(server, "OS-EXT-SRV-ATTR:host", None) or "-"


def container_of(server) -> str:
    return getattr(server, "OS-EXT-SRV-ATTR:instance_name", None) or "-"


class Demo:
    def __init__(self, cloud: Cloud, args: argparse.Namespace):
        self.cloud = cloud
        self.args = args
        self.op: Operator | None = None
        self.servers: list[Any] = []
        self.boot_seconds: dict[str, float] = {}
        self.notes: dict[str, str] = {}
        self.failed = False

    def container(self, server):
        runtime = self.cloud.runtimes[host_of(server)]
        return runtime.client().instances.get(container_of(server))

    def run(self) -> None:
        op = self.op = Operator(self.cloud.identity_url)
        with step("uploading the bundled busybox image to the image service"):
            image = op.upload_image("aio-busybox", BUSYBOX, "raw")
            say(f"  image {image['id']} ({image['disk_format']}, {image['size']} bytes, "
                f"{image['status']})")
        with step("creating flavor aio.small (1 vCPU, 128 MB RAM, 1 GB disk)"):
            flavor = op.nova.flavors.create("aio.small", ram=128, vcpus=1, disk=1)
        with step(f"booting {self.args.servers} servers through the Compute API"):
            # One after the other: each boot then sees the previous one's
            # usage, and the scheduler's RAM weigher spreads them over hosts.
            for index in range(1, self.args.servers + 1):
                start = time.monotonic()
                server = op.boot(f"aio-server{index}", image["id"], flavor.id)
                self.servers.append(server)  # known before it is ACTIVE: clean-up deletes it
                server = self.servers[-1] = op.wait(server)
                self.boot_seconds[server.id] = time.monotonic() - start
                say(f"  {server.name} ACTIVE on {host_of(server)} "
                    f"in {self.boot_seconds[server.id]:.1f} s")
        self.show_servers("servers")
        first = self.servers[0]
        with step(f"looking inside {first.name} through the runtime of {host_of(first)}"):
            self.show_inside(first, flavor)
        with step(f"snapshotting {first.name} and booting a server from the snapshot"):
            self.snapshot_and_boot(first, flavor)
        self.migrate()
        self.show_servers("servers at the end")

    def show_inside(self, server, flavor) -> None:
        container = self.container(server)
        result = container.execute(["sh", "-c", "hostname; " + MEMORY_CMD +
                                    "; cat /proc/1/comm; uname -r"])
        if result.exit_code != 0:
            raise RuntimeError(f"exec in {container.name} failed: {result.stderr}")
        hostname, memory, init, kernel = (result.stdout.split("\n") + [""] * 4)[:4]
        limit = f"{int(memory) // 2**20} MiB" if memory.strip().isdigit() else memory.strip()
        say(f"  container {container.name}: status {container.status}, PID 1 is {init}, "
            f"kernel {kernel} (the host's)")
        say(f"  hostname inside: {hostname}")
        say(f"  memory limit inside: {limit} (flavor {flavor.name}: {flavor.ram} MB)")
        self.notes["exec"] = f"hostname {hostname}, memory limit {limit}"

    def snapshot_and_boot(self, server, flavor) -> None:
        op = self.op
        marker = f"written in {server.name} before the snapshot"
        self.container(server).execute(["sh", "-c", f"echo '{marker}' > /root/aio-marker"])
        image_id = op.nova.servers.create_image(server, "aio-snapshot")
        op.wait(server, task_state_none=True)
        snapshot = op.image(image_id)
        say(f"  snapshot image {image_id} ({snapshot['disk_format']}, "
            f"{snapshot.get('size')} bytes); {server.name} kept running")
        other = [h for h in self.cloud.hosts if h != host_of(server)][0]
        start = time.monotonic()
        clone = op.boot("aio-from-snapshot", image_id, flavor.id, host=other)
        self.servers.append(clone)
        clone = self.servers[-1] = op.wait(clone)
        self.boot_seconds[clone.id] = time.monotonic() - start
        seen = self.container(clone).execute(["cat", "/root/aio-marker"]).stdout.strip()
        if seen != marker:
            raise RuntimeError(f"the server booted from the snapshot does not have the "
                               f"marker file: {seen!r}")
        say(f"  {clone.name} ACTIVE on {host_of(clone)}; /root/aio-marker inside it: "
            f"'{seen}'")
        self.notes["snapshot"] = f"booted {clone.name} on {host_of(clone)}"

    def migrate(self) -> None:
        supported, why = cold_migration_supported()
        if not supported:
            say(f"cold migration: SKIPPED, {why}")
            self.notes["migration"] = "skipped: " + why
            return
        op = self.op
        # From the busiest host, so the servers end up spread again.
        load = {h: sum(host_of(s) == h for s in self.servers) for h in self.cloud.hosts}
        busiest = max(load, key=load.get)
        index = next(i for i, s in enumerate(self.servers) if host_of(s) == busiest)
        server = self.servers[index]
        source = host_of(server)
        with step(f"cold-migrating {server.name} away from {source}"):
            try:
                op.nova.servers.migrate(server)
                server = op.wait(server, ("VERIFY_RESIZE",), timeout=180,
                                 failed=lambda: op.migration_failed(server))
                op.nova.servers.confirm_resize(server)
                server = op.wait(server)
            except RuntimeError as exc:
                # The rest of the story stands; say plainly what broke.
                say(f"  cold migration: FAILED: {exc}")
                self.notes["migration"] = f"FAILED: {exc}"
                self.failed = True
                return
            self.servers[index] = server
            if host_of(server) == source:
                raise RuntimeError(f"{server.name} is still on {source} after migration")
            source_runtime = self.cloud.runtimes[source]
            left = [i.name for i in source_runtime.client().instances.all()]
            say(f"  {server.name} moved {source} -> {host_of(server)}, container "
                f"{container_of(server)} {self.container(server).status} there, "
                f"{'still on' if container_of(server) in left else 'gone from'} {source}")
            if self.cloud.network:
                say(f"  (the destination runtime pulled it from {source_runtime.https_address} "
                    f"across bridge {self.cloud.network.bridge})")
            self.notes["migration"] = f"{source} -> {host_of(server)}"

    def show_servers(self, title: str) -> None:
        rows = []
        for server in self.servers:
            server = self.op.nova.servers.get(server.id)
            try:
                status = self.container(server).status
            except Exception:  # noqa: BLE001 - show what we can
                status = "?"
            image = server.image.get("id", "") if isinstance(server.image, dict) else ""
            rows.append([server.name, server.status, host_of(server), container_of(server),
                         status, image[:8], f"{self.boot_seconds.get(server.id, 0):.1f} s"])
        say(title + ":")
        print(table(["server", "status", "host", "container", "container status", "image",
                     "boot"], rows), flush=True)

    def delete_servers(self) -> None:
        if not self.op:
            return
        # Also what an operator booted by hand on a kept cloud.
        with contextlib.suppress(Exception):
            known = {s.id for s in self.servers}
            self.servers += [s for s in self.op.nova.servers.list(
                search_opts={"all_tenants": 1}) if s.id not in known]
        with step(f"deleting {len(self.servers)} servers through the Compute API"):
            for server in self.servers:
                with contextlib.suppress(Exception):
                    self.op.nova.servers.delete(server.id)
            for server in self.servers:
                self.op.wait_gone(server)
            self.servers = []
            for host, runtime in self.cloud.runtimes.items():
                left = [i.name for i in runtime.client().instances.all()]
                say(f"  runtime {host}: {len(left)} containers left" + (f" {left}" if left else ""))


def how_to_talk(cloud: Cloud) -> str:
    bin_dir = os.path.dirname(sys.executable)
    env = (f"export OS_AUTH_URL={cloud.identity_url} OS_USERNAME={CREDENTIALS['username']} "
           f"OS_PASSWORD={CREDENTIALS['password']} OS_PROJECT_NAME={CREDENTIALS['project_name']} "
           "OS_USER_DOMAIN_ID=default OS_PROJECT_DOMAIN_ID=default "
           f"OS_COMPUTE_API_VERSION={COMPUTE_API_VERSION}")
    lines = [
        "The cloud stays up until you press Ctrl-C (or kill -TERM " + str(os.getpid()) + ").",
        f"  Identity (a token stand-in, any password): {cloud.identity_url}",
        f"  Compute API: {cloud.compute_url}    image API: {cloud.image_url}/v2/images",
        f"    {env}",
        f"    {bin_dir}/nova list --fields name,status,OS-EXT-SRV-ATTR:host",
        f"    {bin_dir}/nova hypervisor-list",
        "    openstack server list     (if python-openstackclient is installed)",
        f"    curl -s {cloud.compute_url}/servers/detail       (no token needed: noauth)",
        f"    curl -s {cloud.image_url}/v2/images",
    ]
    for host, runtime in cloud.runtimes.items():
        endpoint = "http+unix://" + urllib.parse.quote(runtime.socket, safe="")
        lines.append(f"  {host} runtime: LXD_DIR={runtime.lxd_dir} lxc list    "
                     f"pylxd.Client(endpoint='{endpoint}')")
    lines.append(f"  nova's log: {cloud.log_path}")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m nova_lxd_py.allinone",
        description="Run an all-in-one nova cloud on the LXD driver (two compute hosts, "
                    "each with its own runtime daemon) and drive it as an operator.")
    parser.add_argument("--keep", action="store_true",
                        help="after the demo, leave the cloud and its servers running and "
                             "print how to talk to it; Ctrl-C stops and removes everything")
    parser.add_argument("--servers", type=int, default=2, help="servers to boot (default 2)")
    parser.add_argument("--state-dir", default=f"/var/tmp/aio-{os.getpid()}",
                        help="where the runtimes' state directories and logs go "
                             "(removed on exit)")
    parser.add_argument("--no-netns", dest="netns", action="store_false",
                        help="run both runtimes in this machine's network namespace "
                             "(default: each in its own, joined by a bridge)")
    parser.add_argument("--api-port", type=int, default=0,
                        help="Compute API port on 127.0.0.1 (default: any free port)")
    parser.add_argument("--identity-port", type=int, default=0,
                        help="identity (token stand-in) port on 127.0.0.1 (default: any)")
    parser.add_argument("--image-port", type=int, default=0,
                        help="image API port on 127.0.0.1 (default: any free port)")
    return parser.parse_args(argv)


def _raise_interrupted(signum, frame):  # noqa: ARG001 - signal handler signature
    raise Interrupted(signal.Signals(signum).name)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if os.geteuid() != 0:
        print("the all-in-one cloud runs containers: run it as root", file=sys.stderr)
        return 2
    if not os.path.exists(BUSYBOX):
        print(f"missing {BUSYBOX}: run scripts/setup first", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _raise_interrupted)
    signal.signal(signal.SIGINT, _raise_interrupted)
    started = time.monotonic()
    cloud = Cloud(args.state_dir, api_port=args.api_port, image_port=args.image_port,
                  identity_port=args.identity_port, netns=args.netns,
                  progress=lambda m: say("  " + m))
    demo = Demo(cloud, args)
    status = 0
    try:
        with step(f"starting the cloud (state in {args.state_dir})"):
            cloud.start()
        demo.run()
        say(f"demo done in {time.monotonic() - started:.1f} s: "
            f"{len(demo.servers)} servers; exec: {demo.notes.get('exec')}; "
            f"snapshot: {demo.notes.get('snapshot')}; migration: {demo.notes.get('migration')}")
        if demo.failed:
            status = 1
        if args.keep:
            print(how_to_talk(cloud), flush=True)
            say("ready")
            threading.Event().wait()
    except Interrupted as exc:
        say(f"interrupted ({exc}), cleaning up")
        status = 130
    except Exception:  # noqa: BLE001 - report, then clean up
        traceback.print_exc()
        say(f"FAILED; nova's log is {cloud.log_path} (tail below)")
        with contextlib.suppress(OSError), open(cloud.log_path, errors="replace") as log:
            print("".join(log.readlines()[-40:]), file=sys.stderr)
        status = 1
    finally:
        # A second Ctrl-C during clean-up must not leave containers behind.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        with contextlib.suppress(Exception):
            demo.delete_servers()
        with step("stopping nova services and runtime daemons, removing state"):
            problems = cloud.stop()
            for problem in problems:
                say("  cleanup problem: " + problem)
            if status == 1 and os.path.exists(cloud.log_path):
                kept = f"/var/tmp/aio-nova-{os.getpid()}.log"
                shutil.move(cloud.log_path, kept)
                say(f"  nova's log kept as {kept}")
            shutil.rmtree(args.state_dir, ignore_errors=True)
        say(f"cleaned up; total {time.monotonic() - started:.1f} s")
    return status
