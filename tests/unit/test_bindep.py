"""scripts/setup reads bindep.txt with tools/bindep-list (it runs before any
virtualenv, so before bindep itself exists); both must select the same packages."""
import os
import shutil
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BINDEP_TXT = os.path.join(REPO, "bindep.txt")


def ours(*profiles: str) -> list[str]:
    return subprocess.run([sys.executable, os.path.join(REPO, "tools", "bindep-list"),
                           BINDEP_TXT, *profiles], capture_output=True, text=True,
                          check=True).stdout.split()


@pytest.mark.parametrize("profiles", [("compute",), ("compute", "test")])
def test_same_selection_as_bindep(profiles):
    exe = shutil.which("bindep", path=os.path.dirname(sys.executable)) or shutil.which("bindep")
    if exe is None:
        pytest.skip("bindep is not installed (test-requirements.txt lists it)")
    theirs = subprocess.run([exe, "-f", BINDEP_TXT, "-l", "newline", *profiles],
                            capture_output=True, text=True)
    if "platform" in theirs.stderr.lower() and theirs.returncode:
        pytest.skip(f"bindep does not know this platform: {theirs.stderr.strip()}")
    assert sorted(ours(*profiles)) == sorted(theirs.stdout.split())


def test_compute_hosts_get_no_test_tools():
    compute = ours("compute")
    assert "lxc" in compute and "uidmap" in compute
    assert not {"shellcheck", "gcc", "busybox-static", "lxd-client"} & set(compute)
    assert {"shellcheck", "busybox-static"} <= set(ours("compute", "test"))
