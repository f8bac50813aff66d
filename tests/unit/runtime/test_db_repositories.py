"""The table repositories of runtime/db/ over a real SQLite file: what each caller
relies on (keys, order, partial updates, project moves)."""
import pytest

from runtime.db.certificates import Certificates
from runtime.db.config import ServerConfig
from runtime.db.database import Database
from runtime.db.image_aliases import ImageAliases
from runtime.db.images import Images
from runtime.db.networks import Networks
from runtime.db.profiles import Profiles
from runtime.db.projects import Projects


@pytest.fixture
def db(tmp_path):
    database = Database(str(tmp_path / "runtime.db"))
    yield database
    database.close()


def _image(images: Images, project: str, fp: str, **kw) -> None:
    values = dict(filename="", size=1, public=False, architecture="x86_64", created_at=1.0,
                  uploaded_at=1.0, expires_at=0.0, properties={}, cached=False, source={})
    values.update(kw)
    images.create(project, fp, **values)


def test_profiles(db):
    p = Profiles(db)
    p.create("default", "zeta", "z", config={"limits.cpu": "1"}, devices={})
    p.create("default", "alpha")
    p.create("other", "alpha", devices={"root": {"type": "disk", "path": "/"}})
    assert [r["name"] for r in p.list("default")] == ["alpha", "zeta"]
    assert len(p.list()) == 3 and p.names("other") == ["alpha"]
    assert p.get("default", "alpha") == {"project": "default", "name": "alpha",
                                         "description": "", "config": {}, "devices": {}}
    assert p.get("default", "nope") is None and not p.exists("x", "alpha")
    stamp = p.stamp()
    p.update("default", "zeta", config={"limits.cpu": "2"}, devices={"d": {"type": "none"}},
             description="new")
    assert p.stamp() != stamp
    assert p.get("default", "zeta")["config"] == {"limits.cpu": "2"}
    p.set_devices("default", "zeta", {})
    assert p.get("default", "zeta")["devices"] == {} and \
        p.get("default", "zeta")["description"] == "new"
    p.rename("default", "zeta", "eta")
    assert p.names("default") == ["alpha", "eta"]
    p.move_project("other", "renamed")
    assert p.exists("renamed", "alpha") and not p.names("other")
    p.delete("default", "eta")
    p.delete_project("renamed")
    assert [(r["project"], r["name"]) for r in p.list()] == [("default", "alpha")]


def test_projects(db):
    p = Projects(db)
    p.create("b", "B", {"features.images": "true"})
    p.create("a", "", {})
    assert [r["name"] for r in p.list()] == ["a", "b"] and p.names() == ["a", "b"]
    assert p.get("b")["config"] == {"features.images": "true"}
    stamp = p.stamp()
    p.update("b", config={}, description="bee")
    assert p.get("b") == {"name": "b", "description": "bee", "config": {}}
    assert p.stamp() != stamp
    p.rename("b", "c")
    assert not p.exists("b") and p.exists("c")
    p.delete("c")
    assert p.names() == ["a"]


def test_networks(db):
    n = Networks(db)
    n.create("br1", "one", {"ipv4.address": "10.0.0.1/24"})
    n.create("br0", "", {})
    assert n.names() == ["br0", "br1"] and [r["name"] for r in n.list()] == ["br0", "br1"]
    assert n.get("br1") == {"name": "br1", "type": "bridge", "description": "one",
                            "config": {"ipv4.address": "10.0.0.1/24"}, "status": "Created"}
    n.update("br1", config={}, description="")
    assert n.get("br1")["config"] == {}
    n.rename("br1", "br2")
    assert n.get("br1") is None and n.get("br2") is not None
    n.delete("br2")
    assert n.names() == ["br0"]


def test_server_config(db):
    c = ServerConfig(db)
    assert c.all() == {} and c.get("core.https_address") is None
    assert c.get("images.auto_update_cached", "true") == "true"
    c.replace({"core.https_address": "[::]:8443", "user.x": "1"})
    assert c.get("core.https_address") == "[::]:8443"
    c.replace({"user.x": "2"})   # whole replacement: the address is gone
    assert c.all() == {"user.x": "2"}


