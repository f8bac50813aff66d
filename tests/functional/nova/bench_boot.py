"""Boot N servers on 2 compute hosts through the API: LXD driver vs fake driver.

Not a test (stestr only collects test*.py); run it directly:

    .venv/bin/python tests/functional/nova/bench_boot.py [N]

Both runs use nova's functional harness in this process (API, conductor,
scheduler, placement fixture) and the same requests; the LXD run boots real
containers on one runtime per host (NOVA_LXD_TEST_RUNTIME picks the runtime
as in the tests). Time to ACTIVE is measured per server, servers booted one
after another, then everything is deleted.
"""
from __future__ import annotations

import os
import statistics
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import nlx_threads  # noqa: E402,F401 - first: nova in native threads
import test_lxd_servers  # noqa: E402

N = int(sys.argv[1]) if len(sys.argv) > 1 else 20
RESULTS: dict[str, list[float]] = {}


class _Bench:
    label = ""

    def test_boot_n(self):
        self.flags(instances=-1, cores=-1, ram=-1, group="quota")
        # 20 one-vcpu servers on two 2-core hosts need more than the default 4.0.
        self.flags(cpu_allocation_ratio=16.0)
        times = []
        servers = []
        for i in range(N):
            start = time.monotonic()
            servers.append(self._boot(f"nlx-bench-{i}"))
            times.append(time.monotonic() - start)
        RESULTS[self.label] = times
        for server in servers:
            self._delete_server(server)


class LXDBench(_Bench, test_lxd_servers.LXDServersBase):
    label = "lxd_py.LXDDriver"


class FakeBench(_Bench, test_lxd_servers.LXDServersBase):
    """Same harness and flavor, nova's fake driver on both hosts."""

    label = "fake.FakeDriver"
    compute_driver = "fake.MediumFakeDriver"

    def _start_lxd_compute(self, host: str) -> None:
        self.runtimes[host] = None
        self.computes[host] = self.start_service("compute", host=host)

    def _track_images(self, *image_ids: str) -> None:
        pass


def main() -> None:
    suite = unittest.TestSuite([FakeBench("test_boot_n"), LXDBench("test_boot_n")])
    result = unittest.TextTestRunner(verbosity=0, stream=open(os.devnull, "w")).run(suite)
    for _test, trace in result.errors + result.failures:
        print(trace)
    print(f"boot {N} servers on 2 hosts, one after another, seconds to ACTIVE per server")
    print(f"{'driver':<18} {'median':>8} {'mean':>8} {'max':>8} {'total':>8}")
    for label, times in RESULTS.items():
        print(f"{label:<18} {statistics.median(times):8.3f} {statistics.mean(times):8.3f} "
              f"{max(times):8.3f} {sum(times):8.2f}")
    if len(RESULTS) == 2:
        fake, lxd = RESULTS["fake.FakeDriver"], RESULTS["lxd_py.LXDDriver"]
        print(f"added by the LXD driver per server: median "
              f"{(statistics.median(lxd) - statistics.median(fake)) * 1000:.0f} ms, mean "
              f"{(statistics.mean(lxd) - statistics.mean(fake)) * 1000:.0f} ms")


if __name__ == "__main__":
    main()
