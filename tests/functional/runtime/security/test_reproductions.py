"""The trust-model reproductions of issue 12, each run the way an attacker would:
over real HTTPS with real client certificates. Each of these passed (the attack
worked) before the trust model was fixed."""
import os
import tempfile
import uuid

import pytest

from tests.functional.runtime.remote_hosts import generate_keypair
from tests.functional.runtime.security.conftest import _fp


def _wait(world, who: str, env: dict) -> dict:
    op = env["operation"].split("/")[-1]
    return world.req(who, "GET", f"/1.0/operations/{op}/wait",
                     params={"timeout": 60}).json().get("metadata") or {}


def test_metrics_certificate_cannot_patch_server_config(world):
    """[A `metrics` certificate could PATCH /1.0.]"""
    r = world.req("metrics", "PATCH", "/1.0", json={"config": {"user.pwned": "metrics"}})
    try:
        assert r.status_code == 403, r.text
        assert "user.pwned" not in world.admin("GET", "/1.0")["metadata"]["config"]
    finally:
        world.admin("PATCH", "/1.0", json={"config": {"user.pwned": None}})


def _secrets(obj) -> list[str]:
    """Every value stored under a key named `secret` (or an fds map) in a document."""
    found = []
    if isinstance(obj, dict):
        for key, value in obj.items():
            if key == "secret" and isinstance(value, str):
                found.append(value)
            elif key == "fds" and isinstance(value, dict):
                found += [v for v in value.values() if isinstance(v, str)]
            else:
                found += _secrets(value)
    elif isinstance(obj, list):
        for item in obj:
            found += _secrets(item)
    return found


def test_restricted_certificate_cannot_steal_a_join_token(world, tmp_path):
    """[A certificate restricted to project p1 read an admin's join-token secret from
    GET /1.0/operations?recursion=1, let an untrusted certificate join with it, and
    that one could PATCH /1.0.]"""
    env = world.admin("POST", "/1.0/certificates", wait=False,
                      json={"name": "sec-join", "token": True})
    op_id = env["operation"].split("/")[-1]
    token_secret = env["metadata"]["metadata"]["secret"]
    thief = (str(tmp_path / "thief.crt"), str(tmp_path / "thief.key"))
    generate_keypair(*thief, "sec-thief")
    world.certs["thief"] = thief
    try:
        seen, listed = [], []
        for params in ({"recursion": 1}, {"recursion": 1, "all-projects": "true"},
                       {"recursion": 1, "project": "p1"}):
            r = world.req("restricted", "GET", "/1.0/operations", params=params)
            seen += [x for x in _secrets(r.json().get("metadata")) if x == token_secret]
            if op_id in r.text:
                listed.append(params)
        r = world.req("restricted", "GET", f"/1.0/operations/{op_id}")
        seen += [x for x in _secrets(r.json().get("metadata")) if x == token_secret]
        patched = []
        for secret in seen:
            world.req("thief", "POST", "/1.0/certificates",
                      json={"type": "client", "trust_token": secret})
            r = world.req("thief", "PATCH", "/1.0", json={"config": {"user.pwned": "token"}})
            patched.append(r.status_code)
        assert not seen, f"restricted certificate saw secrets; the thief's PATCH: {patched}"
        assert not listed, f"token operation listed to a restricted certificate: {listed}"
        assert world.req("thief", "GET", "/1.0").json()["metadata"]["auth"] == "untrusted"
        assert "user.pwned" not in world.admin("GET", "/1.0")["metadata"]["config"]
    finally:
        world.certs.pop("thief", None)
        world.admin("PATCH", "/1.0", json={"config": {"user.pwned": None}})
        try:
            world.admin("DELETE", f"/1.0/operations/{op_id}")
        except Exception:  # noqa: BLE001 - used by the thief already
            pass
        for row in world.admin("GET", "/1.0/certificates", params={"recursion": 1})["metadata"]:
            if row["name"] in ("sec-join", "sec-thief"):
                world.admin("DELETE", f"/1.0/certificates/{row['fingerprint']}")


