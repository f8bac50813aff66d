"""The one place that builds pylxd clients.

Why not ``pylxd.Client(endpoint=..., verify=...)`` directly: requests lets
REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE from the environment override the
``verify`` pylxd gives it, and pylxd then pins the first certificate of that
bundle, so every https call fails with "Fingerprints did not match". We build
the requests session ourselves with ``trust_env`` off (which also keeps proxy
variables away from a hypervisor-local socket) and hand it to pylxd.

The client is created lazily and once per driver (not at import), and it is
safe to share between nova-compute's native threads: requests' connection
pools are thread-safe and we never mutate the client after creation.
"""
from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from urllib import parse

import pylxd
import requests
from pylxd import client as pylxd_client

from nova_lxd_py import exception

UNIX_SCHEME = "http+unix://"


@dataclass(frozen=True)
class Endpoint:
    """Connection settings, captured once so later CONF changes (tests start
    several compute services in one process) don't move a running driver."""

    url: str
    client_cert: str | None = None
    client_key: str | None = None
    server_cert: str | None = None
    timeout: float | None = 60

    @classmethod
    def from_conf(cls, conf) -> Endpoint:
        lxd = conf.lxd
        return cls(url=lxd.endpoint, client_cert=lxd.client_cert,
                   client_key=lxd.client_key, server_cert=lxd.server_cert,
                   timeout=lxd.timeout)

    @property
    def is_unix(self) -> bool:
        return not self.url.startswith(("https://", "http://"))

    def pylxd_url(self) -> str:
        """The endpoint in the form pylxd's session expects."""
        if self.is_unix:
            path = self.url.removeprefix("unix://")
            return UNIX_SCHEME + parse.quote(path, safe="")
        return self.url.rstrip("/")

    def describe(self) -> str:
        return self.url


class ConnectionWatch:
    """Whether the runtime answered the last request, and who to tell when that
    changes: nova-compute takes its service out of scheduling while the runtime
    is away (as the libvirt driver does when its connection closes) and puts it
    back when the runtime answers again. Every request through a watched session
    reports here; the event stream's (re)connects too."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.down_reason: str | None = None
        self._subscribers: list[Callable[[], None]] = []

    def subscribe(self, callback: Callable[[], None]) -> None:
        """callback() runs after each change, in the thread that saw it; it reads
        down_reason itself, so late or out-of-order calls still apply the latest."""
        self._subscribers.append(callback)

    def lost(self, reason: str) -> None:
        with self._lock:
            if self.down_reason is not None:
                return
            self.down_reason = reason
        self._notify()

    def answered(self) -> None:
        if self.down_reason is None:      # the common case: no lock, no work
            return
        with self._lock:
            if self.down_reason is None:
                return
            self.down_reason = None
        self._notify()

    def _notify(self) -> None:
        for callback in self._subscribers:
            callback()


def connection_reason(exc: BaseException) -> str:
    """The operating system's words ("Connection refused") out of the layers
    requests and urllib3 wrap around a failed connect."""
    seen: set[int] = set()
    todo: list[object] = [exc]
    while todo:
        cur = todo.pop(0)
        if not isinstance(cur, BaseException) or id(cur) in seen:
            continue
        seen.add(id(cur))
        if isinstance(cur, OSError) and cur.errno and cur.strerror:
            return cur.strerror
        todo += [*cur.args, getattr(cur, "reason", None), cur.__cause__, cur.__context__]
    found = re.search(r"\[Errno -?\d+\] ([^'\")]+)", str(exc))
    return found.group(1).strip() if found else str(exc)


def _watched(session, endpoint: Endpoint, watch: ConnectionWatch):
    """Every request through session: a refused or lost connection becomes
    RuntimeUnavailable naming the endpoint (not a requests traceback), and the
    watch learns whether the runtime answers."""
    send = session.send

    def send_watched(request, **kwargs):
        try:
            response = send(request, **kwargs)
        except requests.exceptions.ConnectionError as exc:
            reason = connection_reason(exc)
            watch.lost(reason)
            raise exception.RuntimeUnavailable(endpoint=endpoint.describe(),
                                               reason=reason) from exc
        watch.answered()
        return response
    session.send = send_watched
    return session


def make_session(endpoint: Endpoint, watch: ConnectionWatch | None = None):
    """A requests session for *endpoint* that ignores CA/proxy env vars."""
    url = endpoint.pylxd_url()
    cert = None
    verify: bool | str = True
    if not endpoint.is_unix:
        if bool(endpoint.client_cert) != bool(endpoint.client_key):
            raise exception.RuntimeConfigError(
                reason="[lxd] client_cert and client_key must be set together")
        for path in (endpoint.client_cert, endpoint.client_key, endpoint.server_cert):
            if path and not os.path.exists(path):
                raise exception.RuntimeConfigError(reason=f"{path} does not exist")
        if endpoint.client_cert:
            cert = (endpoint.client_cert, endpoint.client_key)
        if endpoint.server_cert:
            verify = endpoint.server_cert
    session = pylxd_client.get_session_for_url(url, verify=verify, cert=cert)
    session.trust_env = False
    if watch is not None:
        _watched(session, endpoint, watch)
    return session, cert


def make_client(endpoint: Endpoint, watch: ConnectionWatch | None = None) -> pylxd.Client:
    """Connect to the runtime; raises RuntimeUnavailable with the endpoint
    named when it cannot be reached."""
    session, cert = make_session(endpoint, watch)
    try:
        return pylxd.Client(endpoint=endpoint.pylxd_url(), cert=cert,
                            session=session, timeout=endpoint.timeout)
    except exception.RuntimeUnavailable:
        raise
    except Exception as exc:  # pylxd wraps connection errors variously
        raise exception.RuntimeUnavailable(endpoint=endpoint.describe(),
                                           reason=str(exc)) from exc


class ClientFactory:
    """Lazily builds and caches one client; ``reset`` after a lost runtime."""

    def __init__(self, endpoint: Endpoint, watch: ConnectionWatch | None = None):
        self.endpoint = endpoint
        self.watch = watch or ConnectionWatch()
        self._lock = threading.Lock()
        self._client: pylxd.Client | None = None

    def get(self) -> pylxd.Client:
        client = self._client
        if client is not None:
            return client
        with self._lock:
            if self._client is None:
                self._client = make_client(self.endpoint, self.watch)
            return self._client

    def reset(self) -> None:
        with self._lock:
            self._client = None
