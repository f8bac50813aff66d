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
import threading
from dataclasses import dataclass
from urllib import parse

import pylxd
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


def make_session(endpoint: Endpoint):
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
    return session, cert


def make_client(endpoint: Endpoint) -> pylxd.Client:
    """Connect to the runtime; raises RuntimeUnavailable with the endpoint
    named when it cannot be reached."""
    session, cert = make_session(endpoint)
    try:
        return pylxd.Client(endpoint=endpoint.pylxd_url(), cert=cert,
                            session=session, timeout=endpoint.timeout)
    except Exception as exc:  # pylxd wraps connection errors variously
        raise exception.RuntimeUnavailable(endpoint=endpoint.describe(),
                                           reason=str(exc)) from exc


class ClientFactory:
    """Lazily builds and caches one client; ``reset`` after a lost runtime."""

    def __init__(self, endpoint: Endpoint):
        self.endpoint = endpoint
        self._lock = threading.Lock()
        self._client: pylxd.Client | None = None

    def get(self) -> pylxd.Client:
        client = self._client
        if client is not None:
            return client
        with self._lock:
            if self._client is None:
                self._client = make_client(self.endpoint)
            return self._client

    def reset(self) -> None:
        with self._lock:
            self._client = None