@pytest.mark.parametrize("suffix", ["", "/s1"])
def test_restricted_certificate_cannot_copy_another_projects_instance(world, suffix):
    """[A p1 certificate copied p2's instance and read its files.]"""
    victim = world.names["p2"]["instance"] + suffix
    name = f"stolen{uuid.uuid4().hex[:6]}"
    r = world.req("restricted", "POST", "/1.0/instances", params={"project": "p1"},
                  json={"name": name, "source": {"type": "copy", "source": victim,
                                                 "project": "p2"}})
    try:
        content = None
        if r.status_code == 202:
            _wait(world, "restricted", r.json())
            got = world.req("restricted", "GET", f"/1.0/instances/{name}/files",
                            params={"project": "p1", "path": "/root/secret.txt"})
            content = got.text if got.status_code == 200 else None
        assert r.status_code == 403, (r.status_code, r.text, content)
        names = world.admin("GET", "/1.0/instances", project="p1")["metadata"]
        assert not any(n.endswith("/" + name) for n in names)
    finally:
        try:
            world.admin("DELETE", f"/1.0/instances/{name}", project="p1")
        except Exception:  # noqa: BLE001 - not made (the expected case)
            pass


@pytest.fixture
def restricted_project(world, tmp_path):
    """A project with restricted=true and a certificate restricted to it."""
    proj = f"r{uuid.uuid4().hex[:6]}"
    fp = world.project(proj, {"restricted": "true"})
    who = f"owner-{proj}"
    world.certs[who] = (str(tmp_path / "o.crt"), str(tmp_path / "o.key"))
    generate_keypair(*world.certs[who], who)
    world.trust(who, restricted=True, projects=[proj])
    yield proj, who, fp
    world.admin("DELETE", f"/1.0/certificates/{_fp(world.certs.pop(who)[0])}")
    world.empty_project(proj)


def test_restricted_project_refuses_privileged_raw_lxc_and_host_root(world,
                                                                    restricted_project):
    """[A restricted certificate created a privileged container with a raw.lxc hook
    and a disk with source=/.]"""
    proj, who, fp = restricted_project
    marker = os.path.join(tempfile.gettempdir(), f"sec-hook-{uuid.uuid4().hex[:8]}")
    attempts = {
        "privileged": {"config": {"security.privileged": "true"}},
        "raw.lxc hook": {"config": {"raw.lxc": f"lxc.hook.pre-start = /bin/sh -c "
                                               f"'touch {marker}'"}},
        "host root disk": {"devices": {"host": {"type": "disk", "source": "/",
                                                "path": "/mnt/host"}}},
        "all three": {"config": {"security.privileged": "true",
                                 "raw.lxc": f"lxc.hook.pre-start = /bin/sh -c "
                                            f"'touch {marker}'"},
                      "devices": {"host": {"type": "disk", "source": "/",
                                           "path": "/mnt/host"}}},
    }
    outcome, made = {}, {}
    for label, body in attempts.items():
        name = f"evil{uuid.uuid4().hex[:6]}"
        r = world.req(who, "POST", "/1.0/instances", params={"project": proj},
                      json={"name": name, "source": {"type": "image", "fingerprint": fp},
                            **body})
        outcome[label] = r.status_code
        if r.status_code == 202:
            made[label] = _wait(world, who, r.json()).get("status")
            if label == "raw.lxc hook" and made[label] == "Success":
                started = world.req(who, "PUT", f"/1.0/instances/{name}/state",
                                    params={"project": proj}, json={"action": "start"})
                made["started"] = _wait(world, who, started.json()).get("status")
    try:
        assert outcome == {label: 403 for label in attempts}, \
            (outcome, made, f"hook ran on the host: {os.path.exists(marker)}")
        assert not os.path.exists(marker), "the raw.lxc hook ran on the host"
    finally:
        if os.path.exists(marker):
            os.unlink(marker)
