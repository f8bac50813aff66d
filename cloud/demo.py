"""The main job (``scripts/demo``): the cloud up, then a user's day on it.

As the member user, with openstacksdk: a keypair; two ``debian-12`` servers
that land on different hosts (the scheduler spreads by free memory), with
user-data; their DHCP addresses from Neutron; a floating IP and SSH from this
machine (hostname, the user-data marker, the flavor's memory limit, a ping
across hosts to the other server); a snapshot booted on the other host; a
cold migration (as admin: nova's default policy); everything deleted; the
cloud down (or kept with ``--keep``).
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time

from cloud import horizon, layout, orchestrate, resources
from cloud.readiness import admin

MARKER = "nova-lxd-demo-user-data"
USER_DATA = f"""#cloud-config
write_files:
  - path: /etc/nova-lxd-demo
    content: "{MARKER}\\n"
"""
KEY_DIR = os.path.join(layout.CACHE, "demo")
KEY = os.path.join(KEY_DIR, "id_ed25519")
PREFIX = "demo-"


class Step:
    """A progress line per step, with its duration."""

    def __init__(self, out):
        self.out = out
        self.started = time.monotonic()

    def __call__(self, line: str) -> None:
        self.out(f"[demo] {line}")

    def timed(self, title: str):
        step = self

        class _Timer:
            def __enter__(self):
                self.t = time.monotonic()
                step(f"{title} ...")
                return self

            def __exit__(self, kind, value, tb):
                if kind is None:
                    step(f"  done in {time.monotonic() - self.t:.1f} s")
        return _Timer()


def ssh(address: str, command: str, jump: str | None = None, timeout: float = 30
        ) -> subprocess.CompletedProcess:
    opts = ["-i", KEY, "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=5", "-o", "BatchMode=yes"]
    if jump:
        opts += ["-o", f"ProxyCommand=ssh {' '.join(opts)} -W %h:%p debian@{jump}"]
    return subprocess.run(["ssh", *opts, f"debian@{address}", command], capture_output=True,
                          text=True, timeout=timeout)


def wait_ssh(address: str, jump: str | None = None, timeout: float = 180) -> str:
    """Wait until cloud-init has put the key in and sshd answers; return hostname."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        try:
            done = ssh(address, "hostname", jump=jump, timeout=15)
            if done.returncode == 0:
                return done.stdout.strip()
            last = done.stderr.strip()
        except subprocess.TimeoutExpired:
            last = "timed out"
        time.sleep(2)
    raise RuntimeError(f"no SSH to {address} in {timeout:.0f} s: {last}")


def cleanup(conn) -> None:
    """Remove what an earlier (interrupted) demo left."""
    for server in conn.compute.servers():
        if server.name.startswith(PREFIX):
            conn.compute.delete_server(server)
    for server in conn.compute.servers():
        if server.name.startswith(PREFIX):
            conn.compute.wait_for_delete(server, wait=120)
    for image in conn.image.images(owner=conn.current_project_id):
        if image.name.startswith(PREFIX):
            conn.image.delete_image(image)
    for fip in conn.network.ips(project_id=conn.current_project_id):
        conn.network.delete_ip(fip)
    kp = conn.compute.find_keypair(f"{PREFIX}key")
    if kp:
        conn.compute.delete_keypair(kp)


def _host(adm, server_id: str) -> str:
    return adm.compute.get_server(server_id).compute_host


def _address(server) -> str:
    for addresses in server.addresses.values():
        for a in addresses:
            if a.get("OS-EXT-IPS:type") == "fixed":
                return a["addr"]
    raise RuntimeError(f"{server.name} has no fixed address")


def boot(conn, name: str, image_id: str, flavor_id: str, net_id: str, hints=None):
    return conn.compute.create_server(
        name=name, image_id=image_id, flavor_id=flavor_id, networks=[{"uuid": net_id}],
        key_name=f"{PREFIX}key", user_data=_b64(USER_DATA), scheduler_hints=hints or {})


def _b64(text: str) -> str:
    import base64
    return base64.b64encode(text.encode()).decode()


