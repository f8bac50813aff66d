"""The cloud end to end (the cloud itself: conftest.py): two Debian servers on
different hosts that ping each other over Neutron's VXLAN network, SSH in from
this machine through a floating IP; a server's serial console through the
cloud's nova-serialproxy, as `openstack console url show --serial` hands it out.

Slow (a few minutes: every OpenStack service starts for real) but the only
test of the whole: it runs in CI.
"""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from cloud import demo, resources

pytestmark = pytest.mark.timeout(1500)
NOVA_TESTS = os.path.join(os.path.dirname(os.path.dirname(__file__)), "nova")


def test_servers_across_hosts_ping_and_ssh(cloud):
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
    demo.cleanup(conn)


def test_serial_console_through_nova_serialproxy(cloud):
    """`openstack console url show --serial` gives a ws:// URL on the cloud's
    nova-serialproxy; a websocket client (with the dashboard's Origin, as
    Horizon's terminal sends it) gets the getty's prompt, logs in and runs a
    command. The busybox image's getty lets root in without a password."""
    sys.path.append(NOVA_TESTS)
    import console_dialogue

    conn = resources.member()
    server = conn.compute.create_server(
        name="console-1", image_id=conn.image.find_image("busybox").id,
        flavor_id=conn.compute.find_flavor("c1.tiny").id,
        networks=[{"uuid": conn.network.find_network("private").id}])
    try:
        server = conn.compute.wait_for_server(server, wait=300)
        env = {**os.environ, "OS_CLIENT_CONFIG_FILE": cloud["clouds_yaml"]}
        shown = subprocess.run(
            [os.path.join(os.path.dirname(sys.executable), "openstack"), "--os-cloud",
             "nova-lxd", "console", "url", "show", "--serial", server.id, "-f", "value",
             "-c", "url"], env=env, capture_output=True, text=True, timeout=120)
        assert shown.returncode == 0, shown.stderr
        url = shown.stdout.strip()
        assert url.startswith(cloud["serial_console_proxy"] + "?token="), url
        with console_dialogue.WebsocketConsole(url, origin=cloud["dashboard"].rstrip("/")) as con:
            out = console_dialogue.login_and_run(con, "hostname")
        assert out == "console-1", out
        # nova-serialproxy closes the connection of a token nova did not issue
        with console_dialogue.WebsocketConsole(url[:-4] + "0000") as con:
            con.send(b"\n")
            with pytest.raises(AssertionError, match="console closed"):
                con.expect(b"login: ", timeout=15)
    finally:
        conn.compute.delete_server(server)
        conn.compute.wait_for_delete(server, wait=120)
