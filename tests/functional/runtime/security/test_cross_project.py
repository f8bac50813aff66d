"""`source.project` names where a copy, publish or volume copy reads from: only a
project of the caller's own (LXD checks the source project like any other)."""
from __future__ import annotations

import uuid

import pytest


def _wait(world, who: str, r) -> dict:
    op = r.json()["operation"].split("/")[-1]
    return world.req(who, "GET", f"/1.0/operations/{op}/wait",
                     params={"timeout": 120}).json()["metadata"]


def _cases(world):
    p2 = world.names["p2"]
    suffix = uuid.uuid4().hex[:6]
    return {
        "instance copy": ("/1.0/instances", {
            "name": f"cp{suffix}", "source": {"type": "copy", "source": p2["instance"],
                                              "project": "p2"}}),
        "snapshot copy": ("/1.0/instances", {
            "name": f"cs{suffix}", "source": {"type": "copy",
                                              "source": f"{p2['instance']}/s1",
                                              "project": "p2"}}),
        "instance publish": ("/1.0/images", {
            "source": {"type": "instance", "name": p2["instance"], "project": "p2"}}),
        "snapshot publish": ("/1.0/images", {
            "source": {"type": "snapshot", "name": f"{p2['instance']}/s1",
                       "project": "p2"}}),
        "volume copy": ("/1.0/storage-pools/default/volumes/custom", {
            "name": f"vc{suffix}", "source": {"type": "copy", "name": p2["volume"],
                                              "pool": "default", "project": "p2"}}),
        "image copy": ("/1.0/images", {
            "source": {"type": "image", "mode": "pull", "server": world.url,
                       "protocol": "lxd", "alias": p2["alias"], "project": "p2"}}),
    }


CASES = ["instance copy", "snapshot copy", "instance publish", "snapshot publish",
         "volume copy", "image copy"]


@pytest.mark.parametrize("case", CASES)
def test_restricted_certificate_cannot_read_another_project(world, case):
    before = world.state("p1")
    path, body = _cases(world)[case]
    r = world.req("restricted", "POST", path, params={"project": "p1"}, json=body)
    outcome = r.status_code
    if r.status_code == 202:
        outcome = (202, _wait(world, "restricted", r).get("status"))
    assert outcome == 403, (outcome, r.text[:300])
    assert world.state("p1") == before


@pytest.mark.parametrize("case", ["instance copy", "snapshot copy", "instance publish",
                                  "volume copy"])
def test_administrator_copies_across_projects(world, case):
    """What is refused above is a rule about the caller, not a broken feature."""
    path, body = _cases(world)[case]
    env = world.admin("POST", path, project="p1", json=body)
    made = body.get("name")
    try:
        if env.get("type") == "async":
            op = world.admin("GET", env["operation"])["metadata"]
            assert op["status"] == "Success", op
            made = made or op["metadata"]["fingerprint"]
    finally:
        if case.endswith("copy") and case != "volume copy":
            world.admin("DELETE", f"/1.0/instances/{made}", project="p1")
        elif case == "volume copy":
            world.admin("DELETE", f"/1.0/storage-pools/default/volumes/custom/{made}",
                        project="p1")
        elif made and made != world.names["p1"]["fingerprint"]:
            world.admin("DELETE", f"/1.0/images/{made}", project="p1")


def test_copy_within_its_own_project_works(world):
    name = f"own{uuid.uuid4().hex[:6]}"
    r = world.req("restricted", "POST", "/1.0/instances", params={"project": "p1"},
                  json={"name": name, "source": {"type": "copy",
                                                 "source": world.names["p1"]["instance"],
                                                 "project": "p1"}})
    try:
        assert r.status_code == 202, r.text
        assert _wait(world, "restricted", r)["status"] == "Success"
        got = world.req("restricted", "GET", f"/1.0/instances/{name}/files",
                        params={"project": "p1", "path": "/root/secret.txt"})
        assert got.text == world.marker("p1")
    finally:
        world.admin("DELETE", f"/1.0/instances/{name}", project="p1")
