"""InstanceManager.listing (the recursion=1 listing, JSON reused between polls):
the same objects as rendering each instance, and never stale."""
import json
import os
import types

import pytest

from runtime import db as dbmod
from runtime.db.profiles import Profiles
from runtime.db.projects import Projects
from runtime.api import response
from runtime.instances.manager import InstanceManager


@pytest.fixture
def mgr(tmp_path):
    db = dbmod.Database(str(tmp_path / "runtime.db"))
    profiles, projects = Profiles(db), Projects(db)
    projects.create("default", "", {"features.profiles": "true"})
    profiles.create("default", "p", config={"limits.cpu": "2"},
                    devices={"root": {"type": "disk", "path": "/", "pool": "default"}})
    for i in range(5):
        db.insert("instances", project="default", name=f"c{i}", architecture="x86_64",
                  created_at=1.0, config={"user.i": str(i)}, devices={}, profiles=["p"],
                  pool="default")
    d = types.SimpleNamespace(db=db, profile_rows=profiles, project_rows=projects,
                              paths=types.SimpleNamespace(lxcpath=str(tmp_path),
                                                          lxd_dir=str(tmp_path),
                                                          logs=str(tmp_path)),
                              profile_project=lambda project: "default")
    m = InstanceManager(d)
    m.pids[2] = os.getpid()   # c1 "runs": a live pid, no cgroup (so not frozen)
    yield m
    db.close()


def _listed(m):
    return json.loads(response.sync_list([t for _, t in m.listing(None)]).body)


def _rendered(m):
    return json.loads(response.sync([i.render(m.status(i)) for i in m.list(None)]).body)


def test_same_as_rendering_each(mgr):
    assert _listed(mgr) == _rendered(mgr)
    assert [i["status"] for i in _listed(mgr)["metadata"]] == \
        ["Stopped", "Running", "Stopped", "Stopped", "Stopped"]


def test_changes_are_seen(mgr):
    _listed(mgr)
    mgr.d.db.update("instances", {"name": "c3"}, description="changed")
    mgr.pids.pop(2)
    mgr.d.profile_rows.update("default", "p", config={"limits.cpu": "4"},
                              devices={"root": {"type": "disk", "path": "/", "pool": "default"}},
                              description="")
    mgr.d.db.delete("instances", name="c4")
    mgr.d.db.insert("instances", project="default", name="c9", architecture="x86_64",
                    created_at=2.0, config={}, devices={}, profiles=["p"], pool="default")
    got = _listed(mgr)
    assert got == _rendered(mgr)
    meta = {i["name"]: i for i in got["metadata"]}
    assert meta["c3"]["description"] == "changed" and meta["c1"]["status"] == "Stopped"
    assert meta["c0"]["expanded_config"]["limits.cpu"] == "4"
    assert "c4" not in meta and "c9" in meta
