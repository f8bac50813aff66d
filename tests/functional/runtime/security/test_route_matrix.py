"""Every endpoint of the daemon, called by every kind of caller (LXD's
tls_restrictions.sh, generalised): the routes come from the daemon's own endpoint
tables, so an endpoint added tomorrow is covered the day it is added.

The expectations do not come from those tables (they would only repeat them):
- a client without a trusted certificate reaches `GET /` and `GET /1.0` (the public
  form), public images and nothing else;
- a `metrics` certificate gets exactly what a stranger gets, everywhere but
  `/1.0/metrics`;
- a certificate restricted to p1, aimed at p2's objects, gets 403 or 404 for every
  change and nothing of p2 in any answer, and p2 (and the default project) are
  byte-for-byte the same afterwards;
- the same certificate with `all-projects=true` sees nothing of p2 either;
- on p1's own objects it is refused nothing but the server-wide settings LXD keeps
  for administrators (server config, pools, networks, projects, adding trust).
"""
from __future__ import annotations

import re

import pytest

from runtime.api import app

MISSING = "nosuchthing"


def _routes() -> list[tuple[str, str]]:
    out = []
    for mod in app.MODULES:
        for method, path, _handler, _access in mod.ROUTES:
            out.append((method, path))
    return out


ROUTES = _routes()
IDS = [f"{m} {p}" for m, p in ROUTES]
GETS = [(m, p) for m, p in ROUTES if m == "GET"]

# What LXD keeps for administrators even from a certificate of the project.
SERVER_LEVEL = [
    ("PUT|PATCH", r"/1\.0"),
    ("POST", r"/1\.0/storage-pools"), ("PUT|PATCH|DELETE", r"/1\.0/storage-pools/[^/]+"),
    ("POST", r"/1\.0/networks"), ("PUT|PATCH|POST|DELETE", r"/1\.0/networks/[^/]+"),
    ("POST", r"/1\.0/projects"), ("PUT|PATCH|POST|DELETE", r"/1\.0/projects/[^/]+"),
    ("POST", r"/1\.0/certificates"),
]
PUBLIC_GETS = ("/", "/1.0")


def _server_level(method: str, path: str) -> bool:
    return any(re.fullmatch(m, method) and re.fullmatch(p, path) for m, p in SERVER_LEVEL)


def fill(world, template: str, proj: str, missing: bool = False) -> str:
    """A concrete path: the template's parameters named after objects of `proj`."""
    names = world.names[proj]

    def sub(m):
        key = m.group(1)
        if missing and key not in ("pool", "type"):
            return MISSING
        if key == "name":
            head = template[:m.start()]
            if head.startswith("/1.0/images/aliases"):
                return names["alias"]
            for prefix, value in (("/1.0/instances", names["instance"]),
                                  ("/1.0/profiles", names["profile"]),
                                  ("/1.0/projects", proj), ("/1.0/networks", "lo"),
                                  ("/1.0/storage-pools", "default")):
                if head.startswith(prefix):
                    return value
        if key == "fingerprint":
            if template.startswith("/1.0/certificates"):
                return world.fingerprints["restricted" if proj == "p1" else "admin"]
            return names["fingerprint"]
        if key == "id":
            # A finished operation stays 5 s (as in LXD): make one just before the call.
            return _operation(world, proj)
        if key == "snap":
            return "vs1" if "/volumes/" in template else "s1"
        return {"pool": "default", "type": "custom", "vol": names["volume"],
                "file": "lxc.log"}.get(key, MISSING)
    return re.sub(r"\{(\w+)(?::[^}]*)?\}", sub, template)


def _leaks(world, text: str, projects=("p2", "default")) -> list[str]:
    return [p for p in projects if world.marker(p) in text
            or world.names[p]["instance"] in text or world.names[p]["volume"] in text]


def _operation(world, proj: str) -> str:
    """A fresh operation of the administrator's in proj (it sets the project's
    marker as its instance's description, which the sweep's state includes)."""
    inst = world.names[proj]["instance"]
    env = world.admin("PATCH", f"/1.0/instances/{inst}", project=proj,
                      json={"description": world.marker(proj)})
    return env["operation"].split("/")[-1]


@pytest.fixture(scope="module")
def sweep(world):
    """The foreign projects' state before the sweep (after each project's instance
    got its marker description, as every operation aimed at makes it)."""
    for proj in ("p1", "p2", "default"):
        _operation(world, proj)
    counts = {"_before": {p: world.state(p) for p in ("p2", "default")}}
    yield counts
    counts = {k: v for k, v in counts.items() if not k.startswith("_")}
    print(f"\nroute matrix: {len(ROUTES)} routes; cases per class: {counts}")


def _count(counts: dict, key: str) -> None:
    counts[key] = counts.get(key, 0) + 1


