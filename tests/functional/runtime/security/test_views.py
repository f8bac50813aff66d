"""What a restricted certificate sees of server-wide things (LXD's
tls_restrictions.sh): `/1.0` without config, only itself in the trust store, only
its projects, pools without config and `used_by` without other projects; what it
may change of its own certificate; and names that can't collide on disk."""
from __future__ import annotations

import pylxd
import pytest

from tests.functional.runtime.remote_hosts import generate_keypair


def test_server_view(world):
    world.admin("PATCH", "/1.0", json={"config": {"user.sec": "secret-config"}})
    try:
        admin = world.req("admin", "GET", "/1.0").json()["metadata"]
        mine = world.req("restricted", "GET", "/1.0", params={"project": "p1"}).json()
        assert admin["config"]["user.sec"] == "secret-config"
        assert mine["metadata"]["auth"] == "trusted"
        assert mine["metadata"]["config"] is None
        assert "secret-config" not in str(mine)
        assert mine["metadata"]["environment"]["project"] == "p1"
        # pylxd is happy with that view.
        c = world.client("restricted", project="p1")
        assert c.trusted and c.instances.exists(world.names["p1"]["instance"])
    finally:
        world.admin("PATCH", "/1.0", json={"config": {"user.sec": None}})


def test_trust_store_view(world):
    mine = world.fingerprints["restricted"]
    for recursion in (0, 1):
        got = world.req("restricted", "GET", "/1.0/certificates",
                        params={"recursion": recursion}).json()["metadata"]
        assert len(got) == 1 and mine in str(got), got
    assert len(world.admin("GET", "/1.0/certificates")["metadata"]) >= 3
    other = world.fingerprints["admin"]
    for method in ("GET", "PATCH", "PUT", "DELETE"):
        r = world.req("restricted", method, f"/1.0/certificates/{other}",
                      json={"name": "x"} if method in ("PATCH", "PUT") else None)
        assert r.status_code == 404, (method, r.text)
    assert world.req("restricted", "GET", f"/1.0/certificates/{mine}").status_code == 200


@pytest.mark.parametrize("change", [
    {"type": "metrics"}, {"type": "server"}, {"restricted": False},
    {"projects": ["p1", "p2"]}, {"projects": []}, {"name": "renamed"},
])
def test_restricted_certificate_cannot_lift_its_own_limits(world, change):
    mine = world.fingerprints["restricted"]
    before = world.admin("GET", f"/1.0/certificates/{mine}")["metadata"]
    r = world.req("restricted", "PATCH", f"/1.0/certificates/{mine}", json=change)
    assert r.status_code == 403, r.text
    assert world.admin("GET", f"/1.0/certificates/{mine}")["metadata"] == before


def test_restricted_certificate_may_rotate_its_key(world, tmp_path):
    """As in LXD's test_certificate_edit: the certificate itself may change."""
    new = (str(tmp_path / "n.crt"), str(tmp_path / "n.key"))
    generate_keypair(*new, "sec-rotated")
    old_fp = world.fingerprints["restricted"]
    row = world.req("restricted", "GET", f"/1.0/certificates/{old_fp}").json()["metadata"]
    r = world.req("restricted", "PUT", f"/1.0/certificates/{old_fp}", json={
        "name": row["name"], "type": row["type"], "restricted": True,
        "projects": row["projects"], "certificate": open(new[0]).read()})
    assert r.status_code == 200, r.text
    from tests.functional.runtime.security.conftest import _fp
    new_fp = _fp(new[0])
    try:
        world.certs["rotated"] = new
        assert world.req("rotated", "GET", "/1.0/instances",
                         params={"project": "p1"}).status_code == 200
        assert world.req("rotated", "GET", "/1.0/instances",
                         params={"project": "p2"}).status_code == 403
        assert world.req("restricted", "GET", "/1.0").json()["metadata"]["auth"] == \
            "untrusted"
    finally:
        world.certs.pop("rotated", None)
        world.admin("PATCH", f"/1.0/certificates/{new_fp}",
                    json={"certificate": open(world.certs["restricted"][0]).read()})
    assert world.req("restricted", "GET", "/1.0").json()["metadata"]["auth"] == "trusted"


def test_project_views(world):
    listed = world.req("restricted", "GET", "/1.0/projects",
                       params={"recursion": 1}).json()["metadata"]
    assert [p["name"] for p in listed] == ["p1"]
    assert world.req("restricted", "GET", "/1.0/projects/p1").status_code == 200
    assert world.req("restricted", "GET", "/1.0/projects/p1/state").status_code == 200
    for path in ("/1.0/projects/p2", "/1.0/projects/p2/state", "/1.0/projects/default"):
        assert world.req("restricted", "GET", path).status_code == 403, path
    c = world.client("restricted")
    assert [p.name for p in c.projects.all()] == ["p1"]
    with pytest.raises(pylxd.exceptions.LXDAPIException):
        c.projects.create("p3")


def test_pool_and_network_views(world):
    admin = world.req("admin", "GET", "/1.0/storage-pools/default").json()["metadata"]
    mine = world.req("restricted", "GET", "/1.0/storage-pools/default").json()["metadata"]
    assert any(world.names["p2"]["instance"] in u for u in admin["used_by"])
    assert mine["config"] == {}
    assert mine["used_by"] and all("project=p1" in u for u in mine["used_by"]), \
        mine["used_by"]
    listed = world.req("restricted", "GET", "/1.0/storage-pools",
                       params={"recursion": 1}).json()["metadata"]
    assert [p["name"] for p in listed] == ["default"]
    vols = world.req("restricted", "GET", "/1.0/storage-pools/default/volumes",
                     params={"project": "p1", "recursion": 1}).json()["metadata"]
    assert {v["project"] for v in vols} <= {"p1", "default"}
    assert world.names["p2"]["volume"] not in str(vols)


@pytest.mark.parametrize("name", ["a_b", "a/b", "a b", "a'b", 'a"b', "a\\b", "*", ".", "..",
                                  "é", "a?b", "a#b", "", "x" * 64, "a\nb"])
def test_project_names_follow_lxds_rules(world, name):
    r = world.req("admin", "POST", "/1.0/projects", json={"name": name, "config": {}})
    assert r.status_code == 400, (name, r.text)


def test_project_rename_follows_the_same_rules(world):
    world.admin("POST", "/1.0/projects", json={"name": "ren1", "config": {}})
    try:
        r = world.req("admin", "POST", "/1.0/projects/ren1", json={"name": "ren_1"})
        assert r.status_code == 400, r.text
    finally:
        world.admin("DELETE", "/1.0/projects/ren1")


def test_default_project_volume_names_cannot_impersonate_other_projects(world):
    """On disk, p1's volume `x` is `p1_x`; the default project's `p1_x` would be
    the same directory."""
    r = world.req("admin", "POST", "/1.0/storage-pools/default/volumes/custom",
                  json={"name": f"p1_{world.names['p1']['volume']}"})
    assert r.status_code == 400, r.text
    r = world.req("admin", "POST", "/1.0/storage-pools/default/volumes/custom",
                  params={"project": "p1"}, json={"name": "with_underscore"})
    assert r.status_code == 201, r.text
    world.admin("DELETE", "/1.0/storage-pools/default/volumes/custom/with_underscore",
                project="p1")
