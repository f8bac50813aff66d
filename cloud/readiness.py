"""Readiness checks: each returns None when its service answers, else why not.

A service is up when it does its job for a client, not when its process
exists: an API answers HTTP, MariaDB answers a ping, an agent has reported to
Neutron, a compute service is up in nova's service list.
"""
from __future__ import annotations

import http.client as httplib
import json
import socket
import subprocess
import time
from collections.abc import Callable

Check = Callable[[], "str | None"]


def tcp(host: str, port: int) -> Check:
    def check() -> str | None:
        try:
            with socket.create_connection((host, port), timeout=2):
                return None
        except OSError as e:
            return f"{host}:{port}: {e}"
    return check


def http(host: str, port: int, path: str = "/") -> Check:
    """Any answer below 500 counts (an API root may answer 300 or 401)."""
    def check() -> str | None:
        try:
            conn = httplib.HTTPConnection(host, port, timeout=5)
            conn.request("GET", path)
            status = conn.getresponse().status
            conn.close()
        except OSError as e:
            return f"http://{host}:{port}{path}: {e}"
        return None if status < 500 else f"http://{host}:{port}{path}: HTTP {status}"
    return check


class UnixHTTP(httplib.HTTPConnection):
    """HTTP over a unix socket (a runtime's API)."""

    def __init__(self, path: str):
        super().__init__("localhost", timeout=5)
        self._path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(5)
        self.sock.connect(self._path)


def lxd_socket(path: str) -> Check:
    """The runtime answers GET /1.0 on its unix socket."""
    def check() -> str | None:
        try:
            conn = UnixHTTP(path)
            conn.request("GET", "/1.0")
            body = json.loads(conn.getresponse().read())
            conn.close()
        except (OSError, ValueError) as e:
            return f"{path}: {e}"
        return None if body.get("status_code") == 200 else f"{path}: {body}"
    return check


def command(*argv: str) -> Check:
    def check() -> str | None:
        try:
            done = subprocess.run(list(argv), capture_output=True, text=True, timeout=20)
        except (OSError, subprocess.TimeoutExpired) as e:
            return f"{argv[0]}: {e}"
        if done.returncode == 0:
            return None
        lines = (done.stderr or done.stdout).strip().splitlines()
        return lines[-1] if lines else f"exit {done.returncode}"
    return check


def running() -> Check:
    """For a worker with nothing to ask: up once its process stays up (the
    supervisor's start seconds) and the services that need it prove the rest."""
    return lambda: None


_admin = None


def admin():
    """An openstacksdk connection as the cloud's admin (cached)."""
    global _admin
    if _admin is None:
        import openstack

        from cloud import layout
        _admin = openstack.connect(
            auth_url=layout.url("keystone", "/v3"), username="admin",
            password=layout.ADMIN_PASSWORD, project_name="admin",
            user_domain_name="Default", project_domain_name="Default",
            region_name=layout.REGION, compute_api_version="2.96",
            connect_retries=3)
    return _admin


def forget_admin() -> None:
    """Drop the cached connection (its token's catalogue may be out of date)."""
    global _admin
    _admin = None
    _listings.clear()


_listings: dict[str, tuple[float, list]] = {}
LISTING_TTL = 1.0


def _listing(kind: str) -> list:
    """nova's compute services or Neutron's agents, listed at most once a
    second however many services wait on them. Why: with ten hosts, twenty
    checks each listing on every poll were dozens of API calls a second to
    nova-api and neutron-server, on the two cores the starting services need."""
    now = time.monotonic()
    cached = _listings.get(kind)
    if cached and now - cached[0] < LISTING_TTL:
        return cached[1]
    if kind == "nova":
        found = list(admin().compute.services())
    else:
        found = list(admin().network.agents())
    _listings[kind] = (now, found)
    return found


def nova_service(binary: str, host: str | None = None) -> Check:
    """The service is up in nova's service list (it reported over RPC)."""
    def check() -> str | None:
        try:
            found = [s for s in _listing("nova")
                     if s.binary == binary and (host is None or s.host == host)]
        except Exception as e:  # noqa: BLE001 - any API failure means not ready
            return f"nova service list: {e}"
        if not found:
            return f"{binary} has not registered yet"
        return None if any(s.state == "up" for s in found) else f"{binary} is down"
    return check


def neutron_agent(binary: str, host: str) -> Check:
    """The agent reported its state to neutron-server and is alive."""
    def check() -> str | None:
        try:
            found = [a for a in _listing("neutron") if a.binary == binary and a.host == host]
        except Exception as e:  # noqa: BLE001 - any API failure means not ready
            return f"neutron agent list: {e}"
        if not found:
            return f"{binary} on {host} has not reported yet"
        return None if found[0].is_alive else f"{binary} on {host} is not alive"
    return check
