"""Who is calling and what they may reach: LXD's TLS trust model in one place.

Authentication (which certificate a client presented, and whether it is in the
trust store) happens in `runtime.tls`; every request, on the unix socket or over
HTTPS, then gets a `Requestor` and passes `authorize()`, which applies the
access level its endpoint declares in its module's ROUTES table:

- `UNTRUSTED`: anyone; the handler itself checks a secret, token or password.
- `AUTHENTICATED`: any trusted client; the handler shows each caller only what it
  may see (operations, events, certificates, projects, pools, `/1.0`).
- `PROJECT`: trusted clients with access to the request's project (`?project=`,
  checked again by `api.project()` wherever a handler scopes by project).
- `ADMIN`: the unix socket and unrestricted client certificates (server-wide
  settings: `/1.0` changes, pools, networks, projects, the trust store).
- `METRICS`: `/1.0/metrics`, the only place a `metrics` certificate is trusted.

A restricted client certificate (LXD's `restricted: true` with a project list)
sees and touches only its projects; handlers ask `can_access()`, `require()` or
`visible()` for the few object-level checks (a copy's `source.project`, an
operation's project, `used_by` lists).

The requestor of the request being handled is also kept in a context variable,
so an operation knows who created it (only its creator sees its secrets) without
every caller passing it along.
"""
from __future__ import annotations

import contextvars
import dataclasses
import enum
import urllib.parse

from runtime.appkeys import ACCESS, PUBLIC_FALLBACK
from runtime.errors import Forbidden


class Access(enum.Enum):
    UNTRUSTED = "untrusted"
    AUTHENTICATED = "authenticated"
    PROJECT = "project"
    ADMIN = "admin"
    METRICS = "metrics"


UNTRUSTED, AUTHENTICATED, PROJECT, ADMIN, METRICS = (
    Access.UNTRUSTED, Access.AUTHENTICATED, Access.PROJECT, Access.ADMIN, Access.METRICS)
RESTRICTED = "Certificate is restricted"


@dataclasses.dataclass(frozen=True)
class Requestor:
    protocol: str                       # "unix" or "tls"
    fingerprint: str | None = None      # the client certificate's, over TLS
    trusted: bool = True
    cert_type: str = "client"           # "client" or "metrics"
    restricted: bool = False
    projects: tuple[str, ...] = ()

    @property
    def admin(self) -> bool:
        return self.trusted and self.cert_type == "client" and not self.restricted

    @property
    def identity(self) -> tuple[str, str | None]:
        """Who created an operation: the unix socket, or one certificate."""
        return (self.protocol, self.fingerprint)

    def can_access(self, project: str) -> bool:
        if not self.trusted:
            return False
        return not self.restricted or project in self.projects


UNIX = Requestor("unix")
ANONYMOUS = Requestor("tls", trusted=False)
_current: contextvars.ContextVar[Requestor | None] = contextvars.ContextVar(
    "runtime_requestor", default=None)


def from_certificate(fingerprint: str | None, row: dict | None) -> Requestor:
    """The requestor for a TLS client presenting this certificate (row: its trust entry)."""
    if row is None:
        return Requestor("tls", fingerprint, trusted=False)
    return Requestor("tls", fingerprint, trusted=True, cert_type=row.get("type") or "client",
                     restricted=bool(row.get("restricted")),
                     projects=tuple(row.get("projects") or ()))


def current() -> Requestor | None:
    """The requestor of the request being handled (None in daemon-internal work)."""
    return _current.get()


def of(request) -> Requestor:
    return request.get("requestor") or UNIX


# Route-level decision --------------------------------------------------------
def route_access(request) -> Access:
    route = request.match_info.route
    resource = getattr(route, "resource", None)
    if resource is None:
        return ADMIN
    table = request.app.get(ACCESS) or {}
    method = "GET" if request.method == "HEAD" else request.method
    return table.get((method, resource.canonical), ADMIN)


def denial(requestor: Requestor, access: Access, request) -> str | None:
    """Why this requestor may not call this route, or None."""
    if access is UNTRUSTED:
        return None
    if not requestor.trusted:
        return "not authorized"
    if access is METRICS:
        project = request.query.get("project")
        if project and not requestor.can_access(project):
            return f"User does not have permission for project {project!r}"
        return None
    if requestor.cert_type != "client":
        return "not authorized"
    if access is AUTHENTICATED or requestor.admin:
        return None
    if access is ADMIN:
        return RESTRICTED
    if request.query.get("all-projects") == "true" and request.method == "GET" \
            and not request.query.get("project"):
        return None  # the handler lists only the caller's projects
    project = request.query.get("project") or "default"
    if not requestor.can_access(project):
        return f"User does not have permission for project {project!r}"
    return None


async def authorize(request, handler, requestor: Requestor):
    """Run the handler as this requestor if the route lets it; a 403 otherwise."""
    request["requestor"] = requestor
    token = _current.set(requestor)
    try:
        why = denial(requestor, route_access(request), request)
        if why is not None:
            public = _public_fallback(request)
            if public is None:
                raise Forbidden(why)
            return await public(request)
        return await handler(request)
    finally:
        _current.reset(token)


def _public_fallback(request):
    """Public images are served to anyone who may not see the project's private ones
    (the image server role; LXD does the same for restricted certificates)."""
    return request.app[PUBLIC_FALLBACK](request)


# Object-level checks -----------------------------------------------------------
def can_access(request, project: str) -> bool:
    return of(request).can_access(project)


def require(request, project: str) -> str:
    """`project` if the caller may use it (a copy's source, an object's project)."""
    if not can_access(request, project):
        raise Forbidden(f"User does not have permission for project {project!r}")
    return project


def visible(request, urls: list[str]) -> list[str]:
    """The entries of a `used_by` list the caller may know about."""
    requestor = of(request)
    if requestor.admin:
        return urls
    return [u for u in urls if requestor.can_access(project_of_url(u))]


def project_of_url(url: str) -> str:
    query = urllib.parse.urlsplit(url).query
    return urllib.parse.parse_qs(query).get("project", ["default"])[0]