def _call(world, who: str, method: str, path: str, proj: str | None, body=None,
          **params):
    if proj is not None:
        params["project"] = proj
    kw = {"params": params}
    if method in ("POST", "PUT", "PATCH"):
        kw["data"] = body if body is not None else b"{}"
        kw["headers"] = {"Content-Type": "application/json"}
    return world.req(who, method, path, **kw)


@pytest.mark.parametrize("who", ["none", "stranger"])
@pytest.mark.parametrize("method,template", ROUTES, ids=IDS)
def test_untrusted(world, sweep, who, method, template):
    path = fill(world, template, "p2")
    r = _call(world, who, method, path, "p2")
    _count(sweep, "untrusted")
    if method == "GET" and path in PUBLIC_GETS:
        assert r.status_code == 200
        if path == "/1.0":
            assert r.json()["metadata"]["auth"] == "untrusted"
            assert "config" not in r.json()["metadata"]
    elif method == "GET" and path.startswith("/1.0/images"):
        assert r.status_code in (200, 404), r.text[:200]   # public images only
        assert not _leaks(world, r.text, ("p2",)), r.text[:300]
    else:
        assert r.status_code == 403, (r.status_code, r.text[:200])
        assert r.json()["error_code"] == 403


@pytest.mark.parametrize("method,template", ROUTES, ids=IDS)
def test_metrics_certificate(world, sweep, method, template):
    path = fill(world, template, "p2")
    r = _call(world, "metrics", method, path, "p2")
    _count(sweep, "metrics")
    if path == "/1.0/metrics":
        assert r.status_code == 200 and r.text.endswith("# EOF\n"), r.text[-200:]
        return
    stranger = _call(world, "stranger", method, path, "p2")
    assert r.status_code == stranger.status_code, (r.status_code, r.text[:200])
    if r.status_code == 200 and path == "/1.0":
        assert r.json()["metadata"]["auth"] == "untrusted"


@pytest.mark.parametrize("method,template", ROUTES, ids=IDS)
def test_restricted_on_another_project(world, sweep, method, template):
    path = fill(world, template, "p2")
    r = _call(world, "restricted", method, path, "p2")
    _count(sweep, "restricted->p2")
    if method == "GET":
        if r.status_code not in (403, 404):
            assert r.status_code == 200 or "/websocket" in path or path == "/1.0/events", \
                (r.status_code, r.text[:200])
            assert not _leaks(world, r.text), r.text[:400]
    else:
        assert r.status_code in (403, 404), (r.status_code, r.text[:300])


@pytest.mark.parametrize("named", ["p1", "default"])
@pytest.mark.parametrize("method,template", GETS, ids=[f"{m} {p}" for m, p in GETS])
def test_restricted_with_all_projects(world, sweep, method, template, named):
    """`all-projects=true` without `project` passes the route gate (the handler lists
    the caller's projects only): a handler that then reads the default project's
    object by name must still refuse it."""
    path = fill(world, template, named)
    r = _call(world, "restricted", method, path, None, **{"all-projects": "true",
                                                          "recursion": "1"})
    _count(sweep, "restricted all-projects")
    assert not _leaks(world, r.text), r.text[:400]


@pytest.mark.parametrize("method,template", ROUTES, ids=IDS)
def test_restricted_on_its_own_project(world, sweep, method, template):
    """Bodies are `[]` (refused by every handler once authorised) and deletions name
    missing objects, so the walk changes nothing; only the 403s matter."""
    path = fill(world, template, "p1", missing=method == "DELETE")
    r = _call(world, "restricted", method, path, "p1", body=b"[]")
    _count(sweep, "restricted->p1")
    if _server_level(method, path) or path.endswith("/websocket"):
        # (a websocket without its secret is refused to anyone)
        assert r.status_code == 403, (r.status_code, r.text[:200])
    else:
        assert r.status_code != 403, r.text[:300]
        assert r.status_code < 500, r.text[:300]


def test_foreign_projects_unchanged(world, sweep):
    """Runs after the walks: nothing the restricted certificate sent changed p2 or
    the default project."""
    for proj in ("p2", "default"):
        assert world.state(proj) == sweep["_before"][proj], proj


@pytest.mark.parametrize("method,template", GETS, ids=[f"{m} {p}" for m, p in GETS])
def test_administrator_sees_what_others_must_not(world, sweep, method, template):
    """The markers do reach an administrator on these routes: the 'nothing of p2'
    checks above look at answers that would carry them."""
    path = fill(world, template, "p2")
    r = _call(world, "admin", method, path, "p2", recursion="1")
    _count(sweep, "admin")
    sweep.setdefault("_admin_leaks", 0)
    if _leaks(world, r.text, ("p2",)):
        sweep["_admin_leaks"] += 1


def test_markers_are_visible_to_administrators(sweep):
    assert sweep.get("_admin_leaks", 0) >= 10, sweep
