"""/1.0/metrics: LXD's OpenMetrics text, per project, for the callers LXD serves it
to (administrators, metrics certificates, restricted certificates for their
projects), with the numbers of a really running container."""
from __future__ import annotations

import re

import pytest

from tests.functional.runtime.remote_hosts import generate_keypair
from tests.functional.runtime.security.conftest import _fp

SAMPLE = re.compile(r'^(\w+)(?:\{(.*)\})? (\S+)$')


def parse(text: str) -> list[tuple[str, dict, float]]:
    out = []
    assert text.endswith("# EOF\n"), text[-100:]
    for line in text.splitlines():
        if line.startswith("#"):
            assert re.match(r"^# (HELP \w+ .+|TYPE \w+ (gauge|counter)|EOF)$", line), line
            continue
        m = SAMPLE.match(line)
        assert m, line
        labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        out.append((m.group(1), labels, float(m.group(3))))
    return out


@pytest.fixture(scope="module")
def running(world):
    inst = world.names["p1"]["instance"]
    world.admin("PUT", f"/1.0/instances/{inst}/state", project="p1", json={"action": "start"})
    # Some CPU time and some traffic of its own, so the counters are not all zero.
    world.admin("POST", f"/1.0/instances/{inst}/exec", project="p1", json={
        "command": ["sh", "-c", "i=0; while [ $i -lt 30000 ]; do i=$((i+1)); done; "
                    "ping -c 2 -W 1 127.0.0.1 || true"],
        "record-output": True, "wait-for-websocket": False})
    yield inst
    world.admin("PUT", f"/1.0/instances/{inst}/state", project="p1",
                json={"action": "stop", "force": True})


def test_administrator_gets_every_project(world, running):
    samples = parse(world.req("admin", "GET", "/1.0/metrics").text)
    counts = {(lb["project"], lb["type"]): v for n, lb, v in samples if n == "lxd_instances"}
    for proj in ("default", "p1", "p2"):
        assert counts[(proj, "container")] >= 1 and counts[(proj, "virtual-machine")] == 0
    mine = {n: v for n, lb, v in samples
            if lb.get("name") == running and lb.get("project") == "p1"
            and lb.get("type") == "container" and not lb.get("cpu") and "device" not in lb}
    for name in ("lxd_memory_MemTotal_bytes", "lxd_memory_MemFree_bytes",
                 "lxd_memory_RSS_bytes", "lxd_memory_Cached_bytes", "lxd_procs_total",
                 "lxd_memory_OOM_kills_total", "lxd_memory_MemAvailable_bytes"):
        assert name in mine, (name, sorted(mine))
    assert mine["lxd_procs_total"] >= 1
    assert 0 < mine["lxd_memory_MemTotal_bytes"]
    cpu = [v for n, lb, v in samples if n == "lxd_cpu_seconds_total"
           and lb.get("name") == running]
    assert cpu and sum(cpu) > 0
    net = {(n, lb["device"]) for n, lb, v in samples if n.startswith("lxd_network_")
           and lb.get("name") == running}
    assert ("lxd_network_receive_bytes_total", "lo") in net
    fs = [lb for n, lb, v in samples if n == "lxd_filesystem_size_bytes"
          and lb.get("name") == running]
    assert fs and fs[0]["mountpoint"] == "/"
    assert any(n == "lxd_uptime_seconds" for n, _, _ in samples)
    # Stopped instances are counted but have no samples of their own (as LXD).
    assert not any(lb.get("name") == world.names["p2"]["instance"] for _, lb, _ in samples)


def test_metrics_certificates_and_projects(world, running, tmp_path):
    full = parse(world.req("metrics", "GET", "/1.0/metrics").text)
    assert {lb["project"] for n, lb, v in full if n == "lxd_instances"} >= {"p1", "p2"}
    # A restricted client certificate gets its projects only.
    mine = world.req("restricted", "GET", "/1.0/metrics")
    assert mine.status_code == 200
    assert {lb.get("project") for _, lb, _ in parse(mine.text) if lb} == {"p1"}
    assert world.req("restricted", "GET", "/1.0/metrics",
                     params={"project": "p2"}).status_code == 403
    # So does a metrics certificate restricted to a project.
    world.certs["m2"] = (str(tmp_path / "m.crt"), str(tmp_path / "m.key"))
    generate_keypair(*world.certs["m2"], "sec-m2")
    world.trust("m2", type="metrics", restricted=True, projects=["p2"])
    try:
        got = parse(world.req("m2", "GET", "/1.0/metrics").text)
        assert {lb.get("project") for _, lb, _ in got if lb} == {"p2"}
        assert world.req("m2", "GET", "/1.0/instances",
                         params={"project": "p2"}).status_code == 403
    finally:
        world.admin("DELETE", f"/1.0/certificates/{_fp(world.certs.pop('m2')[0])}")
    # Untrusted clients get nothing.
    for who in ("stranger", "none"):
        assert world.req(who, "GET", "/1.0/metrics").status_code == 403


def test_metrics_over_the_unix_socket(world, running):
    text = world.local.api.metrics.get().text
    names = {n for n, _, _ in parse(text)}
    assert {"lxd_instances", "lxd_cpu_seconds_total", "lxd_memory_MemTotal_bytes",
            "lxd_procs_total", "lxd_network_transmit_bytes_total"} <= names
