"""/1.0/certificates: the trust store, trust tokens and the trust password.

A client becomes trusted by having its certificate's fingerprint here. It gets
here from a trusted client (`lxc config trust add`, pylxd `certificates.create`),
or by itself over HTTPS with a one-time token or the trust password
(`lxc remote add`, pylxd `client.authenticate`). A token is an operation that
stays running until used, cancelled or expired (`core.remote_token_expiry`): its
secret dies with it. Tokens belong to no project, so only administrators see them,
and only their creator sees the secret (runtime.operations).

A restricted certificate sees only itself here, may replace its own certificate
(key rotation) but change nothing else, and may remove only itself.
"""
from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import json
import re
import secrets
import ssl
import time

from aiohttp import web

from runtime import auth, tls
from runtime.api import daemon, read_json, recursion, response
from runtime.auth import AUTHENTICATED, UNTRUSTED
from runtime.base.passwords import check_password
from runtime.errors import BadRequest, Conflict, Forbidden, NotFound, RuntimeAPIError
from runtime.base.timefmt import timestamp

_NO_EXPIRY = "0001-01-01T00:00:00Z"
_TYPES = ("client", "metrics")
# LXD's expiry expressions: "30M", "1H 30M", "2d", "1w"... (S, M, H, d, w, m, y).
_EXPIRY_UNITS = {"S": 1, "M": 60, "H": 3600, "d": 86400, "w": 7 * 86400,
                 "m": 30 * 86400, "y": 365 * 86400}


def expiry_seconds(expr: str) -> float:
    """Seconds an LXD expiry expression stands for (0 for ""), or ValueError."""
    total, seen = 0.0, set()
    for part in str(expr).split():
        m = re.fullmatch(r"(\d{1,9})([SMHdwmy])", part)
        if not m or m.group(2) in seen:
            raise ValueError(f"invalid expiry expression {expr!r} (e.g. 30M, 1H, 2d)")
        seen.add(m.group(2))
        total += int(m.group(1)) * _EXPIRY_UNITS[m.group(2)]
    return total


class TokenExpired(RuntimeAPIError):
    status = 403


# Certificates -------------------------------------------------------------------
def parse_certificate(text: str) -> tuple[str, str]:
    """(PEM, fingerprint) from a PEM or base64 DER certificate, or a clear 400."""
    if text is not None and not isinstance(text, str):
        raise BadRequest("'certificate' must be a string (PEM or base64 DER)")
    text = (text or "").strip()
    if not text:
        raise BadRequest("Missing 'certificate'")
    try:
        if "BEGIN CERTIFICATE" in text:
            der = tls.pem_to_der(text)
        else:
            der = base64.b64decode("".join(text.split()), validate=True)
        from cryptography import x509
        cert = x509.load_der_x509_certificate(der)
    except (ValueError, binascii.Error) as exc:
        raise BadRequest(f"Invalid certificate: {exc}")
    from cryptography.hazmat.primitives import serialization
    pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    return pem, tls.fingerprint_der(der)


def _render(row: dict) -> dict:
    return {"name": row["name"], "type": row["type"], "restricted": bool(row["restricted"]),
            "projects": row["projects"] or [], "certificate": row["certificate"],
            "fingerprint": row["fingerprint"]}


def _lookup(d, prefix: str) -> dict:
    prefix = prefix.lower()
    rows = d.certificate_rows.by_prefix(prefix)
    if not prefix or not rows:
        raise NotFound("Certificate not found")
    if len(rows) > 1:
        raise BadRequest(f"Certificate prefix {prefix!r} is ambiguous")
    return rows[0]


def _check_projects(d, restricted: bool, projects) -> list[str]:
    if projects is None:
        projects = []
    if not isinstance(projects, list) or not all(isinstance(p, str) for p in projects):
        raise BadRequest("'projects' must be a list of project names")
    for p in projects:
        if not d.project_rows.exists(p):
            raise BadRequest(f"Project {p!r} not found")
    return projects if restricted else projects


def add_certificate(d, pem: str, fp: str, name: str, ctype: str = "client",
                    restricted: bool = False, projects: list | None = None) -> None:
    if ctype not in _TYPES:
        raise BadRequest(f"Invalid certificate type {ctype!r} (client or metrics)")
    if d.certificate_rows.exists(fp):
        raise Conflict("Certificate already in trust store")
    d.certificate_rows.create(fp, pem, type=ctype, name=name or "",
                              restricted=bool(restricted), projects=projects or [])
    d.bus.lifecycle("certificate-created", f"/1.0/certificates/{fp}", "")


