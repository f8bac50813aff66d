"""HTTPS listener and TLS client-certificate trust, the way LXD does it.

The daemon owns a self-signed key pair (`server.crt`/`server.key`, EC P-384, made
on first start). When `core.https_address` is set (at start or later through
`PUT/PATCH /1.0`) an HTTPS listener serves the same endpoints as the unix socket,
behind a trust gate: a client is trusted when the SHA-256 fingerprint of the
certificate it presented is in the trust store (`/1.0/certificates`). This module
only says who the client is (`runtime.auth.Requestor`); `runtime.auth` decides
what it may reach (untrusted clients: public `GET /1.0`, joining with a token or
password, websocket secrets, public images).

Python's ssl module only verifies client certificates against CAs, but LXD's
model is "any self-signed certificate, trusted by fingerprint". So the context
asks for a certificate (CERT_OPTIONAL) and a verify callback installed on the
underlying SSL_CTX accepts whatever the client presents; trust is decided per
request from the fingerprint, never by the handshake.
"""
from __future__ import annotations

import asyncio
import ctypes
import hashlib
import logging
import os
import re
import ssl

from aiohttp import web

from runtime import auth
from runtime.appkeys import HTTPS_APP
from runtime.base.passwords import hash_password
from runtime.errors import BadRequest
from runtime.certs import generate_in_child, generate_keypair  # noqa: F401 - re-exported

LOG = logging.getLogger(__name__)
DEFAULT_PORT = 8443
# Forward-secret AEAD suites only (TLS 1.3 suites are fixed by OpenSSL and all fine).
CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"


def pem_to_der(pem: str | bytes) -> bytes:
    if isinstance(pem, bytes):
        pem = pem.decode()
    return ssl.PEM_cert_to_DER_cert(pem.strip() + "\n")


def fingerprint_pem(pem: str | bytes) -> str:
    return hashlib.sha256(pem_to_der(pem)).hexdigest()


def fingerprint_der(der: bytes) -> str:
    return hashlib.sha256(der).hexdigest()


# Accept-any-client-certificate verify callback (see module docstring) -------------
_VERIFY_CB_TYPE = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, ctypes.c_void_p)
_ACCEPT_ALL = _VERIFY_CB_TYPE(lambda ok, store: 1)
_SSL_VERIFY_PEER = 0x01


def _ssl_ctx_pointer(ctx: ssl.SSLContext) -> int:
    """The SSL_CTX* inside a CPython SSLContext (right after PyObject_HEAD)."""
    head = ctypes.sizeof(ctypes.c_ssize_t) + ctypes.sizeof(ctypes.c_void_p)
    return ctypes.c_void_p.from_address(id(ctx) + head).value


def _request_any_client_cert(ctx: ssl.SSLContext) -> None:
    import _ssl
    lib = ctypes.CDLL(_ssl.__file__)
    lib.SSL_CTX_set_verify.argtypes = [ctypes.c_void_p, ctypes.c_int, _VERIFY_CB_TYPE]
    lib.SSL_CTX_set_verify.restype = None
    lib.SSL_CTX_set_verify(_ssl_ctx_pointer(ctx), _SSL_VERIFY_PEER, _ACCEPT_ALL)


def server_context(crt: str, key: str) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(CIPHERS)
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
    ctx.load_cert_chain(crt, key)
    ctx.verify_mode = ssl.CERT_OPTIONAL
    _request_any_client_cert(ctx)
    return ctx