def run(keep: bool, hosts: int, out=print) -> int:
    step = Step(out)
    started = time.monotonic()
    step(f"bringing the cloud up ({hosts} compute hosts)")
    orchestrate.up(hosts, lambda line: out(f"[cloud] {line}"))
    conn = resources.member()
    adm = admin()
    cleanup(conn)
    rows = []

    with step.timed("keypair"):
        os.makedirs(KEY_DIR, exist_ok=True)
        if not os.path.exists(KEY):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", KEY],
                           check=True)
        with open(KEY + ".pub") as f:
            conn.compute.create_keypair(name=f"{PREFIX}key", public_key=f.read())
    image = conn.image.find_image("debian-12")
    if image is None:
        raise SystemExit("demo: no debian-12 image in Glance (tools/images/build-debian)")
    flavor = conn.compute.find_flavor("c1.small")
    net = conn.network.find_network("private")

    servers, boot_time = {}, {}
    with step.timed("booting demo-1 and demo-2 (debian-12, c1.small, user-data)"):
        t0 = time.monotonic()
        s1 = boot(conn, f"{PREFIX}1", image.id, flavor.id, net.id)
        # The second after the first is placed: the scheduler then sees the
        # first's memory taken and picks the other host.
        while conn.compute.get_server(s1.id).status == "BUILD" and not _host(adm, s1.id):
            time.sleep(0.5)
        s2 = boot(conn, f"{PREFIX}2", image.id, flavor.id, net.id)
        for s in (s1, s2):
            servers[s.name] = conn.compute.wait_for_server(s, wait=300)
            boot_time[s.name] = time.monotonic() - t0
        h1, h2 = _host(adm, s1.id), _host(adm, s2.id)
        step(f"  demo-1 ACTIVE on {h1} at {_address(servers['demo-1'])}, "
             f"demo-2 ACTIVE on {h2} at {_address(servers['demo-2'])} (DHCP from Neutron)")
        if h1 == h2 and hosts > 1:
            raise RuntimeError(f"both servers landed on {h1}")

    with step.timed("floating IP for demo-1, SSH in from this machine"):
        public = conn.network.find_network("public")
        fip = conn.network.create_ip(floating_network_id=public.id)
        port = next(conn.network.ports(device_id=s1.id))
        conn.network.update_ip(fip, port_id=port.id)
        address = fip.floating_ip_address
        hostname = wait_ssh(address)
        facts = ssh(address, "cat /etc/nova-lxd-demo; "
                    "cat /sys/fs/cgroup/memory.max 2>/dev/null || "
                    "cat /sys/fs/cgroup/memory/memory.limit_in_bytes").stdout.split()
        step(f"  ssh debian@{address}: hostname {hostname}, user-data marker "
             f"{facts[0] if facts else '?'}, memory limit "
             f"{int(facts[1]) // 2**20 if len(facts) > 1 else '?'} MiB")
        if hostname != "demo-1" or not facts or facts[0] != MARKER:
            raise RuntimeError(f"unexpected server facts: {hostname} {facts}")

    with step.timed(f"ping across hosts: demo-1 ({h1}) -> demo-2 ({h2})"):
        target = _address(servers["demo-2"])
        done = ssh(address, f"sudo ping -c 3 -W 2 {target}")
        step("  " + (done.stdout.strip().splitlines() or ["?"])[-2])
        if done.returncode != 0:
            raise RuntimeError(f"demo-1 cannot ping demo-2: {done.stdout}{done.stderr}")
        back = ssh(target, f"sudo ping -c 1 -W 2 {_address(servers['demo-1'])} >/dev/null "
                   "&& echo ok", jump=address)
        step(f"  and back (ssh through demo-1): {back.stdout.strip() or back.stderr.strip()}")

    with step.timed("snapshot demo-1, boot the snapshot on another host"):
        ssh(address, "echo written-before-snapshot | sudo tee /root/snapshot-proof >/dev/null")
        snap = conn.compute.create_server_image(s1, name=f"{PREFIX}snapshot", wait=True,
                                                timeout=300)
        s3 = boot(conn, f"{PREFIX}from-snapshot", snap.id, flavor.id, net.id,
                  hints={"different_host": [s1.id]})
        t0 = time.monotonic()
        servers[s3.name] = conn.compute.wait_for_server(s3, wait=300)
        boot_time[s3.name] = time.monotonic() - t0
        h3 = _host(adm, s3.id)
        wait_ssh(_address(servers[s3.name]), jump=address)
        proof = ssh(_address(servers[s3.name]), "sudo cat /root/snapshot-proof",
                    jump=address).stdout.strip()
        step(f"  {s3.name} ACTIVE on {h3}; the file written before the snapshot: {proof!r}")
        if h3 == h1 or proof != "written-before-snapshot":
            raise RuntimeError(f"snapshot server on {h3} (demo-1 on {h1}), proof {proof!r}")

    with step.timed("cold-migrating demo-2 (admin)"):
        adm.compute.migrate_server(s2)
        adm.compute.wait_for_server(adm.compute.get_server(s2.id), status="VERIFY_RESIZE",
                                    wait=300)
        adm.compute.confirm_server_resize(s2)
        servers["demo-2"] = adm.compute.wait_for_server(adm.compute.get_server(s2.id),
                                                         wait=120)
        moved = _host(adm, s2.id)
        step(f"  demo-2 moved {h2} -> {moved}, {servers['demo-2'].status}")
        if moved == h2:
            raise RuntimeError("demo-2 did not move")
        # Neutron's agent on the new host wires the port within seconds.
        t = time.monotonic()
        reach = ssh(address, f"for i in $(seq 30); do sudo ping -c 1 -W 1 "
                    f"{_address(servers['demo-2'])} >/dev/null && exit 0; done; exit 1",
                    timeout=60)
        if reach.returncode != 0:
            raise RuntimeError("demo-2 is unreachable after its move")
        step(f"  demo-2 after the move answers demo-1's ping "
             f"(after {time.monotonic() - t:.1f} s)")

    for name, s in servers.items():
        fresh = conn.compute.get_server(s.id)
        rows.append((name, fresh.status, _host(adm, s.id), _address(fresh),
                     address if name == "demo-1" else "", f"{boot_time[name]:.1f} s"))
    table(rows, out)
    if keep:
        step("kept: the cloud and its servers stay up. To reach it:")
        out(f"  export OS_CLIENT_CONFIG_FILE={os.path.join(layout.CACHE, 'clouds.yaml')}")
        out("  .venv/bin/openstack --os-cloud nova-lxd server list")
        out(f"  ssh -i {KEY} debian@{address}")
        out(f"  {horizon.url()}   # Horizon: user {layout.MEMBER_USER}, "
            f"password {layout.MEMBER_PASSWORD}")
        out("  .venv/bin/openstack --os-cloud nova-lxd console url show --serial demo-1")
        out("  scripts/cloud status     # every service; logs in " + layout.path("logs"))
        out("  scripts/cloud down       # removes everything")
        step(f"total {time.monotonic() - started:.0f} s")
        return 0
    with step.timed("deleting servers, snapshot, floating IP, keypair"):
        cleanup(conn)
        for node in orchestrate.computes(hosts):
            left = subprocess.run(["lxc", "list", "--format", "csv", "-c", "n"],
                                  env={**os.environ, "LXD_DIR": layout.runtime_dir(node)},
                                  capture_output=True, text=True).stdout.split()
            step(f"  runtime {node.name}: {len(left)} containers left")
    orchestrate.down(lambda line: out(f"[cloud] {line}"))
    shutil.rmtree(KEY_DIR, ignore_errors=True)
    step(f"total {time.monotonic() - started:.0f} s")
    return 0


def table(rows, out) -> None:
    head = ("server", "status", "host", "address", "floating IP", "boot")
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    line = "+" + "+".join("-" * (w + 2) for w in widths) + "+"
    out(line)
    out("| " + " | ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)) + " |")
    out(line)
    for r in rows:
        out("| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) + " |")
    out(line)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keep", action="store_true",
                        help="leave the cloud and the servers up, print how to reach them")
    parser.add_argument("--hosts", type=int, default=2)
    args = parser.parse_args(argv)
    try:
        return run(args.keep, args.hosts, lambda line: print(line, flush=True))
    except orchestrate.ServiceFailed as e:
        print(f"[demo] FAILED: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
