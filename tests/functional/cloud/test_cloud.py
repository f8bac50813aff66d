"""The cloud end to end: ``scripts/cloud up`` with two hosts, two Debian servers
on different hosts that ping each other over Neutron's VXLAN network, SSH in
from this machine through a floating IP, then ``scripts/cloud down`` and
nothing of the cloud is left (processes, namespaces, links, state).

Slow (a few minutes: every OpenStack service starts for real) but the only
test of the whole: it runs in CI.
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
from cloud import demo, layout, netns, resources  # noqa: E402

pytestmark = pytest.mark.timeout(1500)


def _cloud(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items()
           if k not in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")}
    return subprocess.run([sys.executable, "-m", "cloud", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


def _leftovers() -> list[str]:
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


@pytest.fixture(scope="module")
def cloud():
    started = time.monotonic()
    done = _cloud("up", "--hosts", "2")
    print(done.stdout[-3000:])
    try:
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        print(f"cloud up in {time.monotonic() - started:.0f} s")
        status = _cloud("status", timeout=120)
        assert status.returncode == 0, status.stdout
        yield
    finally:
        t = time.monotonic()
        down = _cloud("down", timeout=600)
        print(down.stdout[-2000:])
        print(f"cloud down in {time.monotonic() - t:.0f} s")
        assert down.returncode == 0, down.stdout + down.stderr
        assert _leftovers() == []


def test_servers_across_hosts_ping_and_ssh(cloud):
    os.environ.pop("REQUESTS_CA_BUNDLE", None)
    os.environ.pop("CURL_CA_BUNDLE", None)
    from cloud.readiness import admin

    conn, adm = resources.member(), admin()
    demo.cleanup(conn)  # what a kept demo left
    os.makedirs(demo.KEY_DIR, exist_ok=True)
    if not os.path.exists(demo.KEY):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", demo.KEY],
                       check=True)
    with open(demo.KEY + ".pub") as f:
        conn.compute.create_keypair(name=f"{demo.PREFIX}key", public_key=f.read())
    image = conn.image.find_image("debian-12")
    flavor = conn.compute.find_flavor("c1.small")
    net = conn.network.find_network("private")
    s1 = demo.boot(conn, "demo-1", image.id, flavor.id, net.id)
    s1 = conn.compute.wait_for_server(s1, wait=300)
    s2 = demo.boot(conn, "demo-2", image.id, flavor.id, net.id,
                   hints={"different_host": [s1.id]})
    s2 = conn.compute.wait_for_server(s2, wait=300)
    hosts = {demo._host(adm, s.id) for s in (s1, s2)}
    assert len(hosts) == 2, hosts

    fip = conn.network.create_ip(
        floating_network_id=conn.network.find_network("public").id)
    conn.network.update_ip(fip, port_id=next(conn.network.ports(device_id=s1.id)).id)
    address = fip.floating_ip_address
    assert demo.wait_ssh(address) == "demo-1"
    facts = demo.ssh(address, "cat /etc/nova-lxd-demo").stdout.strip()
    assert facts == demo.MARKER
    ping = demo.ssh(address, f"sudo ping -c 2 -W 2 {demo._address(s2)}")
    assert ping.returncode == 0, ping.stdout + ping.stderr
    # and SSH (TCP) across hosts, through demo-1
    assert demo.wait_ssh(demo._address(s2), jump=address) == "demo-2"