def client_context(crt: str, key: str, server_pem: str | None) -> ssl.SSLContext:
    """For daemon-to-daemon calls: present our cert; pin the peer's if we know it."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(crt, key)
    if server_pem:
        # Pinned: exactly this (self-signed) certificate, whatever name it carries.
        ctx.check_hostname = False
        ctx.load_verify_locations(cadata=server_pem)
        ctx.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    else:
        ctx.load_default_certs()    # no pin given: the system's CAs and host name checks
    return ctx


def parse_address(value: str) -> tuple[str, int]:
    """`host:port`, `[v6]:port`, `:port` or a bare host, as LXD accepts them."""
    value = value.strip()
    m = re.fullmatch(r"\[([^\]]*)\](?::(\d+))?", value)
    if m:
        return m.group(1) or "::", int(m.group(2) or DEFAULT_PORT)
    if value.count(":") > 1:
        return value, DEFAULT_PORT
    host, _, port = value.partition(":")
    return host or "::", int(port or DEFAULT_PORT)


# Trust -------------------------------------------------------------------------
class TLS:
    """Owns the key pair, the HTTPS listener and the trust decision."""

    def __init__(self, daemon) -> None:
        self.d = daemon
        p = daemon.paths
        if not (os.path.exists(p.server_crt) and os.path.exists(p.server_key)):
            generate_in_child(p.server_crt, p.server_key)
            LOG.info("generated server certificate %s", p.server_crt)
        with open(p.server_crt) as f:
            self.cert_pem = f.read()
        self.fingerprint = fingerprint_pem(self.cert_pem)
        self.app: web.Application | None = None
        self.runner: web.AppRunner | None = None
        self.address: str | None = None
        self._lock = asyncio.Lock()

    # Client contexts for outgoing daemon-to-daemon connections
    def client_ssl(self, server_pem: str | None) -> ssl.SSLContext:
        return client_context(self.d.paths.server_crt, self.d.paths.server_key, server_pem)

    def trusted_row(self, fp: str) -> dict | None:
        return self.d.certificate_rows.get(fp)

    def requestor(self, request: web.Request) -> auth.Requestor:
        """Who presented which certificate. As in LXD, a `metrics` certificate is
        only a credential for /1.0/metrics: anywhere else its holder is a stranger."""
        sslobj = request.transport.get_extra_info("ssl_object") if request.transport else None
        der = sslobj.getpeercert(binary_form=True) if sslobj else None
        fp = fingerprint_der(der) if der else None
        request["client_fingerprint"] = fp
        request["client_cert_der"] = der
        row = self.trusted_row(fp) if fp else None
        if row is not None and row.get("type") == "metrics" and \
                not request.path.startswith("/1.0/metrics"):
            row = None
        return auth.from_certificate(fp, row)

    @web.middleware
    async def middleware(self, request: web.Request, handler):
        return await auth.authorize(request, handler, self.requestor(request))

    # Listener ------------------------------------------------------------------
    async def running(self, app: web.Application):
        """aiohttp cleanup context: the HTTPS listener follows `core.https_address`."""
        self.app = app
        await self.reconcile()
        yield
        await self.stop()

    async def reconcile(self) -> None:
        """Make the listener match `core.https_address` (start, move or stop it)."""
        async with self._lock:
            wanted = self.d.server_config.get("core.https_address") or None
            if wanted == self.address and (self.runner is not None) == bool(wanted):
                return
            await self._stop()
            if wanted and self.app is not None:
                host, port = parse_address(wanted)
                runner = web.AppRunner(self.app[HTTPS_APP], access_log=None, handle_signals=False,
                                       shutdown_timeout=1.0)
                await runner.setup()
                ctx = server_context(self.d.paths.server_crt, self.d.paths.server_key)
                try:
                    site = web.TCPSite(runner, host if host not in ("::", "") else None,
                                       port, ssl_context=ctx, reuse_address=True)
                    await site.start()
                except OSError:
                    await runner.cleanup()
                    raise
                self.runner = runner
                self.address = wanted
                LOG.info("HTTPS listening on %s (fingerprint %s)", wanted,
                         self.fingerprint[:12])

    async def _stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            LOG.info("HTTPS listener on %s stopped", self.address)
        self.runner = None
        self.address = None

    async def stop(self) -> None:
        async with self._lock:
            await self._stop()


    # Server configuration ------------------------------------------------------
    async def prepare_config(self, old: dict, config: dict) -> dict:
        """The new server configuration as stored: address checked, password hashed."""
        new = config.get("core.https_address")
        if new and new != old.get("core.https_address"):
            try:
                parse_address(new)
            except ValueError:
                raise BadRequest(f"Invalid core.https_address {new!r}")
        pw = config.get("core.trust_password")
        if pw and pw != old.get("core.trust_password"):
            config = {**config, "core.trust_password": await asyncio.to_thread(
                hash_password, pw)}
        return config

    async def follow_config(self, old: dict, config: dict) -> None:
        """Move the listener to the stored address; on failure put the old one back."""
        before, new = old.get("core.https_address"), config.get("core.https_address")
        if new == before:
            return
        try:
            await self.reconcile()
        except OSError as exc:
            config = dict(config)
            if before:
                config["core.https_address"] = before
            else:
                config.pop("core.https_address", None)
            self.d.server_config.replace(config)
            await self.reconcile()
            raise BadRequest(f"Cannot listen on {new!r}: {exc}")
