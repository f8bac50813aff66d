"""Boot time to ACTIVE per server with Open vSwitch ports against tap ports, same run.

nova's functional harness in this process (API, conductor, scheduler,
placement, two compute hosts on the LXD driver, each with its own runtime) and
a real Open vSwitch (tests/functional/nova/nlx_ovs.py: ovsdb-server and
ovs-vswitchd of this run, userspace datapath). Servers with one port each are
booted one after another on one host, the kinds interleaved (tap, ovs native,
ovs hybrid, tap, ...) so drift hits them alike, each deleted before the next
boot. Neutron's events are not awaited (the harness's vif_plugging_timeout is
0): the figures are the cost of plugging, not of an agent.

    flock /var/lock/nlx-functional.lock .venv/bin/python benchmarks/nova_ovs_boot_bench.py [N]

Target (issue 9): ovs at most 1.2x tap.
"""
from __future__ import annotations

import copy
import os
import statistics
import sys
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "tests", "functional", "nova"))

import nlx_threads  # noqa: E402,F401 - first: nova in native threads
import test_lxd_ovs  # noqa: E402

N = int(sys.argv[1]) if len(sys.argv) > 1 else 10
KINDS = ("tap", "ovs native", "ovs hybrid")
RESULTS: dict[str, list[float]] = {kind: [] for kind in KINDS}
HOST = test_lxd_ovs.HOSTS[0]


class OVSBootBench(test_lxd_ovs.LXDOVSBase):
    def test_boot(self):
        self.flags(instances=-1, cores=-1, ram=-1, group="quota")
        template = copy.deepcopy(self.neutron.default_port)
        self.neutron.default_port = template
        self._boot_kind("tap", "warm-up")  # image import and first-use costs
        for i in range(N):
            for kind in (KINDS if i % 2 == 0 else tuple(reversed(KINDS))):
                RESULTS[kind].append(self._boot_kind(kind, str(i)))

    def _boot_kind(self, kind: str, tag: str) -> float:
        self.neutron.default_port["binding:vif_type"] = "tap" if kind == "tap" else "ovs"
        self.hybrid_hosts.clear()
        if kind == "ovs hybrid":
            self.hybrid_hosts.add(HOST)
        start = time.monotonic()
        server = self._boot_on(f"nlx-bench-{kind.replace(' ', '-')}-{tag}", HOST, self._net())
        took = time.monotonic() - start
        self._delete_server(server)
        return took


def main() -> int:
    result = unittest.TextTestRunner(verbosity=0, stream=open(os.devnull, "w")).run(
        unittest.TestSuite([OVSBootBench("test_boot")]))
    for _test, trace in result.errors + result.failures:
        print(trace)
    if not result.wasSuccessful() or not all(RESULTS.values()):
        return 1
    print(f"boot to ACTIVE, one port per server, {N} servers per kind, one host, same run")
    print(f"{'ports':<12} {'median s':>9} {'mean s':>8} {'min s':>7} {'max s':>7} {'x tap':>6}")
    tap = statistics.median(RESULTS["tap"])
    for kind, times in RESULTS.items():
        median = statistics.median(times)
        print(f"{kind:<12} {median:9.3f} {statistics.mean(times):8.3f} {min(times):7.3f} "
              f"{max(times):7.3f} {median / tap:6.2f}")
    worst = max(statistics.median(RESULTS[k]) for k in KINDS[1:]) / tap
    print(f"target: ovs at most 1.2x tap -> {'met' if worst <= 1.2 else 'NOT met'} "
          f"({worst:.2f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
