"""The driver's connection to its runtime: the one LXD client (``runtime.client``)
configured from ``[lxd]``, its errors turned into the driver's.

The client is created lazily and once per driver (not at import), and it is safe
to share between nova-compute's native threads: requests' connection pools are
thread-safe and the client is never mutated after creation.
"""
from __future__ import annotations

import re
import threading
from collections.abc import Callable

import pylxd
import requests

from nova_lxd_py import exception
from runtime.client import connection
from runtime.client.errors import ConfigError, Unreachable

UNIX_SCHEME = connection.UNIX_SCHEME


class Endpoint(connection.Endpoint):
    """The runtime's address and certificates (see runtime.client.Endpoint)."""

    @classmethod
    def from_conf(cls, conf) -> Endpoint:
        """Captured once, so later CONF changes (tests start several compute
        services in one process) don't move a running driver."""
        lxd = conf.lxd
        return cls(url=lxd.endpoint, client_cert=lxd.client_cert,
                   client_key=lxd.client_key, server_cert=lxd.server_cert,
                   timeout=lxd.timeout)


def make_session(endpoint: connection.Endpoint) -> tuple[requests.Session,
                                                        tuple[str, str] | None]:
    """A session that ignores CA/proxy variables, and the client certificate."""
    try:
        return connection.session(endpoint), endpoint.cert
    except ConfigError as exc:
        raise exception.RuntimeConfigError(reason=f"[lxd] {exc}") from exc


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


def _watched(session, endpoint: connection.Endpoint, watch: ConnectionWatch):
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


def make_client(endpoint: connection.Endpoint,
                watch: ConnectionWatch | None = None) -> pylxd.Client:
    """Connect to the runtime; raises RuntimeUnavailable with the endpoint
    named when it cannot be reached."""
    session, _cert = make_session(endpoint)  # a config error is not an outage
    if watch is not None:
        _watched(session, endpoint, watch)
    try:
        return connection.connect(endpoint, session)
    except exception.RuntimeUnavailable:
        raise
    except Unreachable as exc:
        raise exception.RuntimeUnavailable(endpoint=exc.endpoint, reason=exc.reason) from exc


class ClientFactory:
    """Lazily builds and caches one client; ``reset`` after a lost runtime."""

    def __init__(self, endpoint: connection.Endpoint,
                 watch: ConnectionWatch | None = None):
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
