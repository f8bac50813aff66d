"""The README's main job, end to end: ``python -m nova_lxd_py.allinone --keep``.

One run covers the whole story (a cloud start costs seconds, a second one
would double this test's time): the demo's own steps and table, then the kept
cloud answers an operator over HTTP, through the ``nova`` CLI (logged in at
the identity stand-in: boot, list) and each host runtime's ``lxc`` CLI, then
Ctrl-C stops it and nothing is left: no daemons, containers or state.
Run as root (real containers), under pytest: the demo is a subprocess.
"""
from __future__ import annotations

import json
import os
import re
import select
import signal
import subprocess
import sys
import time
import urllib.request

import pytest

from nova_lxd_py.allinone import network
from nova_lxd_py.allinone.runtimes import wipe_state_dir

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))
BUSYBOX = os.path.join(REPO, ".cache", "images", "busybox.tar.xz")

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="runs real containers: needs root"),
    pytest.mark.skipif(not os.path.exists(BUSYBOX), reason="run scripts/setup first"),
]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:  # a zombie child counts as gone
        return stat.read().split(") ")[1][0] != "Z"


class Demo:
    def __init__(self, state_dir: str):
        self.state_dir = state_dir
        env = {k: v for k, v in os.environ.items()
               if k not in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "nova_lxd_py.allinone", "--keep", "--servers", "2",
             "--state-dir", state_dir],
            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            start_new_session=True)
        self.output = ""

    def read_until(self, marker: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while marker not in self.output:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {marker!r} within {timeout:.0f} s:\n{self.output}")
            ready, _, _ = select.select([fd], [], [], min(left, 1.0))
            if ready:
                chunk = os.read(fd, 65536)
                if not chunk:  # exited
                    self.proc.wait()
                    if marker not in self.output:
                        raise AssertionError(f"demo exited ({self.proc.returncode}) before "
                                             f"{marker!r}:\n{self.output}")
                    break
                self.output += chunk.decode(errors="replace")
        return self.output

    def runtime_pids(self) -> list[int]:
        return [int(p) for p in re.findall(r"runtime daemon for aio-host\d up \(pid (\d+)",
                                           self.output)]

    def network_names(self) -> list[tuple[str, str]]:
        names = [("netns", n) for n in re.findall(r"netns (aio\w+n\d)", self.output)]
        names += [("bridge", b) for b in re.findall(r"bridge (aiobr\w+)", self.output)]
        return list(dict.fromkeys(names))

    def kill(self) -> None:
        """Last resort after a failed test: the demo and its daemons, by pid."""
        pids = self.runtime_pids()
        names = self.network_names()
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        for pid in pids:
            if _alive(pid):
                os.killpg(pid, signal.SIGKILL)
        wipe_state_dir(self.state_dir)
        network.remove(names)


@pytest.fixture
def demo():
    run = Demo(f"/var/tmp/aio-test-{os.getpid()}")
    try:
        yield run
    finally:
        run.kill()
        log = f"/var/tmp/aio-nova-{run.proc.pid}.log"  # kept by a failed demo
        if os.path.exists(log):
            os.unlink(log)


def test_demo_end_to_end_keep_and_ctrl_c(demo):
    start = time.monotonic()
    out = demo.read_until("[aio] ready", timeout=300)
    elapsed = time.monotonic() - start
    assert "FAILED" not in out, out
    # The story, step by step.
    assert re.search(r"image [0-9a-f-]{36} \(raw, \d+ bytes, active\)", out), out
    hosts = set(re.findall(r"aio-server\d ACTIVE on (aio-host\d)", out))
    assert hosts == {"aio-host1", "aio-host2"}, f"servers should spread over both hosts:\n{out}"
    assert "hostname inside: aio-server1" in out, out
    assert "memory limit inside: 128 MiB (flavor aio.small: 128 MB)" in out, out
    assert "PID 1 is init" in out, out
    assert "/root/aio-marker inside it: 'written in aio-server1 before the snapshot'" in out
    assert re.search(r"cold migration: SKIPPED, .+|moved aio-host\d -> aio-host\d", out), out
    table = re.findall(r"^\| (aio-\S+)\s+\| (\S+)\s+\| (aio-host\d)\s+\| (aio-instance-\S+)"
                       r"\s+\| (\S+)", out, re.M)
    assert {row[0] for row in table} >= {"aio-server1", "aio-server2", "aio-from-snapshot"}
    assert all(row[1] == "ACTIVE" and row[4] == "Running" for row in table), table
    assert elapsed < 240, f"the demo took {elapsed:.0f} s"

    # The kept cloud answers over HTTP...
    url = re.search(r"Compute API: (http://127\.0\.0\.1:\d+/v2\.1)", out).group(1)
    request = urllib.request.Request(url + "/servers/detail",
                                     headers={"OpenStack-API-Version": "compute 2.96"})
    with urllib.request.urlopen(request, timeout=30) as response:
        servers = json.load(response)["servers"]
    assert sorted(s["name"] for s in servers) == ["aio-from-snapshot", "aio-server1",
                                                  "aio-server2"]
    assert {s["status"] for s in servers} == {"ACTIVE"}
    image_url = re.search(r"curl -s (http://127\.0\.0\.1:\d+/v2/images)", out).group(1)
    with urllib.request.urlopen(image_url, timeout=30) as response:
        images = json.load(response)["images"]
    assert {i["name"] for i in images} == {"aio-busybox", "aio-snapshot"}
    # ...to the nova CLI, logged in through the identity stand-in...
    exports = re.search(r"export (OS_AUTH_URL=.*)", out).group(1).split()
    cli_env = dict(os.environ, **dict(e.split("=", 1) for e in exports))
    busybox = next(i["id"] for i in images if i["name"] == "aio-busybox")
    nova = [os.path.join(os.path.dirname(sys.executable), "nova")]
    booted = subprocess.run(nova + ["boot", "--image", busybox, "--flavor", "aio.small",
                                    "--nic", "none", "--poll", "aio-cli"], env=cli_env,
                            capture_output=True, text=True, timeout=120)
    assert booted.returncode == 0, booted.stdout + booted.stderr
    listed = subprocess.run(nova + ["list", "--fields", "name,status"], env=cli_env,
                            capture_output=True, text=True, timeout=60)
    assert re.search(r"\| aio-cli\s+\| ACTIVE", listed.stdout), listed.stdout + listed.stderr
    # ...and each host's runtime to the stock lxc CLI.
    running = 0
    for host in ("aio-host1", "aio-host2"):
        env = dict(os.environ, LXD_DIR=os.path.join(demo.state_dir, host))
        listed = subprocess.run(["lxc", "list", "--format", "json"], env=env, check=True,
                                capture_output=True, text=True, timeout=60).stdout
        running += sum(1 for c in json.loads(listed) if c["status"] == "Running")
    assert running == 4

    # Each host's runtime in its own network namespace, on one bridge.
    names = demo.network_names()
    namespaces = [n for kind, n in names if kind == "netns"]
    if "network namespaces unavailable" not in out:
        assert len(namespaces) == 2 and len(names) == 3, names
        assert re.search(r"https 10\.219\.\d+\.1:8443", out), out

    # Ctrl-C: everything goes.
    pids = demo.runtime_pids()
    assert len(pids) == 2 and all(_alive(p) for p in pids)
    os.killpg(demo.proc.pid, signal.SIGINT)
    out = demo.read_until("[aio] cleaned up", timeout=120)
    assert demo.proc.wait(60) == 130
    assert "deleting 4 servers" in out, out  # the one booted by hand too
    assert "runtime aio-host1: 0 containers left" in out, out
    assert "runtime aio-host2: 0 containers left" in out, out
    assert "cleanup problem" not in out, out
    assert not any(_alive(p) for p in pids), "runtime daemons still running"
    assert not os.path.exists(demo.state_dir)
    with open("/proc/mounts") as mounts:
        assert demo.state_dir not in mounts.read()
    links = subprocess.run(["ip", "-br", "link"], capture_output=True, text=True).stdout
    left = subprocess.run(["ip", "netns"], capture_output=True, text=True).stdout
    for kind, name in names:
        assert name not in (left if kind == "netns" else links), f"{kind} {name} left"
    monitors = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert demo.state_dir not in monitors, "a container monitor is still running"
