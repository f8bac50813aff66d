"""The runtime goes away while nova-compute runs, and comes back.

As nova's libvirt driver does when its connection closes: the compute service
is disabled with an "AUTO: ..." reason naming the runtime (the scheduler sends
new servers elsewhere), operations and periodic tasks fail with a clear message
instead of a traceback, and once the runtime answers again the service is
enabled by itself, the event stream reconnects and everything works. A host an
operator disabled stays disabled.

Needs the bundled runtime (the tests stop and start its daemon).
"""
from __future__ import annotations

import os
import signal
import time

import nlx_fixtures
import test_lxd_servers

from nova import context as nova_context
from nova import objects
from nova_lxd_py import exception as lxd_exception

HOST, OTHER = test_lxd_servers.COMPUTE_HOSTS
DEADLINE = 30   # seconds for nova-compute to notice a change (event stream retry: 10 s)
# Short on purpose (the defaults are 60 s, 10 s, 2 s): a hung runtime costs the first
# call that meets it [lxd] timeout plus the health check's timeout, no more.
REQUEST_TIMEOUT, CHECK_TIMEOUT, CHECK_INTERVAL = 5, 1, 0.5


class LXDRuntimeDownTest(test_lxd_servers.LXDServersBase):
    def setUp(self):
        if nlx_fixtures.runtime_kind() != "bundled":
            self.skipTest("stops and starts the runtime daemon")
        self.flags(timeout=REQUEST_TIMEOUT, health_check_timeout=CHECK_TIMEOUT,
                   health_check_interval=CHECK_INTERVAL, group="lxd")
        super().setUp()

    def _freeze(self, host: str) -> None:
        """SIGSTOP the host's runtime daemon: its socket still accepts connections,
        nothing answers (its containers, under their own liblxc monitors, run on)."""
        pid = self.runtimes[host].proc.pid
        os.kill(pid, signal.SIGSTOP)
        self.addCleanup(os.kill, pid, signal.SIGCONT)  # harmless when already resumed

    def _relaunch(self, host: str) -> None:
        runtime = self.runtimes[host]
        runtime._launch()
        runtime.client = nlx_fixtures.pylxd_client(runtime.endpoint)

    def _thaw(self, host: str) -> None:
        os.kill(self.runtimes[host].proc.pid, signal.SIGCONT)

    def _instance(self, server: dict):
        return objects.Instance.get_by_uuid(nova_context.get_admin_context(), server["id"])

    def _wait_events(self, host: str, connected: bool) -> float:
        listener = self.computes[host].manager.driver._events
        start = time.monotonic()
        while listener.connected.is_set() != connected:
            if time.monotonic() - start > DEADLINE:
                self.fail(f"event stream on {host} never {'re' if connected else 'dis'}"
                          "connected")
            time.sleep(0.05)
        return time.monotonic() - start

    def _service(self, host: str) -> dict:
        return self.admin_api.get_services(binary="nova-compute", host=host)[0]

    def _wait_service(self, host: str, status: str) -> tuple[dict, float]:
        start = time.monotonic()
        while True:
            service = self._service(host)
            if service["status"] == status:
                return service, time.monotonic() - start
            if time.monotonic() - start > DEADLINE:
                self.fail(f"service on {host} not {status} after {DEADLINE}s: {service}")
            time.sleep(0.1)

    def _watch(self, host: str):
        return self.computes[host].manager.driver._clients.watch

    def _wait_watch(self, host: str, down: bool) -> None:
        deadline = time.monotonic() + DEADLINE
        while (self._watch(host).down_reason is not None) != down:
            if time.monotonic() > deadline:
                self.fail(f"driver on {host} never saw the runtime {'down' if down else 'up'}")
            time.sleep(0.1)

    def _disabled_trait(self, host: str, want: bool) -> bool:
        """Whether the provider carries COMPUTE_STATUS_DISABLED, waiting (up to
        DEADLINE) for it to become *want*: the trait follows the service's status
        in a second step, after the service row is saved."""
        rp = self._get_provider_uuid_by_host(host)
        deadline = time.monotonic() + DEADLINE
        while True:
            found = "COMPUTE_STATUS_DISABLED" in self._get_provider_traits(rp)
            if found == want or time.monotonic() > deadline:
                return found
            time.sleep(0.1)

    def _events_connected(self, host: str) -> None:
        listener = self.computes[host].manager.driver._events
        self.assertTrue(listener.connected.wait(DEADLINE), "event listener did not connect")

    def test_runtime_down_disables_the_host_and_it_recovers_by_itself(self):
        server = self._boot("nlx-down", host=HOST)
        self._events_connected(HOST)
        runtime = self.runtimes[HOST]
        runtime._stop()

        service, took = self._wait_service(HOST, "disabled")
        print(f"service disabled {took:.2f}s after the runtime stopped")
        self.assertTrue(service["disabled_reason"].startswith(
            f"AUTO: Cannot reach the container runtime at {runtime.endpoint}: "), service)
        self.assertTrue(self._disabled_trait(HOST, True))

        # The driver's calls fail with the runtime named, not a requests traceback.
        ctx = nova_context.get_admin_context()
        instance = objects.Instance.get_by_uuid(ctx, server["id"])
        driver = self.computes[HOST].manager.driver
        exc = self.assertRaises(lxd_exception.RuntimeUnavailable, driver.get_info, instance)
        self.assertIn(f"Cannot reach the container runtime at {runtime.endpoint}", str(exc))

        # Periodic tasks skip their round with one line each, no traceback.
        before = len(self.stdlog.logger.output)
        manager = self.computes[HOST].manager
        manager.update_available_resource(ctx)
        manager._sync_power_states(ctx)
        manager._cleanup_running_deleted_instances(ctx)
        manager._run_image_cache_manager_pass(ctx)
        logged = self.stdlog.logger.output[before:]
        self.assertNotIn("Traceback", logged)
        self.assertIn("Virt driver is not ready", logged)
        self.assertIn("Skipping _sync_power_states periodic task due to: Cannot reach the "
                      f"container runtime at {runtime.endpoint}", logged)

        # An action on the host's server fails with that message as its event's error;
        # the server itself stays as it was.
        self.api.post_server_action(server["id"], {"os-stop": None})
        self._wait_for_server_parameter(server, {"OS-EXT-STS:task_state": None})
        errors = self._action_errors(server, "stop")
        self.assertTrue(any("Cannot reach the container runtime" in e for e in errors), errors)
        self.assertEqual("ACTIVE", self.api.get_server(server["id"])["status"])

        # The scheduler sends new servers to the other host.
        elsewhere = self._boot("nlx-elsewhere")
        self.assertEqual(OTHER, elsewhere["OS-EXT-SRV-ATTR:host"])

        # The runtime comes back: the service is enabled again by itself.
        self._relaunch(HOST)
        service, took = self._wait_service(HOST, "enabled")
        print(f"service enabled {took:.2f}s after the runtime answered")
        self.assertIsNone(service["disabled_reason"])
        self.assertFalse(self._disabled_trait(HOST, False))

        # Everything works: the event stream (a stop behind nova's back is seen at
        # once), power actions, and new servers on this host.
        self._events_connected(HOST)
        self.assertEqual("Running", self._status(server))
        self._container(server).stop(force=True, wait=True)
        server = self._wait_for_state_change(server, "SHUTOFF")
        server = self._start_server(server)
        self.assertEqual("Running", self._status(server))
        here = self._boot("nlx-back", host=HOST)
        for s in (server, elsewhere, here):
            self._delete_server(s)
        self._assert_runtimes_empty()

    def _assert_operator_disable_survives(self, take_down, bring_back) -> None:
        """A host an operator disabled stays disabled (with the operator's reason)
        while the runtime is down and after it is back."""
        service = self._service(HOST)
        self.admin_api.put_service(service["id"], {"status": "disabled",
                                                   "disabled_reason": "maintenance"})
        self._events_connected(HOST)
        take_down()
        self._wait_watch(HOST, down=True)
        self.assertEqual("maintenance", self._service(HOST)["disabled_reason"])
        bring_back()
        self._wait_watch(HOST, down=False)
        self._wait_events(HOST, connected=True)
        service = self._service(HOST)
        self.assertEqual(("disabled", "maintenance"),
                         (service["status"], service["disabled_reason"]))
        self.admin_api.put_service(service["id"], {"status": "enabled"})
        self._assert_runtimes_empty()

    def test_a_host_the_operator_disabled_stays_disabled(self):
        self._assert_operator_disable_survives(self.runtimes[HOST]._stop,
                                               lambda: self._relaunch(HOST))

    def test_hung_runtime_is_down_fails_fast_and_recovers_after_sigcont(self):
        server = self._boot("nlx-hung", host=HOST)
        self._events_connected(HOST)
        runtime = self.runtimes[HOST]
        driver = self.computes[HOST].manager.driver
        instance = self._instance(server)
        self._freeze(HOST)

        # The first call waits its request timeout, then the health check's.
        start = time.monotonic()
        exc = self.assertRaises(lxd_exception.RuntimeUnavailable, driver.get_info, instance)
        first = time.monotonic() - start
        message = f"Cannot reach the container runtime at {runtime.endpoint}: not answering"
        self.assertIn(message, str(exc))
        self.assertLess(first, REQUEST_TIMEOUT + CHECK_TIMEOUT + 3)
        service, _took = self._wait_service(HOST, "disabled")
        self.assertTrue(service["disabled_reason"].startswith("AUTO: " + message), service)
        self.assertTrue(self._disabled_trait(HOST, True))
        # The silent event stream was dropped (it would never end by itself).
        self._wait_events(HOST, connected=False)

        # Every later call fails at once with that message, not after a timeout.
        start = time.monotonic()
        for _ in range(5):
            exc = self.assertRaises(lxd_exception.RuntimeUnavailable, driver.get_info,
                                    instance)
            self.assertIn(message, str(exc))
        fast = (time.monotonic() - start) / 5
        print(f"hung runtime: first call failed after {first:.2f}s, later calls after "
              f"{fast * 1000:.1f} ms each")
        self.assertLess(fast, 0.5)

        # Periodic tasks skip their round with one line each, no traceback.
        ctx = nova_context.get_admin_context()
        before = len(self.stdlog.logger.output)
        start = time.monotonic()
        manager = self.computes[HOST].manager
        manager.update_available_resource(ctx)
        manager._sync_power_states(ctx)
        manager._run_image_cache_manager_pass(ctx)
        self.assertLess(time.monotonic() - start, REQUEST_TIMEOUT)
        logged = self.stdlog.logger.output[before:]
        self.assertNotIn("Traceback", logged)
        self.assertIn("Virt driver is not ready", logged)
        self.assertIn("Skipping _sync_power_states periodic task due to: " + message, logged)

        # An action fails with the message; the scheduler sends new servers elsewhere.
        self.api.post_server_action(server["id"], {"os-stop": None})
        self._wait_for_server_parameter(server, {"OS-EXT-STS:task_state": None})
        errors = self._action_errors(server, "stop")
        self.assertTrue(any(message in e for e in errors), errors)
        elsewhere = self._boot("nlx-elsewhere")
        self.assertEqual(OTHER, elsewhere["OS-EXT-SRV-ATTR:host"])

        # SIGCONT: the health check sees it, the service is enabled by itself and the
        # event stream reconnects.
        self._thaw(HOST)
        service, took = self._wait_service(HOST, "enabled")
        print(f"service enabled {took:.2f}s after SIGCONT")
        self.assertIsNone(service["disabled_reason"])
        self.assertFalse(self._disabled_trait(HOST, False))
        self._wait_events(HOST, connected=True)
        self.assertEqual("Running", self._status(server))
        self._container(server).stop(force=True, wait=True)
        server = self._wait_for_state_change(server, "SHUTOFF")
        server = self._start_server(server)
        for s in (server, elsewhere):
            self._delete_server(s)
        self._assert_runtimes_empty()

    def test_a_host_the_operator_disabled_stays_disabled_through_a_hang(self):
        driver = self.computes[HOST].manager.driver

        def hang() -> None:
            self._freeze(HOST)
            self.assertRaises(lxd_exception.RuntimeUnavailable, driver.list_instances)
            self.assertTrue(self._watch(HOST).hung)
        self._assert_operator_disable_survives(hang, lambda: self._thaw(HOST))
