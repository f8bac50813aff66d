"""A short soak in CI: create / start / exec / file push / stop / delete cycles leave
the daemon's fds and the host's mounts, cgroups, veths and monitors where they
were, and the daemon's RSS flat once warm (benchmarks/soak_bench.py does 2,000)."""
import os
import sys


from tests.functional.runtime import nethelpers as nh
from tests.functional.runtime.harness import REPO, import_busybox

sys.path.insert(0, os.path.join(REPO, "benchmarks"))
import soak_bench  # noqa: E402

CYCLES, SETTLE = 60, 20


def test_soak_short(daemon):
    c = daemon.client()
    import_busybox(c)
    bridge = nh.name("sk")
    c.networks.create(bridge, config={"ipv4.address": "10.231.79.1/24",
                                      "ipv4.dhcp": "false"})
    lines = []
    try:
        result = soak_bench.soak(daemon.socket, daemon.lxd_dir, daemon.proc.pid, bridge,
                                 CYCLES, 10, 300, SETTLE, out=lines.append)
    finally:
        c.networks.get(bridge).delete()
    print("\n".join(lines))
    assert result["cycles"] == CYCLES
    checks = result["checks"]
    assert all(checks[k] for k in ("fds", "mounts", "cgroups", "veths", "monitors")), \
        (result["base"], result["last"])
    assert checks["rss"] <= 5.0, "\n".join(lines)
    assert "Traceback" not in daemon.tail(100000)
