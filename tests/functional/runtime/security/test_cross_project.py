"""`source.project` names where a copy, publish or volume copy reads from: only a
project of the caller's own (LXD checks the source project like any other)."""
from __future__ import annotations

import os
import uuid

import pytest

from tests.functional.runtime.remote_hosts import generate_keypair
from tests.functional.runtime.security.conftest import _fp


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


# Disks naming another project's storage -------------------------------------------
@pytest.fixture(scope="module")
def shared_volumes(world):
    """Project `pv` keeps no volumes of its own (features.storage.volumes=false: it
    uses the default project's), and a certificate restricted to it."""
    world.admin("POST", "/1.0/projects", json={"name": "pv", "config": {
        "features.storage.volumes": "false", "features.images": "false",
        "features.profiles": "false"}})
    crt, key = (os.path.join(world.hosts.tmp, f"pv.{ext}") for ext in ("crt", "key"))
    generate_keypair(crt, key, "sec-pv")
    world.certs["pv"] = (crt, key)
    world.trust("pv", restricted=True, projects=["pv"])
    yield "pv"
    # (not empty_project: pv's images, volumes and profiles are the default project's)
    for inst in world.admin("GET", "/1.0/instances", project="pv")["metadata"]:
        _stop_delete(world, "pv", inst.rsplit("/", 1)[-1].split("?")[0])
    world.admin("DELETE", "/1.0/projects/pv")
    world.admin("DELETE", f"/1.0/certificates/{_fp(world.certs.pop('pv')[0])}")


def _start_error(world, who: str, project: str, name: str, devices: dict) -> str:
    """Create an instance with these devices and start it: the start's error ("" if
    it started)."""
    r = world.req(who, "POST", "/1.0/instances", params={"project": project}, json={
        "name": name, "source": {"type": "image", "alias": world.names["default"]["alias"]
                                 if project == "pv" else world.names[project]["alias"]},
        "devices": devices})
    assert r.status_code == 202, r.text
    assert _wait(world, who, r)["status"] == "Success"
    r = world.req(who, "PUT", f"/1.0/instances/{name}/state", params={"project": project},
                  json={"action": "start"})
    op = _wait(world, who, r)
    return "" if op["status"] == "Success" else op["err"]


def test_pool_disk_cannot_name_another_projects_volume(world, shared_volumes):
    """On disk the default project's volumes are plain `<name>` and p2's are
    `p2_<name>`: a disk whose source is "p2_<name>", from a project using the default
    project's volumes, named p2's volume. The source must be a volume the instance's
    project holds."""
    name = f"pv{uuid.uuid4().hex[:6]}"
    disk = {"x": {"type": "disk", "pool": "default", "path": "/mnt/x",
                  "source": f"p2_{world.names['p2']['volume']}"}}
    try:
        err = _start_error(world, "pv", shared_volumes, name, disk)
        assert "not found" in err, err or "started with p2's volume mounted"
    finally:
        _stop_delete(world, shared_volumes, name)


@pytest.mark.parametrize("source", ["container/{p2}", "container/p2_{p2}",
                                    "container/../containers/p2_{p2}"])
def test_instance_root_disk_is_of_the_same_project(world, source):
    """`container/<name>` mounts a stopped instance of the instance's own project,
    named plainly; p2's instance (stopped, so it could be mounted) is never reached."""
    name = f"rv{uuid.uuid4().hex[:6]}"
    disk = {"x": {"type": "disk", "pool": "default", "path": "/mnt/x",
                  "source": source.format(p2=world.names["p2"]["instance"])}}
    try:
        err = _start_error(world, "restricted", "p1", name, disk)
        assert "not found" in err or "not a custom volume name" in err, \
            err or "started with p2's root mounted"
    finally:
        _stop_delete(world, "p1", name)


def _stop_delete(world, project: str, name: str) -> None:
    for method, path, body in (("PUT", f"/1.0/instances/{name}/state",
                                {"action": "stop", "force": True}),
                               ("DELETE", f"/1.0/instances/{name}", None)):
        r = world.req("admin", method, path, params={"project": project}, json=body)
        if r.status_code == 202:
            _wait(world, "admin", r)
