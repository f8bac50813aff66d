"""A spawn onto a host whose storage pool is full ends in ERROR (the runtime's
"pool is full" message in the compute log, nova's retry fault on the server) and
no container or volume left on the host; with space back, the same host builds
the server.

The host's pool is a dir pool on a small real ext4 (tests/functional/fullfs.py).
"""
from __future__ import annotations

import os

import test_lxd_servers

from tests.functional import fullfs

HOST = test_lxd_servers.COMPUTE_HOSTS[0]
POOL = "nlxsmall"


class LXDPoolFullTest(test_lxd_servers.LXDServersBase):
    def _small_pool(self) -> str:
        fs = fullfs.small_ext4(64)
        mnt = fs.__enter__()
        self.addCleanup(fs.__exit__, None, None, None)
        runtime = self.runtimes[HOST]
        runtime.client.storage_pools.create({"name": POOL, "driver": "dir",
                                             "config": {"source": os.path.join(mnt, "pool")}})
        self.addCleanup(lambda: runtime.client.storage_pools.get(POOL).delete())
        self.flavor0 = self._create_flavor(name="nlx.nodisk", vcpu=1, memory_mb=128,
                                           ephemeral=0, disk=0)
        self.computes[HOST].stop()
        self.flags(pool=POOL, group="lxd")
        self._start_compute_on(HOST)
        return mnt

    def test_spawn_onto_a_full_pool(self):
        mnt = self._small_pool()
        runtime = self.runtimes[HOST]
        fullfs.fill(mnt)
        try:
            # disk 0: a 64 MiB pool reports no DISK_GB inventory to placement
            server = self._boot("nlx-full", host=HOST, wait="ERROR", flavor_id=self.flavor0)
            # The host failed the build (a full pool is that host's problem, so nova
            # reschedules; forced onto this host there is no other): the user sees
            # nova's retry fault, the compute log the runtime's reason.
            fault = server["fault"]["message"]
            self.assertIn("Exceeded maximum number of retries", fault)
            self.assertIn("Container runtime failed to create instance "
                          f"{server['OS-EXT-SRV-ATTR:instance_name']}: Storage pool "
                          f"'{POOL}' is full: no space left on device",
                          self.stdlog.logger.output)
            self.assertEqual([], runtime.ours())
            self.assertEqual([], runtime.our_volumes(POOL))
            self.assertEqual([], os.listdir(os.path.join(mnt, "pool", "containers")))
            self._delete_server(server)
        finally:
            fullfs.free(mnt)
        server = self._boot("nlx-full-freed", host=HOST, flavor_id=self.flavor0)
        self.assertEqual(POOL, self._container(server).devices["root"]["pool"]
                         if "root" in self._container(server).devices
                         else self._container(server).expanded_devices["root"]["pool"])
        self._delete_server(server)
        self._assert_runtimes_empty()
