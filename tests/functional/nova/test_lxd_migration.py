"""Resize and cold migration between two compute hosts, each with its own
runtime: the destination runtime pulls the stopped container from the source
runtime over HTTPS (websocket secrets from the source's migration offer).

Needs one runtime per host, so it is skipped on a shared LXD daemon.
"""
from __future__ import annotations

import nlx_threads  # noqa: F401 - first: nova in native threads (see the module)

import json

import nlx_fixtures
import test_lxd_servers

HOSTS = test_lxd_servers.COMPUTE_HOSTS


class LXDMigrationTest(test_lxd_servers.LXDServersBase):
    runtime_https = True

    def setUp(self):
        if nlx_fixtures.runtime_kind() != "bundled":
            self.skipTest("migration needs one runtime per host")
        super().setUp()
        self.big_flavor_id = self._create_flavor(name="nlx.medium", vcpu=2, memory_mb=256,
                                                 disk=1, ephemeral=0)

    def _names(self, host: str) -> list[str]:
        return self.runtimes[host].ours()

    def test_resize_confirm_then_migrate_revert(self):
        server = self._boot("nlx-move", host=HOSTS[0])
        name = server["OS-EXT-SRV-ATTR:instance_name"]
        self._exec(server, "sh", "-c", "echo travels > /root/marker")

        server = self._resize_server(server, self.big_flavor_id)
        self.assertEqual(HOSTS[1], server["OS-EXT-SRV-ATTR:host"])
        self.assertEqual("Running", self._status(server))
        self.assertEqual("2", self._container(server).config["limits.cpu"])
        self.assertEqual("travels", self._exec(server, "cat", "/root/marker").strip())
        self.assertIn(name, self._names(HOSTS[0]), "source kept until confirmed")
        server = self._confirm_resize(server)
        self.assertEqual([], self._names(HOSTS[0]))

        server = self._migrate_server(server)
        self.assertEqual(HOSTS[0], server["OS-EXT-SRV-ATTR:host"])
        self.assertEqual("travels", self._exec(server, "cat", "/root/marker").strip())
        self.api.post_server_action(server["id"], {"revertResize": None})
        server = self._wait_for_server_parameter(
            server, {"status": "ACTIVE", "OS-EXT-SRV-ATTR:host": HOSTS[1],
                     "OS-EXT-STS:task_state": None})
        self.assertEqual("Running", self._status(server))
        self.assertEqual([], self._names(HOSTS[0]), "reverted target removed")

        self._delete_server(server)
        self._assert_runtimes_empty()

    def _config_drive(self, server: dict) -> dict:
        """The config drive's meta_data.json as the guest reads it (and its mode)."""
        path = "/config-drive/openstack/latest/meta_data.json"
        self.assertEqual("600", self._exec(server, "stat", "-c", "%a", path).strip())
        return json.loads(self._exec(server, "cat", path))

    def test_config_drive_survives_resize_and_cold_migration(self):
        """The config drive lives in the container's root, so it moves with it:
        resized to the other host, confirmed, cold-migrated back, reverted and
        migrated again, the guest still reads its own metadata."""
        server = self._boot("nlx-cd-move", host=HOSTS[0], config_drive=True)
        self.assertEqual(server["id"], self._config_drive(server)["uuid"])
        server = self._resize_server(server, self.big_flavor_id)
        self.assertEqual(HOSTS[1], server["OS-EXT-SRV-ATTR:host"])
        self.assertEqual(server["id"], self._config_drive(server)["uuid"])
        server = self._confirm_resize(server)
        self.assertEqual(server["id"], self._config_drive(server)["uuid"])

        server = self._migrate_server(server)
        self.assertEqual(HOSTS[0], server["OS-EXT-SRV-ATTR:host"])
        self.assertEqual(server["id"], self._config_drive(server)["uuid"])
        self.api.post_server_action(server["id"], {"revertResize": None})
        server = self._wait_for_server_parameter(
            server, {"status": "ACTIVE", "OS-EXT-SRV-ATTR:host": HOSTS[1],
                     "OS-EXT-STS:task_state": None})
        self.assertEqual(server["id"], self._config_drive(server)["uuid"])
        server = self._migrate_server(server)
        server = self._confirm_resize(server)
        self.assertEqual(HOSTS[0], server["OS-EXT-SRV-ATTR:host"])
        self.assertEqual(server["id"], self._config_drive(server)["uuid"])
        self._delete_server(server)
        self._assert_runtimes_empty()

    def test_resize_on_the_same_host(self):
        """One-host clouds can resize: the container gets the new limits in place
        (same container, data kept), confirm keeps it, revert restores the old ones."""
        self.flags(allow_resize_to_same_host=True)
        server = self._boot("nlx-inplace", host=HOSTS[0], config_drive=True)
        self._exec(server, "sh", "-c", "echo stays > /root/marker")
        before = self._container(server).created_at
        other = self.api.get_services(binary="nova-compute", host=HOSTS[1])[0]
        self.api.put_service(other["id"], {"status": "disabled"})

        server = self._resize_server(server, self.big_flavor_id)
        self.assertEqual(HOSTS[0], server["OS-EXT-SRV-ATTR:host"])
        container = self._container(server)
        self.assertEqual(before, container.created_at, "not the same container")
        self.assertEqual(("2", "256MiB"), (container.config["limits.cpu"],
                                           container.config["limits.memory"]))
        self.assertEqual("Running", self._status(server))
        self.assertEqual("2", self._exec(server, "nproc").strip())
        self.assertEqual("stays", self._exec(server, "cat", "/root/marker").strip())
        self.assertEqual(server["id"], self._config_drive(server)["uuid"])
        server = self._confirm_resize(server)
        self.assertEqual("Running", self._status(server))
        self.assertEqual(server["id"], self._config_drive(server)["uuid"])

        server = self._resize_server(server, self.flavor_id)
        self.assertEqual("1", self._container(server).config["limits.cpu"])
        self.api.post_server_action(server["id"], {"revertResize": None})
        server = self._wait_for_server_parameter(
            server, {"status": "ACTIVE", "OS-EXT-STS:task_state": None})
        container = self._container(server)
        self.assertEqual(("2", "256MiB"), (container.config["limits.cpu"],
                                           container.config["limits.memory"]))
        self.assertEqual("Running", self._status(server))
        self.assertEqual("stays", self._exec(server, "cat", "/root/marker").strip())
        self.assertEqual(server["id"], self._config_drive(server)["uuid"])
        self._delete_server(server)
        self._assert_runtimes_empty()
