"""Boot from volume vs boot from image, time to ACTIVE, same run, same host.

Not a test (stestr only collects test*.py); run it through
benchmarks/bfv_boot_bench.sh [N]. Volumes are loop devices holding the busybox
root filesystem, connected with os-brick's local connector (as in the volume
tests); they are prepared before the clock starts. The two kinds of boot
alternate, so drift on a shared machine hits both alike.
"""
from __future__ import annotations

import os
import statistics
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import nlx_threads  # noqa: E402,F401 - first: nova in native threads (see the module)
import nlx_fixtures  # noqa: E402
import test_lxd_storage  # noqa: E402

N = int(sys.argv[1]) if len(sys.argv) > 1 else 10
RESULTS: dict[str, list[float]] = {"image": [], "volume": []}
HOST = test_lxd_storage.HOSTS[0]


class BFVBench(test_lxd_storage.LXDVolumeTest):
    def test_bench(self):
        self.flags(instances=-1, cores=-1, ram=-1, group="quota")
        self._delete_server(self._boot("nlx-warm", host=HOST))  # image cached, both kinds
        for i in range(N):
            vol_id, _device = self._volume(size_mb=64,
                                           rootfs_tarball=nlx_fixtures.busybox_image())
            for kind in (("image", "volume") if i % 2 == 0 else ("volume", "image")):
                start = time.monotonic()
                server = self._boot_kind(kind, i, vol_id)
                RESULTS[kind].append(time.monotonic() - start)
                self._delete_server(server)

    def _boot_kind(self, kind: str, i: int, vol_id: str) -> dict:
        if kind == "image":
            return self._boot(f"nlx-bench-img-{i}", host=HOST)
        server = self._build_server(name=f"nlx-bench-vol-{i}", image_uuid="",
                                    flavor_id=self.flavor_id, networks="none")
        server["block_device_mapping_v2"] = [{
            "boot_index": 0, "uuid": vol_id, "source_type": "volume",
            "destination_type": "volume"}]
        server["host"] = HOST
        return self._wait_for_state_change(self.api.post_server({"server": server}),
                                           "ACTIVE")


def main() -> int:
    result = unittest.TextTestRunner(verbosity=0, stream=open(os.devnull, "w")).run(
        unittest.TestSuite([BFVBench("test_bench")]))
    for _test, trace in result.errors + result.failures:
        print(trace)
    if not all(RESULTS.values()):
        return 1
    print(f"{N} boots of each kind on one host, alternating; seconds to ACTIVE")
    print(f"{'boot from':<8} {'median':>8} {'mean':>8} {'min':>8} {'max':>8}")
    for kind, times in RESULTS.items():
        print(f"{kind:<8} {statistics.median(times):8.3f} {statistics.mean(times):8.3f} "
              f"{min(times):8.3f} {max(times):8.3f}")
    ratio = statistics.median(RESULTS["volume"]) / statistics.median(RESULTS["image"])
    print(f"boot from volume / boot from image (medians): {ratio:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
