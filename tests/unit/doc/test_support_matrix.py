"""The support matrix can't drift: doc/support-matrix.md is exactly what the
code generates, and the status rules behave as documented."""
from __future__ import annotations

import os

from nova_lxd_py import support_matrix as sm

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))


def _assert_current(name: str, generated: str, flags: str = "") -> None:
    with open(os.path.join(REPO, "doc", name)) as f:
        current = f.read()
    assert current == generated, (
        f"doc/{name} is stale: run "
        f"`.venv/bin/python -m nova_lxd_py.support_matrix {flags}> doc/{name}`")


def test_document_is_current():
    _assert_current("support-matrix.md", sm.markdown())


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


def test_proof_rules():
    def status(**kw):
        return sm.status_of(sm.Feature("k", "t", **kw), Driver, Base)[0]
    assert status(methods=("one",), proven_by=()) == sm.PARTIAL
    assert status(methods=("one",), proven_by=("tests/x.py::T::test_y",)) == sm.COMPLETE
    assert status(methods=("two",), proven_by=("tests/x.py::T::test_y",)) == sm.MISSING


def _defined_tests(path: str) -> set[str]:
    import ast

    with open(os.path.join(REPO, path)) as f:
        tree = ast.parse(f.read())
    return {f"{node.name}::{item.name}" for node in tree.body if isinstance(node, ast.ClassDef)
            for item in node.body
            if isinstance(item, ast.FunctionDef) and item.name.startswith("test")}


def test_proofs_name_tests_that_exist():
    """Every test a row cites is defined where it says, so a renamed or deleted
    test turns its feature's claim into a failure here."""
    cited = [t for f in sm.FEATURES for t in (f.proven_by or ())]
    assert cited
    for test_id in cited:
        path, cls, method = test_id.split("::")
        assert f"{cls}::{method}" in _defined_tests(path), f"{test_id} does not exist"


def test_networking_rows_rest_on_tests():
    for feature in sm.FEATURES:
        if feature.key.startswith("networking.") or feature.key == "operation.attach-interface":
            assert feature.proven_by is not None, f"{feature.key} must cite its tests"
    statuses = {f.key: sm.status_of(f)[0] for f in sm.FEATURES}
    assert statuses["networking.linuxbridge"] == sm.MISSING
    assert statuses["networking.ovs.native"] == sm.COMPLETE


def test_console_rows_rest_on_tests():
    for key in ("console.serial.interactive", "console.serial.log"):
        feature = next(f for f in sm.FEATURES if f.key == key)
        assert feature.proven_by, f"{key} must cite its tests"
        assert sm.status_of(feature)[0] == sm.COMPLETE


def test_methods_document_is_current():
    _assert_current("driver-methods.md", sm.methods_markdown(), "--methods ")


def test_every_compute_driver_method_is_decided():
    """A method nova adds (or one we stop overriding) fails here until someone
    says what it is for containers; the table names only real, inherited methods."""
    from nova.virt import driver as nova_driver

    from nova_lxd_py.driver import LXDDriver
    rows = sm.method_states()
    assert len(rows) > 100
    undecided = [name for name, state, _why in rows if state == "undecided"]
    assert undecided == []
    methods = set(sm.compute_driver_methods())
    for name, (state, why) in sm.INHERITED.items():
        assert name in methods, f"{name} is not a ComputeDriver method"
        assert not sm._overridden(LXDDriver, nova_driver.ComputeDriver, name), \
            f"{name} is overridden: it is no longer nova's business"
        assert state in (sm.NOT_IMPLEMENTED, sm.NOT_APPLICABLE, sm.NOVA_DEFAULT) and why
    for name, state, why in rows:
        if state == sm.IMPLEMENTED:
            assert why, f"{name}: implemented for which feature?"


def test_refused_methods_raise_with_their_reason():
    from nova_lxd_py.driver import LXDDriver
    for name in sm.REFUSED_METHODS:
        method = getattr(LXDDriver, name)
        argc = method.__code__.co_argcount - 1
        try:
            method(object(), *([None] * argc))
        except NotImplementedError as exc:
            assert str(exc), f"{name} refuses without a reason"
        else:
            raise AssertionError(f"{name} does not refuse")


def test_method_state_rules():
    class Inheriting(Base):
        pass
    states = {n: s for n, s, _ in sm.method_states(Driver, Base)}
    assert states["one"] == sm.IMPLEMENTED
    assert states["two"] == "undecided"
    assert {n: s for n, s, _ in sm.method_states(Inheriting, Base)}["one"] == "undecided"
