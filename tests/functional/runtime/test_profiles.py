"""Profiles: CRUD, rename, in-use protection, live effect on running instances."""
import os
import pathlib

import pylxd
import pytest


@pytest.fixture
def profile(client):
    made = []

    def make(name, config=None, devices=None):
        p = client.profiles.create(name, config=config or {}, devices=devices or {})
        made.append(name)
        return p
    yield make
    for name in made:
        try:
            client.profiles.get(name).delete()
        except pylxd.exceptions.LXDAPIException:
            pass


def test_seeded_profiles(client):
    default = client.profiles.get("default")
    assert default.devices["root"] == {"type": "disk", "path": "/", "pool": "default"}
    assert client.profiles.get("docker").config["security.nesting"] == "true"


def test_crud_rename_and_validation(client, profile):
    p = profile("pf-a", config={"limits.cpu": "1"})
    assert client.profiles.get("pf-a").config == {"limits.cpu": "1"}
    p.description = "first"
    p.config["user.x"] = "y"
    p.save()
    got = client.profiles.get("pf-a")
    assert got.description == "first" and got.config["user.x"] == "y"
    client.api.profiles["pf-a"].post(json={"name": "pf-b"})
    assert not client.profiles.exists("pf-a") and client.profiles.exists("pf-b")
    client.profiles.get("pf-b").delete()
    for bad in ({"name": "pf-c", "config": {"nope.key": "1"}},
                {"name": "pf-c", "devices": {"d": {"type": "warp"}}},
                {"name": "a/b"}):
        with pytest.raises(pylxd.exceptions.LXDAPIException) as exc:
            client.api.profiles.post(json=bad)
        assert exc.value.response.status_code == 400
    with pytest.raises(pylxd.exceptions.LXDAPIException) as exc:
        client.api.profiles.post(json={"name": "default"})
    assert exc.value.response.status_code == 409
    with pytest.raises(pylxd.exceptions.LXDAPIException):
        client.profiles.get("default").delete()


def test_profile_in_use_cannot_be_deleted(client, profile, make_instance):
    profile("pf-used", config={"user.k": "v"})
    inst = make_instance(start=False, profiles=["default", "pf-used"])
    assert inst.expanded_config["user.k"] == "v"
    with pytest.raises(pylxd.exceptions.LXDAPIException) as exc:
        client.profiles.get("pf-used").delete()
    assert exc.value.response.status_code == 409
    assert f"/1.0/instances/{inst.name}" in client.profiles.get("pf-used").used_by


@pytest.fixture
def shared_dir():
    """A host directory the container's (unprivileged) root can traverse."""
    import shutil
    import tempfile
    path = tempfile.mkdtemp(prefix="nlr-pf-", dir="/var/tmp")
    os.chmod(path, 0o755)
    yield pathlib.Path(path)
    shutil.rmtree(path, ignore_errors=True)


def test_profile_edit_reaches_running_instances(client, profile, make_instance, shared_dir):
    tmp_path = shared_dir
    p = profile("pf-live", config={"limits.memory": "64MiB"})
    inst = make_instance(profiles=["default", "pf-live"])
    path = "/sys/fs/cgroup/memory/memory.limit_in_bytes"
    assert int(inst.execute(["cat", path]).stdout) == 64 * 2**20
    (tmp_path / "shared.txt").write_text("from the host\n")
    p.config["limits.memory"] = "80MiB"
    p.devices["hp"] = {"type": "disk", "source": str(tmp_path), "path": "/mnt/hp",
                       "readonly": "true"}
    p.save()
    assert int(inst.execute(["cat", path]).stdout) == 80 * 2**20
    assert inst.execute(["cat", "/mnt/hp/shared.txt"]).stdout == "from the host\n"
    fresh = client.instances.get(inst.name)
    assert fresh.expanded_config["limits.memory"] == "80MiB"
    assert fresh.expanded_devices["hp"]["path"] == "/mnt/hp"
    del p.devices["hp"]
    p.save()
    assert inst.execute(["cat", "/mnt/hp/shared.txt"]).exit_code != 0
