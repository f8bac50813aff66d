"""Pure logic of the trust model: who may call a route (runtime.auth.denial) and a
restricted project's rules (runtime.instances.restrictions.Rules), without a daemon."""
from types import SimpleNamespace

import pytest

from runtime import auth
from runtime.instances import restrictions
from runtime.errors import Forbidden


def _req(method="GET", **query):
    return SimpleNamespace(method=method, query=query)


ADMIN = auth.Requestor("tls", "a" * 64)
P1 = auth.Requestor("tls", "b" * 64, restricted=True, projects=("p1",))
METRICS = auth.Requestor("tls", "c" * 64, cert_type="metrics")
STRANGER = auth.Requestor("tls", "d" * 64, trusted=False)


@pytest.mark.parametrize("who,access,req,allowed", [
    (auth.UNIX, auth.ADMIN, _req("PATCH"), True),
    (ADMIN, auth.ADMIN, _req("PATCH"), True),
    (P1, auth.ADMIN, _req("PATCH"), False),
    (METRICS, auth.ADMIN, _req("PATCH"), False),
    (METRICS, auth.AUTHENTICATED, _req(), False),
    (METRICS, auth.METRICS, _req(), True),
    (STRANGER, auth.METRICS, _req(), False),
    (STRANGER, auth.UNTRUSTED, _req("POST"), True),
    (STRANGER, auth.AUTHENTICATED, _req(), False),
    (P1, auth.AUTHENTICATED, _req(), True),
    (P1, auth.PROJECT, _req(project="p1"), True),
    (P1, auth.PROJECT, _req(project="p2"), False),
    (P1, auth.PROJECT, _req(), False),                       # the default project
    (P1, auth.PROJECT, _req(**{"all-projects": "true"}), True),   # handler filters
    (P1, auth.PROJECT, _req("POST", **{"all-projects": "true"}), False),
    (P1, auth.PROJECT, _req(**{"all-projects": "true", "project": "p2"}), False),
    (P1, auth.METRICS, _req(project="p2"), False),
    (P1, auth.METRICS, _req(project="p1"), True),
])
def test_route_denial(who, access, req, allowed):
    assert (auth.denial(who, access, req) is None) == allowed


def test_requestor_identity_and_admin():
    assert auth.UNIX.admin and ADMIN.admin
    assert not P1.admin and not METRICS.admin and not STRANGER.admin
    assert auth.from_certificate("x", None).trusted is False
    row = {"type": "client", "restricted": 1, "projects": ["p1"]}
    assert auth.from_certificate("x", row) == auth.Requestor(
        "tls", "x", True, "client", True, ("p1",))
    assert auth.project_of_url("/1.0/instances/a?project=p2") == "p2"
    assert auth.project_of_url("/1.0/instances/a") == "default"


def _rules(**config) -> restrictions.Rules:
    return restrictions.Rules("rp", {"restricted": "true", **config})


@pytest.mark.parametrize("config,devices,ok", [
    ({"security.privileged": "true"}, {}, False),
    ({"security.privileged": "false"}, {}, True),
    ({"raw.lxc": "lxc.x = 1"}, {}, False),
    ({"security.syscalls.intercept.mknod": "true"}, {}, False),
    ({"security.syscalls.intercept.mknod": "false"}, {}, True),
    ({"security.nesting": "true"}, {}, False),
    ({}, {"root": {"type": "disk", "path": "/", "pool": "default"}}, True),
    ({}, {"d": {"type": "disk", "path": "/m", "source": "/"}}, False),
    ({}, {"d": {"type": "disk", "path": "/m", "source": "v", "pool": "default"}}, True),
    ({}, {"d": {"type": "disk", "path": "/m", "source": "v/../..", "pool": "default"}},
     False),
    ({}, {"n": {"type": "nic", "network": "br0"}}, True),
    ({}, {"n": {"type": "nic", "nictype": "bridged", "parent": "br0"}}, False),
    ({}, {"u": {"type": "unix-char", "path": "/dev/x"}}, False),
    ({}, {"g": {"type": "gpu"}}, False),
    ({}, {"x": {"type": "none"}}, True),
])
def test_default_restrictions(config, devices, ok):
    try:
        _rules().check("instance 'x'", config, devices)
    except Forbidden:
        assert not ok
    else:
        assert ok


