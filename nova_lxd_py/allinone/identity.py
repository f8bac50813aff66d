"""A stand-in for Keystone's token API, so ordinary clients can log in.

Why: command-line clients (``nova``, ``openstack``) and keystoneauth's
password plugin insist on authenticating against an identity service and
finding endpoints in its catalog. This answers Identity v3 version discovery
and ``POST /v3/auth/tokens`` for any user name and password, with a catalog
holding the all-in-one cloud's Compute and image endpoints. The token it
returns is ``<user>:<project>``, which the Compute API's ``noauth`` layer
reads back as the caller (an administrator). It checks no password: this is
a single-operator demo cloud on loopback, not Keystone.
"""
from __future__ import annotations

import datetime
import json
from collections.abc import Callable, Iterable

DOMAIN = {"id": "default", "name": "Default"}


def _now(delta: datetime.timedelta = datetime.timedelta()) -> str:
    moment = datetime.datetime.now(datetime.timezone.utc) + delta
    return moment.strftime("%Y-%m-%dT%H:%M:%S.000000Z")


class IdentityV3:
    """WSGI app: ``GET /``, ``GET /v3``, ``POST /v3/auth/tokens``."""

    def __init__(self, catalog: dict[str, str], project: str, region: str = "RegionOne"):
        self.catalog = catalog  # service type -> URL
        self.project = project
        self.region = region

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        method = environ["REQUEST_METHOD"]
        path = environ.get("PATH_INFO", "/").rstrip("/") or "/"
        base = f"http://{environ.get('HTTP_HOST', 'localhost')}"
        version = {"id": "v3.14", "status": "stable", "updated": "2020-04-07T00:00:00Z",
                   "links": [{"rel": "self", "href": base + "/v3/"}],
                   "media-types": [{"base": "application/json",
                                    "type": "application/vnd.openstack.identity-v3+json"}]}
        if method == "GET" and path == "/":
            return self._json(start_response, "300 Multiple Choices",
                              {"versions": {"values": [version]}})
        if method == "GET" and path == "/v3":
            return self._json(start_response, "200 OK", {"version": version})
        if method == "POST" and path == "/v3/auth/tokens":
            try:
                length = int(environ.get("CONTENT_LENGTH") or 0)
                request = json.loads(environ["wsgi.input"].read(length) or b"{}")
                token, body = self._token(request)
            except (ValueError, KeyError, TypeError) as exc:
                return self._json(start_response, "400 Bad Request",
                                  {"error": {"code": 400, "message": f"bad request: {exc}"}})
            return self._json(start_response, "201 Created", body,
                              [("X-Subject-Token", token)])
        return self._json(start_response, "404 Not Found",
                          {"error": {"code": 404, "message": f"{method} {path} not served"}})

    def _token(self, request: dict) -> tuple[str, dict]:
        auth = request["auth"]
        identity = auth.get("identity", {})
        user = "admin"
        if "password" in identity.get("methods", []):
            user_ref = identity["password"]["user"]
            user = user_ref.get("name") or user_ref.get("id") or user
        elif "token" in identity.get("methods", []):
            user = identity["token"]["id"].partition(":")[0] or user
        scope = auth.get("scope", {}).get("project", {})
        project = scope.get("name") or scope.get("id") or self.project
        catalog = [{
            "type": kind, "name": kind, "id": kind,
            "endpoints": [{"id": f"{kind}-{interface}", "interface": interface,
                           "region": self.region, "region_id": self.region, "url": url}
                          for interface in ("public", "internal", "admin")],
        } for kind, url in self.catalog.items()]
        body = {"token": {
            "methods": identity.get("methods", ["password"]),
            "user": {"id": user, "name": user, "domain": DOMAIN},
            "project": {"id": project, "name": project, "domain": DOMAIN},
            "roles": [{"id": r, "name": r} for r in ("admin", "member", "reader")],
            "is_domain": False,
            "issued_at": _now(), "expires_at": _now(datetime.timedelta(hours=12)),
            "catalog": catalog,
        }}
        return f"{user}:{project}", body

    @staticmethod
    def _json(start_response: Callable, status: str, body: dict,
              headers: list[tuple[str, str]] | None = None) -> Iterable[bytes]:
        data = json.dumps(body).encode()
        start_response(status, [("Content-Type", "application/json"),
                                ("Content-Length", str(len(data)))] + (headers or []))
        return [data]
