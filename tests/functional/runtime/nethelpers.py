"""Host-side helpers for network tests: unique `nt` names and thorough cleanup.

Everything a network test makes on the host (bridges, veths, the dnsmasq of a
managed bridge) is named with the `nt` prefix and removed here, even when the
test or the daemon failed half way.
"""
import glob
import json
import os
import signal
import subprocess
import uuid

import pytest


def name(tag: str = "") -> str:
    """A host interface name: `nt` + tag + random, within the 15-char limit."""
    return ("nt" + tag + uuid.uuid4().hex)[:15]


def exists(ifname: str) -> bool:
    return os.path.exists(f"/sys/class/net/{ifname}")


def addresses(ifname: str) -> list[str]:
    out = subprocess.run(["ip", "-j", "addr", "show", "dev", ifname], capture_output=True,
                         text=True).stdout
    return [f"{a['local']}/{a['prefixlen']}" for link in json.loads(out or "[]")
            for a in link.get("addr_info", [])]


def master(ifname: str) -> str | None:
    path = f"/sys/class/net/{ifname}/master"
    return os.path.basename(os.path.realpath(path)) if os.path.exists(path) else None


def kill_dnsmasq(lxd_dir: str) -> None:
    for pidfile in glob.glob(os.path.join(lxd_dir, "networks", "*", "dnsmasq.pid")):
        try:
            with open(pidfile) as f:
                pid = int(f.read().strip())
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if b"dnsmasq" not in f.read():
                    continue
            os.kill(pid, signal.SIGTERM)
        except (OSError, ValueError):
            continue


def delete_links(names) -> None:
    for ifname in names:
        if exists(ifname):
            subprocess.run(["ip", "link", "del", ifname], capture_output=True)


def cleanup(lxd_dir: str, before: set[str]) -> None:
    """Remove dnsmasqs of this daemon and every `nt` link that appeared meanwhile."""
    kill_dnsmasq(lxd_dir)
    now = set(os.listdir("/sys/class/net"))
    delete_links(sorted(n for n in now - before if n.startswith(("nt", "ifbveth"))))


@pytest.fixture(scope="module")
def host_links_restored(daemon):
    """For a test module: the `nt` links and dnsmasqs it leaves are removed at its end
    (use with ``pytestmark = pytest.mark.usefixtures("host_links_restored")``)."""
    before = set(os.listdir("/sys/class/net"))
    yield
    cleanup(daemon.lxd_dir, before)
