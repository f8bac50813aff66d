"""The driver's connection to its runtime: the one LXD client (``runtime.client``)
configured from ``[lxd]``, its errors turned into the driver's.

The client is created lazily and once per driver (not at import), and it is safe
to share between nova-compute's native threads: requests' connection pools are
thread-safe and the client is never mutated after creation.
"""
from __future__ import annotations

import threading

import pylxd
import requests

from nova_lxd_py import exception, runtime_health
from nova_lxd_py.runtime_health import ConnectionWatch
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


def _watched(session, endpoint: connection.Endpoint, watch: ConnectionWatch):
    """Every request through session reports to the watch (runtime_health); a
    refused, lost or hung runtime becomes RuntimeUnavailable naming the endpoint."""
    return runtime_health.watch_session(
        session, watch,
        lambda reason: exception.RuntimeUnavailable(endpoint=endpoint.describe(),
                                                    reason=reason))


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
