"""Remotes: where they are, their pinned certificates, and clients for them (the one
LXD client, runtime.client, which ignores CA and proxy variables of the environment).

State lives in $NOVA_LXD_CONF (default ~/.config/nova-lxd): `config.yml` (remotes
and the default one), `client.crt`/`client.key` (made on first use, like lxc's),
and `servercerts/<remote>.crt`, the certificate accepted when the remote was
added. Every later connection pins that certificate, so a changed server
certificate is an error, never silently trusted.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import socket
import ssl
import urllib.parse

import pylxd
import yaml

from runtime.client import Endpoint, connect

DEFAULT_SOCKET_DIR = "/var/lib/nova-lxd-runtime"


class CLIError(Exception):
    """A user-facing error: printed as one line, exit status 1."""


def local_socket() -> str:
    return os.path.join(os.environ.get("LXD_DIR", DEFAULT_SOCKET_DIR), "unix.socket")


def cert_fingerprint(pem: str) -> str:
    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(pem)).hexdigest()


def decode_token(value: str) -> dict | None:
    try:
        data = json.loads(base64.b64decode(value + "=" * (-len(value) % 4)))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) and data.get("secret") else None


class Config:
    def __init__(self, path: str | None = None):
        self.dir = path or os.environ.get("NOVA_LXD_CONF") or os.path.join(
            os.path.expanduser("~"), ".config", "nova-lxd")
        self.file = os.path.join(self.dir, "config.yml")
        data = {}
        if os.path.exists(self.file):
            with open(self.file) as f:
                data = yaml.safe_load(f) or {}
        self.default = data.get("default-remote", "local")
        self.remotes: dict[str, dict] = data.get("remotes") or {}
        self.remotes.setdefault("local", {"addr": "unix://", "protocol": "lxd"})

    def save(self) -> None:
        os.makedirs(self.dir, mode=0o700, exist_ok=True)
        tmp = self.file + ".tmp"
        with open(tmp, "w") as f:
            yaml.safe_dump({"default-remote": self.default, "remotes": self.remotes}, f)
        os.replace(tmp, self.file)

    # Paths ------------------------------------------------------------------
    @property
    def client_cert(self) -> tuple[str, str]:
        crt, key = os.path.join(self.dir, "client.crt"), os.path.join(self.dir, "client.key")
        if not (os.path.exists(crt) and os.path.exists(key)):
            from runtime.certs import generate_keypair
            os.makedirs(self.dir, mode=0o700, exist_ok=True)
            generate_keypair(crt, key, f"nova-lxd@{socket.gethostname()}")
        return crt, key

    def server_cert_path(self, remote: str) -> str:
        return os.path.join(self.dir, "servercerts", f"{remote}.crt")

    def server_cert(self, remote: str) -> str | None:
        path = self.server_cert_path(remote)
        if os.path.exists(path):
            with open(path) as f:
                return f.read()
        return None

    # Parsing ----------------------------------------------------------------
    def split(self, ref: str) -> tuple[str, str]:
        """`remote:name` -> (remote, name); a bare name uses the default remote."""
        if ":" in ref:
            remote, _, name = ref.partition(":")
            if remote in self.remotes:
                return remote, name
            raise CLIError(f"Remote {remote!r} doesn't exist (see `remote list`)")
        return self.default, ref

    def remote(self, name: str) -> dict:
        if name not in self.remotes:
            raise CLIError(f"Remote {name!r} doesn't exist")
        return self.remotes[name]

    # Clients ----------------------------------------------------------------
    def endpoint(self, name: str) -> Endpoint:
        """Where remote *name* is, with our client certificate and its pinned one."""
        r = self.remote(name)
        if r.get("protocol") == "simplestreams":
            raise CLIError(f"Remote {name!r} is an image server (simplestreams): it only "
                           "serves images")
        if r["addr"].startswith("unix://"):
            sock = r["addr"][len("unix://"):] or local_socket()
            if not os.path.exists(sock):
                raise CLIError(f"No runtime listening on {sock} (set LXD_DIR?)")
            return Endpoint.unix(sock, timeout=None)
        crt, key = self.client_cert
        pinned = self.server_cert_path(name) if self.server_cert(name) else None
        return Endpoint(r["addr"], client_cert=crt, client_key=key, server_cert=pinned,
                        timeout=None)

    def client(self, name: str) -> pylxd.Client:
        """A pylxd client on remote *name* (the one client's connection)."""
        return connect(self.endpoint(name))

    def https_address(self, name: str) -> tuple[str, str | None]:
        """A URL other servers can reach this remote at, and its certificate."""
        r = self.remote(name)
        if not r["addr"].startswith("unix://"):
            return r["addr"], self.server_cert(name)
        info = self.client(name).host_info
        addrs = (info.get("environment") or {}).get("addresses") or []
        if not addrs:
            raise CLIError(f"Remote {name!r} has no HTTPS address: set core.https_address "
                           "on it to copy or move between remotes")
        addr = addrs[0]
        if addr.startswith(("0.0.0.0", "[::]", ":")):
            addr = "127.0.0.1:" + addr.rsplit(":", 1)[1]
        return f"https://{addr}", (info.get("environment") or {}).get("certificate")

    # remote add -------------------------------------------------------------
    def add(self, name: str, addr: str, protocol: str = "lxd", accept: bool = False,
            password: str | None = None, public: bool = False, confirm=None) -> str:
        """Add a remote, checking its certificate fingerprint; returns a status line."""
        if name in self.remotes:
            raise CLIError(f"Remote {name!r} exists already")
        token = decode_token(addr) if "://" not in addr and protocol == "lxd" else None
        if token:
            password = token["secret"]
            addrs = token.get("addresses") or []
            if not addrs:
                raise CLIError("The token carries no server address")
            addr = f"https://{addrs[0]}"
        if "://" not in addr:
            addr = f"https://{addr}"
        addr = addr.rstrip("/")
        parsed = urllib.parse.urlsplit(addr)
        if parsed.scheme == "unix":
            self.remotes[name] = {"addr": addr, "protocol": protocol}
            self.save()
            return f"Remote {name} added"
        if parsed.scheme == "http" and protocol == "simplestreams":
            self.remotes[name] = {"addr": addr, "protocol": protocol, "public": True}
            self.save()
            return f"Remote {name} added"
        if parsed.scheme != "https":
            raise CLIError(f"Invalid remote address {addr!r}")
        port = parsed.port or 8443
        try:
            pem = ssl.get_server_certificate((parsed.hostname, port), timeout=10)
        except OSError as exc:
            raise CLIError(f"Can't reach {addr}: {exc}")
        fp = cert_fingerprint(pem)
        if token:
            if token.get("fingerprint") != fp:
                raise CLIError(f"Certificate fingerprint mismatch between the token and "
                               f"{addr} ({fp})")
        elif not accept:
            answer = (confirm or _ask)(fp)
            if answer not in ("y", "yes", fp):
                raise CLIError("Server certificate NACKed by user")
        os.makedirs(os.path.dirname(self.server_cert_path(name)), mode=0o700, exist_ok=True)
        with open(self.server_cert_path(name), "w") as f:
            f.write(pem)
        self.remotes[name] = {"addr": f"https://{parsed.hostname}:{port}"
                              if not parsed.port else addr, "protocol": protocol,
                              "public": bool(public)}
        try:
            if protocol == "lxd" and not public:
                client = self.client(name)
                if not client.trusted:
                    if not password:
                        raise CLIError("The server doesn't trust this client: give a "
                                       "--password or a token")
                    try:
                        client.authenticate(password)
                    except Exception as exc:  # noqa: BLE001 - pylxd raises several kinds
                        raise CLIError(f"The server refused the password or token: {exc}")
        except BaseException:
            del self.remotes[name]
            os.unlink(self.server_cert_path(name))
            raise
        self.save()
        return f"Client certificate now trusted by server: {name}"


def _ask(fp: str) -> str:
    print(f"Certificate fingerprint: {fp}")
    try:
        return input("ok (y/n/[fingerprint])? ").strip().lower()
    except EOFError:
        return "n"
