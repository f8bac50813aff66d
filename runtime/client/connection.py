"""Where a runtime is and how to reach it: one place that builds pylxd clients.

Why not ``pylxd.Client(endpoint=..., verify=...)`` directly: requests lets
REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE from the environment override the ``verify``
pylxd gives it, and pylxd then pins the first certificate of that bundle, so every
HTTPS call fails with "Fingerprints did not match". The requests session is built
here with ``trust_env`` off (which also keeps proxy variables away from a
hypervisor-local socket) and handed to pylxd; nobody has to edit os.environ.
"""
from __future__ import annotations

import os
import ssl
from dataclasses import dataclass
from urllib import parse

import pylxd
import requests
from pylxd import client as pylxd_client

from runtime.client.errors import ConfigError, Unreachable

UNIX_SCHEME = "http+unix://"


@dataclass(frozen=True)
class Endpoint:
    """Connection settings, captured once (a running client never moves).

    ``url`` is ``unix:///path/to/unix.socket`` (or the bare path) or
    ``https://host:port``; ``server_cert`` pins the server's certificate."""

    url: str
    client_cert: str | None = None
    client_key: str | None = None
    server_cert: str | None = None
    timeout: float | None = 60

    @classmethod
    def unix(cls, socket_path: str, timeout: float | None = 60) -> Endpoint:
        return cls(url="unix://" + socket_path, timeout=timeout)

    @property
    def is_unix(self) -> bool:
        return not self.url.startswith(("https://", "http://"))

    @property
    def socket_path(self) -> str:
        """The unix socket's path (unix endpoints only)."""
        return self.url.removeprefix("unix://")

    def pylxd_url(self) -> str:
        """The endpoint in the form pylxd's session expects."""
        if self.is_unix:
            return UNIX_SCHEME + parse.quote(self.socket_path, safe="")
        return self.url.rstrip("/")

    def describe(self) -> str:
        return self.url

    @property
    def base_url(self) -> str:
        """The URL prefix of the API for clients that open their own connections
        (websockets): a dummy host on the unix socket."""
        return "http://localhost" if self.is_unix else self.url.rstrip("/")

    def ssl_context(self) -> ssl.SSLContext:
        """TLS as pylxd does it for the API calls: a pinned server certificate is
        the only one trusted (no host name check: the pin is the identity), else the
        system store; and the client certificate."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        cert = self.cert
        if cert:
            ctx.load_cert_chain(*cert)
        if self.server_cert:
            ctx.check_hostname = False
            ctx.load_verify_locations(cafile=self.server_cert)
            ctx.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
        else:
            ctx.load_default_certs()
        return ctx

    @property
    def cert(self) -> tuple[str, str] | None:
        """(certificate, key) of the client, checked for HTTPS."""
        if self.is_unix:
            return None
        if bool(self.client_cert) != bool(self.client_key):
            raise ConfigError("client_cert and client_key must be set together")
        for path in (self.client_cert, self.client_key, self.server_cert):
            if path and not os.path.exists(path):
                raise ConfigError(f"{path} does not exist")
        return (self.client_cert, self.client_key) if self.client_cert else None


def session(endpoint: Endpoint) -> requests.Session:
    """A requests session for *endpoint* that ignores CA/proxy variables."""
    verify: bool | str = True
    if not endpoint.is_unix and endpoint.server_cert:
        verify = endpoint.server_cert
    sess = pylxd_client.get_session_for_url(endpoint.pylxd_url(), verify=verify,
                                            cert=endpoint.cert)
    sess.trust_env = False
    return sess


def connect(endpoint: Endpoint, sess: requests.Session | None = None) -> pylxd.Client:
    """A pylxd client on *endpoint* (pylxd reads ``GET /1.0`` on creation), through
    *sess* if given (one from session(), which a caller may wrap); raises
    Unreachable naming the endpoint when nothing answers there."""
    sess = sess or session(endpoint)
    try:
        return pylxd.Client(endpoint=endpoint.pylxd_url(), cert=endpoint.cert,
                            session=sess, timeout=endpoint.timeout)
    except Exception as exc:  # pylxd wraps connection errors variously
        raise Unreachable(endpoint.describe(), str(exc)) from exc