# Tokens -----------------------------------------------------------------------
def _tokens(d) -> list:
    return [op for op in d.ops.running() if op.cls == "token"
            and op.metadata.get("secret")]


def _find_token(d, value: str):
    """The pending token operation matching a secret or a whole encoded token."""
    candidates = {value}
    try:
        decoded = json.loads(base64.b64decode(value + "=" * (-len(value) % 4)))
        if isinstance(decoded, dict) and decoded.get("secret"):
            candidates.add(str(decoded["secret"]))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        pass
    for op in _tokens(d):
        for cand in candidates:
            if hmac.compare_digest(op.metadata["secret"], cand):
                if op.expires and time.time() >= op.expires:
                    raise TokenExpired("Token has expired")
                return op
    return None


def encode_token(metadata: dict, name: str) -> str:
    """LXD's token format: base64 JSON the client decodes to find and trust us."""
    data = {"client_name": name, "fingerprint": metadata["fingerprint"],
            "addresses": metadata["addresses"], "secret": metadata["secret"],
            "expires_at": metadata.get("expires_at", _NO_EXPIRY)}
    return base64.b64encode(json.dumps(data, separators=(",", ":")).encode()).decode()


async def _create_token(request: web.Request, d, body: dict) -> web.Response:
    name = str(body.get("name") or "")
    restricted = bool(body.get("restricted", False))
    projects = _check_projects(d, restricted, body.get("projects"))
    ctype = body.get("type") or "client"
    if ctype not in _TYPES:
        raise BadRequest(f"Invalid certificate type {ctype!r} (client or metrics)")
    used = asyncio.Event()
    lifetime = expiry_seconds(d.server_config.get("core.remote_token_expiry", ""))
    expires = time.time() + lifetime if lifetime else 0.0
    meta = {"request": {"name": name, "type": ctype,
                        "restricted": restricted, "projects": projects,
                        "certificate": "", "token": True},
            "secret": secrets.token_hex(32), "fingerprint": d.server_cert_fp(),
            "addresses": d.https_addresses(),
            "expires_at": timestamp(expires) if expires else _NO_EXPIRY}

    async def wait_used(op):
        try:
            await asyncio.wait_for(used.wait(), lifetime or None)
        except TimeoutError:
            raise TokenExpired("Token has expired")
        finally:
            op.metadata.pop("secret", None)
    # project "": a token belongs to no project (administrators only).
    op = d.ops.create("token", "Certificate add token", wait_used, metadata=meta,
                      cancellable=True, project="")
    op.used = used
    op.expires = expires
    return response.async_(op)


# Handlers ---------------------------------------------------------------------
def _own_only(request: web.Request, rows: list[dict]) -> list[dict]:
    requestor = auth.of(request)
    if requestor.admin:
        return rows
    return [r for r in rows if r["fingerprint"] == requestor.fingerprint]


def _load(request: web.Request) -> dict:
    """The certificate named in the path; a restricted caller finds only its own."""
    row = _lookup(daemon(request), request.match_info["fingerprint"])
    if not _own_only(request, [row]):
        raise NotFound("Certificate not found")
    return row


async def list_certificates(request: web.Request) -> web.Response:
    d = daemon(request)
    rows = _own_only(request, d.certificate_rows.list())
    if recursion(request):
        return response.sync([_render(r) for r in rows])
    return response.sync([f"/1.0/certificates/{r['fingerprint']}" for r in rows])


