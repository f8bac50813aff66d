"""Projects through pylxd: CRUD and rename rules, and features.* isolating
profiles and images (instances are always per project)."""
import uuid

import pylxd
import pytest

from tests.functional.runtime.harness import BUSYBOX


def pname() -> str:
    return "nt-" + uuid.uuid4().hex[:8]


@pytest.fixture
def project(client):
    made = []

    def make(config=None, description="nt project"):
        name = pname()
        client.projects.create(name, description=description, config=config or {})
        made.append(name)
        return name
    yield make
    for name in made:
        # Tests delete what they made; this only catches leftovers of a failure.
        try:
            client.projects.get(name).delete()
        except Exception:  # noqa: BLE001 - gone already, or renamed by the test
            pass


def pclient(daemon, name: str) -> pylxd.Client:
    return pylxd.Client(endpoint=daemon.endpoint, project=name)


def test_default_project_always_exists(client):
    default = client.projects.get("default")
    assert default.config["features.profiles"] == "true"
    with pytest.raises(pylxd.exceptions.LXDAPIException):
        default.delete()
    with pytest.raises(pylxd.exceptions.LXDAPIException):
        client.api.projects["default"].post(json={"name": "nt-other"})


def test_crud_and_rename(client, project):
    name = project(description="first")
    p = client.projects.get(name)
    assert p.description == "first"
    assert p.config["features.images"] == "true"
    assert name in [x.name for x in client.projects.all()]
    p.description = "second"
    p.config["user.owner"] = "nt"
    p.save()
    p = client.projects.get(name)
    assert p.description == "second" and p.config["user.owner"] == "nt"
    new = pname()
    p.rename(new)
    assert client.projects.exists(new) and not client.projects.exists(name)
    client.projects.get(new).delete()
    assert not client.projects.exists(new)


def test_unknown_project_is_404(daemon):
    with pytest.raises(pylxd.exceptions.LXDAPIException, match="not found"):
        pclient(daemon, "nt-missing").instances.all()


def test_invalid_config_refused(client):
    with pytest.raises(pylxd.exceptions.LXDAPIException, match="nonsense"):
        client.projects.create(pname(), config={"nonsense": "1"})


def test_isolated_project_has_own_profiles_images_and_instances(daemon, client, project,
                                                                busybox):
    name = project()
    pc = pclient(daemon, name)
    # Own profiles: an empty default of its own, nothing from the default project.
    assert [p.name for p in pc.profiles.all()] == ["default"]
    pc.profiles.create("nt-only-here", config={"limits.memory": "64MiB"})
    assert not client.profiles.exists("nt-only-here")
    # Own images: the default project's busybox is not visible here.
    assert pc.images.all() == []
    with open(BUSYBOX, "rb") as f:
        img = pc.images.create(f.read(), wait=True)
    img.add_alias("busybox", "per-project alias")
    # An instance with the same name in both projects: two different containers.
    root = {"root": {"type": "disk", "path": "/", "pool": "default"}}
    a = pc.instances.create({"name": "nt-same", "source": {"type": "image",
                                                           "alias": "busybox"},
                             "devices": root, "profiles": ["default", "nt-only-here"]},
                            wait=True)
    b = client.instances.create({"name": "nt-same", "source": {"type": "image",
                                                               "alias": "busybox"}},
                                wait=True)
    try:
        a.start(wait=True)
        assert a.execute(["hostname"]).stdout.strip() == "nt-same"
        assert client.instances.get("nt-same").status == "Stopped"
        # As LXD, names listed outside the default project carry ?project=.
        assert [i.name.split("?")[0] for i in pc.instances.all()] == ["nt-same"]
        assert [i.name for i in pc.instances.all(recursion=1)] == ["nt-same"]
        used = client.projects.get(name).used_by
        assert f"/1.0/instances/nt-same?project={name}" in used
        # Not empty: no rename, no delete.
        with pytest.raises(pylxd.exceptions.LXDAPIException, match="empty"):
            client.projects.get(name).delete()
        with pytest.raises(pylxd.exceptions.LXDAPIException, match="empty"):
            client.api.projects[name].post(json={"name": pname()})
        # Features can't change under existing content.
        p = client.projects.get(name)
        p.config["features.images"] = "false"
        with pytest.raises(pylxd.exceptions.LXDAPIException, match="empty"):
            p.save()
    finally:
        a.stop(force=True, wait=True)
        a.delete(wait=True)
        b.delete(wait=True)
    pc.profiles.get("nt-only-here").delete()
    img.delete(wait=True)
    client.projects.get(name).delete()


def test_shared_project_uses_default_profiles_and_images(daemon, client, project, busybox):
    name = project(config={"features.images": "false", "features.profiles": "false"})
    pc = pclient(daemon, name)
    assert "docker" in [p.name for p in pc.profiles.all()]
    assert busybox in [i.fingerprint for i in pc.images.all()]
    inst = pc.instances.create({"name": "nt-shared", "source": {"type": "image",
                                                                "alias": "busybox"}},
                               wait=True)
    try:
        assert inst.expanded_devices["root"]["pool"] == "default"
        assert not client.instances.exists("nt-shared")
        # The default profile now lists the project's instance as a user.
        assert f"/1.0/instances/nt-shared?project={name}" in \
            client.profiles.get("default").used_by
    finally:
        inst.delete(wait=True)


def test_server_environment_names_the_requested_project(client, project):
    """lxc and pylxd read environment.project to show which project they are in."""
    name = project()
    assert client.api.get().json()["metadata"]["environment"]["project"] == "default"
    got = client.api.get(params={"project": name}).json()["metadata"]
    assert got["environment"]["project"] == name
    assert got["environment"]["firewall"] == "nftables"
