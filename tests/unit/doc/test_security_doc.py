"""doc/source/admin/security.md holds the security suite's figures as the code
collects them (tools/security_cases.py), and names only tests that exist."""
from __future__ import annotations

import os

import pytest

from tools import security_cases

PAGE = os.path.join(security_cases.REPO, "doc", "source", "admin", "security.md")
BEGIN, END = "<!-- security-cases:begin -->\n", "<!-- security-cases:end -->"


def test_page_holds_the_collected_figures():
    with open(PAGE) as f:
        text = f.read()
    current = text[text.index(BEGIN) + len(BEGIN):text.index(END)]
    assert current == security_cases.tables(), (
        "doc/source/admin/security.md is stale: replace its security-cases block with "
        "the output of `.venv/bin/python -m tools.security_cases`")


def test_a_reproduction_without_its_test_is_an_error():
    nodes = ["tests/functional/runtime/security/test_reproductions.py::test_other"]
    with pytest.raises(LookupError):
        security_cases.tables(nodes)


def test_parametrized_cases_count_under_their_test():
    node = "tests/functional/runtime/test_btrfs.py::test_pool_image_is_roots_alone"
    assert security_cases._matches(node, node)
    assert security_cases._matches(node + "[x]", node)
    assert not security_cases._matches(node + "_too", node)
    assert security_cases._matches(
        "tests/functional/runtime/security/test_views.py::test_server_view",
        "tests/functional/runtime/security/test_views.py")
