"""One cloud for every test of this package: ``scripts/cloud up`` with two
hosts before the first, ``scripts/cloud down`` after the last, and then
nothing of the cloud may be left (processes, namespaces, links, state).

Package scope: the rest of the suite does not run next to a whole OpenStack.
``NLX_TEST_KEEP_CLOUD=1`` leaves the cloud up afterwards (to look at it, or to
run a test again at once: ``up`` on a running cloud returns in seconds).
"""
from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))
sys.path.insert(0, REPO)
from cloud import layout, netns  # noqa: E402

RESULTS = os.path.join(REPO, ".cache", "test-results")


def run_cloud(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items()
           if k not in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")}
    return subprocess.run([sys.executable, "-m", "cloud", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


def leftovers() -> list[str]:
    left = [f"netns {ns}" for ns in netns.namespaces()
            if ns.startswith((layout.PREFIX + "-", "qrouter-", "qdhcp-"))]
    links = netns.ip("-o", "link", "show").stdout.splitlines()
    left += [f"link {line.split(':')[1].strip()}" for line in links
             if line.split(":")[1].strip().startswith(layout.PREFIX)]
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    if layout.STATE.encode() in f.read():
                        left.append(f"process {pid}")
            except OSError:
                pass
    if os.path.exists(layout.STATE):
        left.append(f"directory {layout.STATE}")
    return left


@pytest.fixture(scope="package")
def cloud() -> dict:
    """cloud.json of the running cloud."""
    import json

    started = time.monotonic()
    done = run_cloud("up", "--hosts", "2")
    print(done.stdout[-3000:])
    try:
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        print(f"cloud up in {time.monotonic() - started:.0f} s")
        status = run_cloud("status", timeout=120)
        assert status.returncode == 0, status.stdout
        print(status.stdout)
        os.environ.pop("REQUESTS_CA_BUNDLE", None)
        os.environ.pop("CURL_CA_BUNDLE", None)
        with open(os.path.join(layout.CACHE, "cloud.json")) as f:
            yield json.load(f)
    finally:
        if os.environ.get("NLX_TEST_KEEP_CLOUD") == "1":
            print("NLX_TEST_KEEP_CLOUD=1: the cloud stays up (scripts/cloud down)")
        else:
            t = time.monotonic()
            down = run_cloud("down", timeout=600)
            print(down.stdout[-2000:])
            print(f"cloud down in {time.monotonic() - t:.0f} s")
            assert down.returncode == 0, down.stdout + down.stderr
            assert leftovers() == []