def test_unrestricted_project_allows_everything():
    r = restrictions.Rules("p", {"restricted.containers.privilege": "unprivileged"})
    r.check("i", {"security.privileged": "true", "raw.lxc": "x"},
            {"d": {"type": "disk", "path": "/m", "source": "/"}})
    r.check_snapshots("i")


def test_isolated_privilege_needs_isolation_on_instances_not_profiles():
    r = _rules(**{"restricted.containers.privilege": "isolated"})
    with pytest.raises(Forbidden):
        r.check_config("i", {}, instance=True)
    r.check_config("p", {}, instance=False)
    r.check_config("i", {"security.idmap.isolated": "true"}, instance=True)


@pytest.mark.parametrize("paths,source,parent", [
    ("", "/anything", ""),
    ("/srv/a", "/srv/a", "/srv/a"),
    ("/srv/a", "/srv/a/b", "/srv/a"),
    ("/srv/a", "/srv/ab", None),
    ("/srv/a", "/srv/a/../../etc", None),
    ("/srv/a,/data/", "/data/x", "/data/"),
    ("/", "/etc", "/"),
])
def test_disk_paths(paths, source, parent):
    r = _rules(**{"restricted.devices.disk": "allow",
                  "restricted.devices.disk.paths": paths})
    assert r.allowed_parent(source) == parent


@pytest.mark.parametrize("nic,access,name,managed,ok", [
    ("managed", "", "br0", True, True),
    ("managed", "", "eth0", False, False),
    ("allow", "", "eth0", False, True),
    ("allow", "br0", "eth0", False, False),
    ("block", "", "br0", True, False),
    ("", "br0,br1", "br1", True, True),
])
def test_network_allowed(nic, access, name, managed, ok):
    r = _rules(**{"restricted.devices.nic": nic, "restricted.networks.access": access})
    assert r.network_allowed(name, managed) == ok


def test_volatile_keys():
    r = _rules()
    current = {"volatile.idmap.base": "100000"}
    assert r.check_volatile("i", {"volatile.idmap.base": "100000"}, current, False)
    with pytest.raises(Forbidden):
        r.check_volatile("i", {"volatile.idmap.base": "0"}, current, False)
    assert r.check_volatile("i", {"volatile.idmap.base": "0", "volatile.eth0.hwaddr": "x",
                                  "user.a": "1"}, {}, True) == \
        {"volatile.eth0.hwaddr": "x", "user.a": "1"}
    allowed = _rules(**{"restricted.containers.lowlevel": "allow"})
    assert allowed.check_volatile("i", {"volatile.idmap.base": "0"}, {}, False)


@pytest.mark.parametrize("key,value,ok", [
    ("restricted", "true", True), ("restricted", "maybe", False),
    ("restricted.devices.disk", "managed", True), ("restricted.devices.disk", "x", False),
    ("restricted.devices.disk.paths", "/a,/b", True),
    ("restricted.devices.disk.paths", "a", False),
    ("restricted.idmap.uid", "1000-1999,3000", True),
    ("restricted.idmap.uid", "10-1", False),
    ("restricted.devices.bogus", "allow", False),
    ("restricted.containers.privilege", "isolated", True),
])
def test_validate_key(key, value, ok):
    try:
        restrictions.validate_key(key, value)
    except ValueError:
        assert not ok
    else:
        assert ok


def test_token_expiry_expressions():
    from runtime.api.certificates import expiry_seconds
    assert expiry_seconds("") == 0
    assert expiry_seconds("30S") == 30
    assert expiry_seconds("1H 30M") == 5400
    assert expiry_seconds("2d") == 172800
    for bad in ("1x", "1H 2H", "soon", "-1H"):
        with pytest.raises(ValueError):
            expiry_seconds(bad)
