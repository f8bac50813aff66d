"""The daemons under test, behind one small interface the benchmark phases use.

Why an interface: the same phase code must time our runtime, Debian's LXD and
raw liblxc (the floor) in one run, so the table's ratios compare like with like.
Every method either does the operation (blocking until it is complete, as a
CLI user would wait) or raises; the runner turns a raise into "n/a".
"""
from __future__ import annotations

import hashlib
import os
import subprocess
import time
from typing import Any

from rawclient import ApiError, Client, exec_record, exec_websocket


class NotSupported(Exception):
    """The target has no such operation (reported as n/a, not as a failure)."""


class ApiTarget:
    """An LXD-API daemon (our runtime or LXD) on a unix socket."""

    image_alias = "bench-busybox"

    def __init__(self, key: str, title: str, socket_path: str, prefix: str,
                 profiles: list[str] | None = None, lxc_cli: str | None = "lxc"):
        self.key = key
        self.title = title
        self.socket_path = socket_path
        self.prefix = prefix
        self.profiles = profiles
        self.lxc_cli = lxc_cli
        self.client = Client(socket_path)
        self.created_profile: str | None = None
        self.created_network: str | None = None
        self.host_bridge: str | None = None
        self.created_alias = False
        self.config_note = ""
        self._pylxd = None
        self.lost_output = 0
        self.ws_calls = 0

    # -- set-up ----------------------------------------------------------
    def server_pid(self) -> int:
        return int(self.client.server()["environment"]["server_pid"])

    def get_fresh(self) -> None:
        """GET /1.0 on a new connection, as a one-shot CLI call would."""
        c = Client(self.socket_path)
        try:
            c.server()
        finally:
            c.close()

    def ensure_image(self, tarball: str) -> str:
        """Upload the busybox tarball unless present; point our alias at it.

        The image itself is never deleted afterwards: with a reproducible
        tarball, another user of a shared daemon may hold the same fingerprint.
        """
        with open(tarball, "rb") as f:
            data = f.read()
        fp = hashlib.sha256(data).hexdigest()
        try:
            self.client.request("GET", f"/1.0/images/{fp}")
        except ApiError as e:
            if e.status != 404:
                raise
            self.client.call("POST", "/1.0/images", data, {
                "Content-Type": "application/octet-stream",
                "X-LXD-filename": os.path.basename(tarball)})
        try:
            alias = self.client.request("GET", f"/1.0/images/aliases/{self.image_alias}")
            if alias["metadata"].get("target") != fp:
                self.client.request("PUT", f"/1.0/images/aliases/{self.image_alias}",
                                    {"target": fp, "description": "benchmark"})
        except ApiError as e:
            if e.status != 404:
                raise
            self.client.request("POST", "/1.0/images/aliases",
                                {"name": self.image_alias, "target": fp,
                                 "description": "benchmark"})
            self.created_alias = True
        return fp

    def ensure_profile(self, bridge: str, subnet: str) -> None:
        """Pick the profiles instances are launched with (root disk + bridged eth0).

        Preference: an explicit profile list; else `default` when it already has a
        root disk and a nic; else a bench profile on a bench bridge we create; else
        whatever `default` gives (the config note then says so).
        """
        if self.profiles:
            return
        try:
            default = self.client.request("GET", "/1.0/profiles/default")["metadata"]
            devices = default.get("devices") or {}
        except ApiError:
            devices = {}
        kinds = {d.get("type") for d in devices.values()}
        if {"disk", "nic"} <= kinds:
            self.profiles = ["default"]
            return
        name = f"{self.prefix}-profile"
        pool = "default"
        try:
            pools = self.client.request("GET", "/1.0/storage-pools")["metadata"]
            if pools:
                pool = pools[0].rsplit("/", 1)[-1]
        except ApiError:
            pass
        nic: dict[str, Any] | None = None
        try:
            self.client.call("POST", "/1.0/networks", {
                "name": bridge, "type": "bridge", "description": "benchmark",
                "config": {"ipv4.address": subnet, "ipv4.nat": "false",
                           "ipv6.address": "none"}})
            self.created_network = bridge
        except ApiError as e:
            if "exist" not in e.message.lower():
                # No network API yet: a plain host bridge (no address, no NAT) keeps
                # the bridged-nic parity with LXD; removed again at teardown.
                if not os.path.exists(f"/sys/class/net/{bridge}"):
                    r = subprocess.run(["ip", "link", "add", bridge, "type", "bridge"],
                                       capture_output=True, check=False)
                    if r.returncode == 0:
                        self.host_bridge = bridge
                subprocess.run(["ip", "link", "set", bridge, "up"], capture_output=True,
                               check=False)
                if not os.path.exists(f"/sys/class/net/{bridge}"):
                    bridge = ""
        if bridge:
            nic = {"type": "nic", "nictype": "bridged", "parent": bridge, "name": "eth0"}
        devs: dict[str, Any] = {"root": {"type": "disk", "path": "/", "pool": pool}}
        if nic:
            devs["eth0"] = nic
        try:
            self.client.call("POST", "/1.0/profiles", {"name": name, "devices": devs,
                                                       "config": {}, "description": "benchmark"})
            self.created_profile = name
            self.profiles = [name]
        except ApiError as e:
            if "exist" in e.message.lower():
                self.profiles = [name]
            else:
                self.profiles = ["default"]

    def describe_config(self, name: str) -> str:
        inst = self.client.request("GET", f"/1.0/instances/{name}")["metadata"]
        parts = []
        for dev, d in sorted((inst.get("expanded_devices") or {}).items()):
            if d.get("type") == "disk":
                parts.append(f"{dev}: disk pool={d.get('pool')}")
            elif d.get("type") == "nic":
                parts.append(f"{dev}: nic {d.get('nictype') or ''} "
                             f"{d.get('parent') or d.get('network') or ''}".replace("  ", " "))
            else:
                parts.append(f"{dev}: {d.get('type')}")
        cfg = inst.get("expanded_config") or {}
        priv = "privileged" if cfg.get("security.privileged") in ("true", True) else "unprivileged"
        pool_driver = ""
        try:
            root = (inst.get("expanded_devices") or {}).get("root") or {}
            if root.get("pool"):
                pool_driver = self.client.request(
                    "GET", f"/1.0/storage-pools/{root['pool']}")["metadata"].get("driver", "")
        except ApiError:
            pass
        note = f"profiles {inst.get('profiles')}; {'; '.join(parts) or 'no devices'}; {priv}"
        if pool_driver:
            note += f"; pool driver {pool_driver}"
        return note

    def teardown(self) -> None:
        for kind, name in (("profiles", self.created_profile),
                           ("networks", self.created_network)):
            if name:
                try:
                    self.client.call("DELETE", f"/1.0/{kind}/{name}")
                except (ApiError, OSError):
                    pass
        if self.host_bridge:
            subprocess.run(["ip", "link", "del", self.host_bridge], capture_output=True,
                           check=False)
        if self.created_alias:
            try:
                self.client.call("DELETE", f"/1.0/images/aliases/{self.image_alias}")
            except (ApiError, OSError):
                pass
        self.client.close()

    # -- instances -------------------------------------------------------
    def create(self, name: str) -> None:
        body: dict[str, Any] = {"name": name,
                                "source": {"type": "image", "alias": self.image_alias}}
        if self.profiles:
            body["profiles"] = self.profiles
        self.client.call("POST", "/1.0/instances", body)

    def start(self, name: str) -> None:
        self.client.call("PUT", f"/1.0/instances/{name}/state",
                         {"action": "start", "timeout": 30})

    def stop_force(self, name: str) -> None:
        self.client.call("PUT", f"/1.0/instances/{name}/state",
                         {"action": "stop", "force": True, "timeout": 30})

    def delete(self, name: str) -> None:
        self.client.call("DELETE", f"/1.0/instances/{name}")

    def state(self, name: str) -> dict:
        return self.client.request("GET", f"/1.0/instances/{name}/state")["metadata"]

    def init_pid(self, name: str) -> int:
        return int(self.state(name)["pid"])

    def exists(self, name: str) -> bool:
        try:
            self.client.request("GET", f"/1.0/instances/{name}")
            return True
        except ApiError as e:
            if e.status == 404:
                return False
            raise

    def force_remove(self, name: str) -> None:
        """Best-effort cleanup of one of our instances."""
        try:
            if not self.exists(name):
                return
            if self.state(name).get("status") != "Stopped":
                self.stop_force(name)
        except (ApiError, OSError):
            pass
        try:
            self.delete(name)
        except (ApiError, OSError):
            pass

    # -- exec --------------------------------------------------------------
    def exec_ws(self, name: str) -> None:
        self.ws_calls += 1
        code, out, _ = exec_websocket(self.client, name, ["echo", "hi"])
        if code == 0 and out == b"":
            # LXD before 5.14 sometimes loses a fast command's output (its issue
            # 11890): counted and reported, the round trip itself is still valid.
            self.lost_output += 1
            return
        if code != 0 or out != b"hi\n":
            raise ApiError(500, f"exec websocket gave {code} {out!r}")

    def exec_record(self, name: str) -> None:
        code, out, _ = exec_record(self.client, name, ["echo", "hi"])
        if code != 0 or out != b"hi\n":
            raise ApiError(500, f"exec record-output gave {code} {out!r}")

    def exec_cli(self, name: str) -> None:
        if not self.lxc_cli:
            raise NotSupported("no lxc CLI")
        env = dict(os.environ, LXD_DIR=os.path.dirname(self.socket_path))
        r = subprocess.run([self.lxc_cli, "exec", name, "--", "echo", "hi"],
                           env=env, capture_output=True, timeout=60, check=False)
        if r.returncode != 0 or r.stdout != b"hi\n":
            raise ApiError(500, f"lxc exec gave {r.returncode} {r.stdout!r} {r.stderr[-200:]!r}")

    def pylxd_instance(self, name: str) -> Any:
        if self._pylxd is None:
            from runtime.client import Endpoint, connect
            self._pylxd = connect(Endpoint.unix(self.socket_path, timeout=None))
        return self._pylxd.instances.get(name)

    def exec_pylxd(self, inst: Any) -> None:
        r = inst.execute(["echo", "hi"])
        if r.exit_code != 0 or r.stdout != "hi\n":
            raise ApiError(500, f"pylxd execute gave {r.exit_code} {r.stdout!r}")

    # -- snapshots, copy, publish ----------------------------------------
    def snapshot(self, name: str, snap: str) -> None:
        self.client.call("POST", f"/1.0/instances/{name}/snapshots",
                         {"name": snap, "stateful": False})

    def restore(self, name: str, snap: str) -> None:
        self.client.call("PUT", f"/1.0/instances/{name}", {"restore": snap})

    def copy(self, src: str, dst: str) -> None:
        body: dict[str, Any] = {"name": dst, "source": {"type": "copy", "source": src,
                                                         "instance_only": True}}
        if self.profiles:
            body["profiles"] = self.profiles
        self.client.call("POST", "/1.0/instances", body)

    def publish(self, name: str) -> str:
        op = self.client.call("POST", "/1.0/images", {
            "source": {"type": "instance", "name": name},
            "properties": {"description": "bench publish"}, "public": False})
        fp = (op.get("metadata") or {}).get("fingerprint")
        if not fp:
            raise ApiError(500, "publish returned no fingerprint")
        return fp

    def https_url(self) -> str:
        """The daemon's HTTPS address (core.https_address); n/a when it has none."""
        cfg = self.client.server().get("config") or {}
        addr = cfg.get("core.https_address")
        if not addr:
            raise NotSupported("source daemon has no core.https_address")
        return f"https://{addr}"

    def copy_from(self, src: ApiTarget, src_name: str, dst_name: str, url: str,
                  daemons_finish: bool = False, timeout: float = 60,
                  instance_only: bool = True, profiles: list[str] | None = None) -> None:
        """Copy an instance from another daemon over TLS, as `lxc copy` does.

        The source exposes a migration operation with secrets; this daemon pulls
        from the source's HTTPS address, checking its certificate. Done when both
        operations are. daemons_finish: the request pylxd's migrate() makes (no
        `live` key): a running instance is stopped by the source and started by
        the target. instance_only=False: the snapshots travel too. profiles: the
        copy's profiles when the source's don't exist here (LXD <-> runtime).
        """
        inst = src.client.request("GET", f"/1.0/instances/{src_name}")["metadata"]
        req = {"name": src_name, "migration": True, "instance_only": instance_only}
        if not daemons_finish:
            req["live"] = False
        env = src.client.request("POST", f"/1.0/instances/{src_name}", req)
        op = env["operation"]
        secrets = (env.get("metadata") or {}).get("metadata") or {}
        cert = src.client.server()["environment"]["certificate"]
        body = {"name": dst_name, "type": "container",
                "architecture": inst["architecture"],
                "profiles": profiles if profiles is not None else inst["profiles"],
                "config": {k: v for k, v in (inst.get("config") or {}).items()
                           if not k.startswith("volatile.")},
                "devices": inst.get("devices") or {},
                "source": {"type": "migration", "mode": "pull", "operation": url + op,
                           "certificate": cert, "secrets": secrets,
                           "instance_only": instance_only}}
        try:
            self.client.call("POST", "/1.0/instances", body)
        except BaseException:
            try:
                src.client.request("DELETE", op)  # cancel the source side
            except (ApiError, OSError):
                pass
            raise
        src.client.wait(op, timeout)

    def delete_image(self, fp: str) -> None:
        self.client.call("DELETE", f"/1.0/images/{fp}")


def wait_socket(path: str, timeout: float) -> float:
    """Seconds until GET /1.0 answers on a unix socket (raises on timeout)."""
    t0 = time.perf_counter()
    deadline = t0 + timeout
    while True:
        try:
            c = Client(path, timeout=2)
            c.server()
            c.close()
            return time.perf_counter() - t0
        except (OSError, ApiError):
            if time.perf_counter() > deadline:
                raise TimeoutError(f"no LXD API on {path} after {timeout:.0f}s")
            time.sleep(0.02)