async def create_certificate(request: web.Request) -> web.Response:
    d = daemon(request)
    requestor = auth.of(request)
    trusted = requestor.trusted
    if trusted and not requestor.admin:
        raise Forbidden(auth.RESTRICTED)
    body = await read_json(request)
    if not trusted and not (body.get("trust_token") or body.get("password")):
        raise Forbidden("not authorized")
    if body.get("token"):
        if not trusted:
            raise Forbidden("not authorized")
        return await _create_token(request, d, body)
    if body.get("certificate"):
        pem, fp = parse_certificate(body["certificate"])
    elif request.get("client_cert_der"):
        der = request["client_cert_der"]
        pem = ssl.DER_cert_to_PEM_cert(der)
        fp = tls.fingerprint_der(der)
    else:
        raise BadRequest("No certificate given and none presented over TLS")
    name = str(body.get("name") or "")
    ctype = body.get("type") or "client"
    restricted = bool(body.get("restricted", False))
    projects = body.get("projects")
    if not trusted:
        secret = str(body.get("trust_token") or body.get("password") or "")
        if not secret:
            raise Forbidden("not authorized")
        if body.get("certificate") and fp != request.get("client_fingerprint"):
            raise Forbidden("Only the certificate presented over TLS can be added this way")
        token = _find_token(d, secret)
        if token is not None:
            req = token.metadata["request"]
            name = req.get("name") or name
            ctype, restricted, projects = req["type"], req["restricted"], req["projects"]
            token.metadata.pop("secret", None)
            add_certificate(d, pem, fp, name, ctype, restricted, projects)
            token.used.set()
            return response.created(f"/1.0/certificates/{fp}")
        stored = d.server_config.get("core.trust_password")
        # scrypt is deliberately slow (~0.1 s): keep it off the event loop.
        if not stored or not await asyncio.to_thread(check_password, stored, secret):
            raise Forbidden("not authorized")
        restricted, projects = False, []
    projects = _check_projects(d, restricted, projects)
    add_certificate(d, pem, fp, name, ctype, restricted, projects)
    return response.created(f"/1.0/certificates/{fp}")


async def get_certificate(request: web.Request) -> web.Response:
    row = _load(request)
    return response.sync(_render(row), etag=row["fingerprint"])


def _changes_only_certificate(row: dict, body: dict, patch: bool) -> bool:
    """True when the body keeps name, type and restrictions as they are."""
    current = {"name": row["name"], "type": row["type"],
               "restricted": bool(row["restricted"]), "projects": row["projects"] or []}
    wanted = {"name": str(body.get("name") or ""), "type": body.get("type") or "client",
              "restricted": body.get("restricted", False), "projects": body.get("projects")
              or []}
    return all(current[k] == wanted[k] for k in current if k in body or not patch)


async def update_certificate(request: web.Request) -> web.Response:
    d = daemon(request)
    row = _load(request)
    body = await read_json(request)
    patch = request.method == "PATCH"
    if not auth.of(request).admin and not _changes_only_certificate(row, body, patch):
        raise Forbidden("A restricted certificate can only replace its own certificate")
    values = {}
    if "name" in body or not patch:
        values["name"] = str(body.get("name") or "")
    if "type" in body or not patch:
        ctype = body.get("type") or "client"
        if ctype not in _TYPES:
            raise BadRequest(f"Invalid certificate type {ctype!r}")
        values["type"] = ctype
    if "restricted" in body or not patch:
        values["restricted"] = bool(body.get("restricted", False))
    if "projects" in body or not patch:
        values["projects"] = _check_projects(d, True, body.get("projects"))
    new_fp = row["fingerprint"]
    if body.get("certificate"):
        pem, new_fp = parse_certificate(body["certificate"])
        if new_fp != row["fingerprint"]:
            if d.certificate_rows.exists(new_fp):
                raise Conflict("Certificate already in trust store")
            values["certificate"], values["new_fingerprint"] = pem, new_fp
    d.certificate_rows.update(row["fingerprint"], **values)
    d.bus.lifecycle("certificate-updated", f"/1.0/certificates/{new_fp}", "")
    return response.sync({})


async def delete_certificate(request: web.Request) -> web.Response:
    d = daemon(request)
    row = _load(request)
    d.certificate_rows.delete(row["fingerprint"])
    d.bus.lifecycle("certificate-deleted", f"/1.0/certificates/{row['fingerprint']}", "")
    return response.sync({})


ROUTES = [
    ("GET", "/1.0/certificates", list_certificates, AUTHENTICATED),
    # Untrusted clients may POST to join (token or password); checked in the handler.
    ("POST", "/1.0/certificates", create_certificate, UNTRUSTED),
    ("GET", "/1.0/certificates/{fingerprint}", get_certificate, AUTHENTICATED),
    ("PUT", "/1.0/certificates/{fingerprint}", update_certificate, AUTHENTICATED),
    ("PATCH", "/1.0/certificates/{fingerprint}", update_certificate, AUTHENTICATED),
    ("DELETE", "/1.0/certificates/{fingerprint}", delete_certificate, AUTHENTICATED),
]
