"""The connection watch: a lost runtime is reported once, its return once, and
a watched session turns a refused connect into RuntimeUnavailable; the service
status follows libvirt's rules (an operator's disable is never overridden)."""
import os
import socket
import tempfile
import unittest
from unittest import mock

from nova_lxd_py import client, exception, runtime_health
from nova_lxd_py import host as host_info


class ConnectionWatchTest(unittest.TestCase):
    def test_changes_are_reported_once_each(self):
        watch = runtime_health.ConnectionWatch()
        seen = []
        watch.subscribe(lambda: seen.append(watch.down_reason))
        watch.answered()
        watch.lost("Connection refused")
        watch.lost("No such file or directory")
        watch.answered()
        watch.answered()
        self.assertEqual(["Connection refused", None], seen)

    def test_refused_connect_names_endpoint_and_reason(self):
        path = os.path.join(tempfile.mkdtemp(), "unix.socket")
        s = socket.socket(socket.AF_UNIX)
        s.bind(path)            # bound, not listening: connect is refused
        self.addCleanup(s.close)
        factory = client.ClientFactory(client.Endpoint(path))
        with self.assertRaises(exception.RuntimeUnavailable) as ctx:
            factory.get()
        self.assertIn(f"Cannot reach the container runtime at {path}: Connection refused",
                      str(ctx.exception))
        self.assertEqual("Connection refused", factory.watch.down_reason)

    def test_runtime_unavailable_lets_periodic_tasks_skip(self):
        from nova import exception as nova_exception
        exc = exception.RuntimeUnavailable(endpoint="/x", reason="gone")
        self.assertIsInstance(exc, nova_exception.VirtDriverNotReady)
        self.assertIsInstance(exc, nova_exception.HypervisorUnavailable)


class ServiceStatusTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        from nova import objects
        objects.register_all()

    def _run(self, disabled, reason, enabled):
        service = mock.Mock(disabled=disabled, disabled_reason=reason)
        virtapi = mock.Mock()
        with mock.patch("nova.objects.Service.get_by_compute_host", return_value=service), \
                mock.patch("nova.context.get_admin_context"):
            host_info.set_service_enabled(virtapi, "h1", enabled, "Cannot reach it")
        return service, virtapi

    def test_disable_with_auto_reason(self):
        service, virtapi = self._run(False, None, False)
        self.assertTrue(service.disabled)
        self.assertEqual("AUTO: Cannot reach it", service.disabled_reason)
        service.save.assert_called_once_with()
        virtapi.update_compute_provider_status.assert_called_once()

    def test_enable_only_what_was_disabled_automatically(self):
        service, _ = self._run(True, "AUTO: Cannot reach it", True)
        self.assertFalse(service.disabled)
        self.assertIsNone(service.disabled_reason)
        service, virtapi = self._run(True, "maintenance", True)
        self.assertTrue(service.disabled)
        service.save.assert_not_called()
        virtapi.update_compute_provider_status.assert_not_called()


if __name__ == "__main__":
    unittest.main()
