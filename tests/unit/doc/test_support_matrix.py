"""The support matrix can't drift: doc/support-matrix.md is exactly what the
code generates, and the status rules behave as documented."""
from __future__ import annotations

import os

from nova_lxd_py import support_matrix as sm

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))


def test_document_is_current():
    with open(os.path.join(REPO, "doc", "support-matrix.md")) as f:
        current = f.read()
    assert current == sm.markdown(), (
        "doc/support-matrix.md is stale: run "
        "`.venv/bin/python -m nova_lxd_py.support_matrix > doc/support-matrix.md`")


class Base:
    capabilities = {"a_flag": False}

    def one(self): ...
    def two(self): ...


class Driver(Base):
    capabilities = {"a_flag": True}

    def one(self): ...


def test_status_rules():
    def status(**kw):
        return sm.status_of(sm.Feature("k", "t", **kw), Driver, Base)[0]
    assert status(methods=("one",)) == sm.COMPLETE
    assert status(methods=("one",), capabilities=("a_flag",)) == sm.COMPLETE
    assert status(methods=("one", "two")) == sm.PARTIAL
    assert status(methods=("two",)) == sm.MISSING
    assert status(methods=()) == sm.MISSING
    assert status(methods=("one",), partial="limits") == sm.PARTIAL


def test_every_feature_is_decided_and_named_like_nova():
    keys = [f.key for f in sm.FEATURES]
    assert len(keys) == len(set(keys))
    for feature in sm.FEATURES:
        status, why = sm.status_of(feature)
        assert status in (sm.COMPLETE, sm.PARTIAL, sm.MISSING)
        if status != sm.COMPLETE:
            assert why, f"{feature.key} is {status} without a reason"
        assert feature.key.split(".")[0] in ("operation", "console", "guest", "networking",
                                             "storage")


def test_tempest_flags_follow_status():
    flags = sm.tempest_flags()
    assert flags["snapshot"] is True
    assert flags["live_migration"] is False
    assert flags["vnc_console"] is False
