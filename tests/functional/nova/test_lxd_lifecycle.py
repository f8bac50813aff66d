"""Power state belongs to nova: runtime events reach nova within seconds, and
neither a runtime restart nor a host reboot lets the runtime start containers
behind nova's back.

Needs the bundled runtime (the tests restart its daemon).
"""
from __future__ import annotations

import time

import nlx_fixtures
import test_lxd_servers

HOST = test_lxd_servers.COMPUTE_HOSTS[0]
# nova's periodic sync would take 600 s; events must make it seconds.
EVENT_DEADLINE = 10


class LXDLifecycleTest(test_lxd_servers.LXDServersBase):
    def setUp(self):
        if nlx_fixtures.runtime_kind() != "bundled":
            self.skipTest("restarts the runtime daemon")
        super().setUp()

    def _events_connected(self, host: str) -> None:
        listener = self.computes[host].manager.driver._events
        self.assertTrue(listener.connected.wait(20), "event listener did not connect")

    def _stop_behind_nova_and_wait(self, server: dict) -> dict:
        start = time.monotonic()
        self._container(server).stop(force=True, wait=True)
        server = self._wait_for_state_change(server, "SHUTOFF")
        self.assertLess(time.monotonic() - start, EVENT_DEADLINE,
                        "nova saw the stop only late")
        return server

    def test_container_stopped_behind_nova_is_shutoff_within_seconds(self):
        server = self._boot("nlx-ev", host=HOST)
        self._events_connected(HOST)
        server = self._stop_behind_nova_and_wait(server)
        self.assertEqual("Stopped", self._status(server))
        server = self._start_server(server)
        self.assertEqual("Running", self._status(server))
        self._delete_server(server)
        self._assert_runtimes_empty()

    def test_events_follow_a_runtime_restart(self):
        server = self._boot("nlx-ev-restart", host=HOST)
        self._events_connected(HOST)
        self.runtimes[HOST].restart()
        self.assertEqual("Running", self._status(server), "a daemon restart keeps containers")
        self._events_connected(HOST)
        self._stop_behind_nova_and_wait(server)
        self._delete_server(server)
        self._assert_runtimes_empty()

    def test_host_reboot_leaves_power_state_to_nova(self):
        self.flags(resume_guests_state_on_host_boot=True)
        running = self._boot("nlx-reboot-on", host=HOST)
        stopped = self._stop_server(self._boot("nlx-reboot-off", host=HOST))
        for server in (running, stopped):
            self.assertEqual("false", self._container(server).config["boot.autostart"])

        # The host goes down: nova-compute, the runtime and every container with it.
        self.computes[HOST].stop()
        self.runtimes[HOST].restart(host_reboot=True)
        # The runtime comes back first and must not start anything on its own.
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            self.assertEqual("Stopped", self._status(running), "runtime autostarted it")
            time.sleep(0.2)
        # nova-compute comes back and resumes what was running, only that.
        self._restart_compute(HOST)
        running = self._wait_for_state_change(running, "ACTIVE")
        self.assertEqual("Running", self._status(running))
        self.assertEqual("SHUTOFF", self.api.get_server(stopped["id"])["status"])
        self.assertEqual("Stopped", self._status(stopped))
        for server in (running, stopped):
            self._delete_server(server)
        self._assert_runtimes_empty()
