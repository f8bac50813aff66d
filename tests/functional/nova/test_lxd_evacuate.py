"""Evacuation: a host fails, its server is rebuilt from its image on the other host,
and when the failed host comes back its stale container, ephemeral volume and image
alias go away.

Needs one runtime per host (the failed host's runtime is rebooted), so it is skipped
on a shared LXD daemon.
"""
from __future__ import annotations

import fixtures
from pylxd import exceptions as lxd_exceptions

import nlx_fixtures
import test_lxd_servers

FAILED, SPARE = test_lxd_servers.COMPUTE_HOSTS


class LXDEvacuateTest(test_lxd_servers.LXDServersBase):
    def setUp(self):
        if nlx_fixtures.runtime_kind() != "bundled":
            self.skipTest("evacuation needs one runtime per host")
        super().setUp()

    def test_evacuate_and_clean_up_the_failed_host(self):
        self.flags(instances_path=self.useFixture(fixtures.TempDir()).path)
        self.flags(remove_unused_original_minimum_age_seconds=0, group="image_cache")
        flavor = self._create_flavor(name="nlx.evac", vcpu=1, memory_mb=128, disk=1,
                                     ephemeral=1)
        server = self._boot("nlx-evac", host=FAILED, flavor_id=flavor)
        name = server["OS-EXT-SRV-ATTR:instance_name"]
        self._exec(server, "sh", "-c", "echo lost > /root/marker")
        failed_runtime = self.runtimes[FAILED]

        # FAILED goes down: nova-compute gone (and forced down), its containers dead.
        self.computes[FAILED].stop()
        service = self.api.get_services(binary="nova-compute", host=FAILED)[0]
        self.api.put_service_force_down(service["id"], True)
        server = self._evacuate_server(server, expected_host=SPARE, expected_state="ACTIVE")
        self.assertEqual("Running", self._status(server))
        result = self._container(server).execute(["cat", "/root/marker"])
        self.assertNotEqual(0, result.exit_code, "rebuilt from the image, not copied")
        self.assertIn(name + "-eph0", self.runtimes[SPARE].our_volumes())

        # FAILED comes back after a reboot: its stale copy is still in its runtime.
        failed_runtime.restart(host_reboot=True)
        self.assertEqual([name], failed_runtime.ours())
        self.assertEqual("Stopped", failed_runtime.client.instances.get(name).status)
        self._restart_compute(FAILED)  # still forced down: nova wants it restarted first
        self.api.put_service_force_down(service["id"], False)
        self.assertEqual([], failed_runtime.ours(), "stale container left on the failed host")
        self.assertEqual([], failed_runtime.our_volumes(), "stale volume left")
        # the driver's image cache pass at start (process_instances_at_startup)
        # dropped what no local instance uses any more
        aliases = failed_runtime.client.api.images.aliases
        self.assertRaises(lxd_exceptions.NotFound, aliases[self.image_id].get)

        self.assertEqual("Running", self._status(server), "the evacuated server kept running")
        self._delete_server(server)
        self._assert_runtimes_empty()