def test_certificates(db):
    c = Certificates(db)
    c.create("ab12", "PEM1", name="one", restricted=True, projects=["p"])
    c.create("ab34", "PEM2", type="metrics", name="two")
    c.create("a_99", "PEM3", name="zero")
    assert [r["name"] for r in c.list()] == ["one", "two", "zero"]
    assert c.get("ab12") == {"fingerprint": "ab12", "type": "client", "name": "one",
                             "certificate": "PEM1", "restricted": 1, "projects": ["p"]}
    assert [r["fingerprint"] for r in c.by_prefix("ab")] == ["ab12", "ab34"]
    # A prefix is compared as given: "_" is no wildcard (as SQL LIKE would make it).
    assert [r["fingerprint"] for r in c.by_prefix("a_")] == ["a_99"]
    c.update("ab12", name="", restricted=False)        # only what is given changes
    row = c.get("ab12")
    assert (row["name"], row["restricted"], row["projects"]) == ("", 0, ["p"])
    c.update("ab12", certificate="PEM9", new_fingerprint="cd56")
    assert not c.exists("ab12") and c.get("cd56")["certificate"] == "PEM9"
    c.update("cd56")                                    # nothing given: nothing to do
    c.delete("cd56")
    assert [r["fingerprint"] for r in c.list()] == ["ab34", "a_99"]   # by name


def test_images(db):
    i = Images(db)
    _image(i, "default", "aa11", uploaded_at=2.0, created_at=1.0, public=True)
    _image(i, "default", "aa22", uploaded_at=1.0, created_at=3.0, cached=True)
    _image(i, "other", "aa11", properties={"os": "busybox"})
    assert [r["fingerprint"] for r in i.list("default")] == ["aa22", "aa11"]
    assert [r["fingerprint"] for r in i.list("default", public_only=True)] == ["aa11"]
    assert [r["fingerprint"] for r in i.newest_first("default")] == ["aa22", "aa11"]
    assert i.fingerprints("default") == ["aa11", "aa22"]
    assert sorted(i.matching("default", "aa")) == ["aa11", "aa22"]
    assert i.matching("default", "aa2") == ["aa22"] and i.matching("x", "aa") == []
    assert i.get("other", "aa11")["properties"] == {"os": "busybox"}
    assert [r["fingerprint"] for r in i.cached()] == ["aa22"] and i.auto_updating() == []
    i.update("default", "aa11", auto_update=True, properties={})
    row = i.get("default", "aa11")
    assert row["auto_update"] == 1 and row["public"] == 1   # untouched fields stay
    assert [r["project"] for r in i.auto_updating()] == ["default"]
    i.mark_used("aa11", 42.0)
    assert i.get("default", "aa11")["last_used_at"] == 42.0 == \
        i.get("other", "aa11")["last_used_at"]
    i.delete("default", "aa11")
    assert i.held("aa11") and not i.exists("default", "aa11")
    i.move_project("other", "moved")
    assert i.exists("moved", "aa11") and len(i.all()) == 2
    i.delete("moved", "aa11")
    assert not i.held("aa11")


def test_image_aliases(db):
    a = ImageAliases(db)
    a.create("default", "zz", "f1", "last")
    a.create("default", "aa", "f1")
    a.create("default", "mm", "f2")
    a.create("other", "aa", "f1")
    assert [r["name"] for r in a.list("default")] == ["aa", "mm", "zz"]
    assert [r["name"] for r in a.of_image("default", "f1")] == ["aa", "zz"]
    assert a.get("default", "zz") == {"project": "default", "name": "zz", "fingerprint": "f1",
                                      "description": "last", "type": "container"}
    a.update("default", "zz", description="")
    assert a.get("default", "zz")["fingerprint"] == "f1" and \
        a.get("default", "zz")["description"] == ""
    a.update("default", "zz", fingerprint="f2")
    a.retarget("default", "f1", "f3")
    assert a.get("default", "aa")["fingerprint"] == "f3" and \
        a.get("other", "aa")["fingerprint"] == "f1"
    a.rename("default", "aa", "bb")
    assert not a.exists("default", "aa") and a.exists("default", "bb")
    a.delete_of_image("default", "f2")
    assert [r["name"] for r in a.list("default")] == ["bb"]
    a.move_project("other", "moved")
    assert a.exists("moved", "aa")
    a.delete("moved", "aa")
    assert a.list("moved") == []


def test_repositories_share_transactions(db):
    """A project and its default profile are created together or not at all."""
    projects, profiles = Projects(db), Profiles(db)
    with pytest.raises(RuntimeError), db.transaction():
        projects.create("p", "", {})
        profiles.create("p", "default")
        raise RuntimeError("midway")
    assert not projects.exists("p") and not profiles.exists("p", "default")
