"""nova-compute's start settles what nova's own start-up leaves between chairs.

- A rebuild cut short in its spawn (nova-compute dies after the new container
  was created, before it was seeded and started): nova's _init_instance sets the
  server to ERROR, and the driver removes the half-made container, so a second
  rebuild and a delete start from nothing.
- A server deleted while nova-compute was down and then purged from nova's
  database (``nova-manage db archive_deleted_rows --purge``): no instance row is
  left, not even a deleted one. ``[lxd] unknown_container_action`` decides: the
  default logs the container, ``reap`` removes it with its OVS port, ephemeral
  volume and the volume attachment Cinder still records; an operator's own
  container (no driver marks) is never touched.

The kill is simulated in-process (nova's functional harness runs every service
in one process): the spawn step raises an exception that is not an
``Exception``, so no handler, rollback or state change of nova or the driver runs,
which is what SIGKILL does; then the compute service is replaced by a new one.
Needs the bundled runtime (one per host).
"""
from __future__ import annotations

import nlx_threads  # noqa: F401 - first: nova in native threads (see the module)

import time

import fixtures

from nova import context as nova_context
from nova import exception as nova_exception
from nova import objects
from nova import utils
from nova.cmd import manage

import nlx_fixtures
import test_lxd_ovs
import test_lxd_servers

HOST, OTHER = test_lxd_servers.COMPUTE_HOSTS


class Killed(BaseException):
    """nova-compute dies here: not an Exception, so nothing catches it on the way
    up (no rollback, no instance state saved)."""


class _PurgeMixin:
    def _delete_while_compute_down(self, server: dict) -> None:
        """HOST's nova-compute stops; the server is deleted (nova-api deletes it
        locally, the container stays) and its rows purged."""
        self.computes[HOST].stop()
        service = self.admin_api.get_services(binary="nova-compute", host=HOST)[0]
        self.admin_api.put_service_force_down(service["id"], True)
        self.api.delete_server(server["id"])
        self._wait_until_deleted(server)
        manage.DbCommands().archive_deleted_rows(max_rows=1000, until_complete=True,
                                                 purge=True, all_cells=True)
        ctx = nova_context.get_admin_context()
        with nova_context.target_cell(ctx, self.cell_mappings["cell1"]) as cctx, \
                utils.temporary_mutation(cctx, read_deleted="yes"):
            self.assertRaises(nova_exception.InstanceNotFound, objects.Instance.get_by_uuid,
                              cctx, server["id"])

    def _start_again(self, action: str) -> None:
        self.flags(unknown_container_action=action, group="lxd")
        self._restart_compute(HOST)
        service = self.admin_api.get_services(binary="nova-compute", host=HOST)[0]
        self.admin_api.put_service_force_down(service["id"], False)


class LXDReconcileTest(_PurgeMixin, test_lxd_servers.LXDServersBase):
    def setUp(self):
        if nlx_fixtures.runtime_kind() != "bundled":
            self.skipTest("one runtime per host")
        super().setUp()

    def test_rebuild_cut_short_in_spawn_leaves_no_half_made_container(self):
        flavor = self._create_flavor(name="nlx.rebuild", vcpu=1, memory_mb=128, disk=1,
                                     ephemeral=1)
        server = self._boot("nlx-rebuild", host=HOST, flavor_id=flavor)
        name = server["OS-EXT-SRV-ATTR:instance_name"]
        runtime = self.runtimes[HOST]
        driver = self.computes[HOST].manager.driver
        died = fixtures.MockPatchObject(driver, "_push_seed", side_effect=Killed())
        self.useFixture(died)

        # Rebuild: nova destroys the container, spawn creates the new one and dies
        # before seeding and starting it.
        self.api.post_server_action(server["id"], {"rebuild": {"imageRef": self.image_id}})
        deadline = time.monotonic() + 60
        while not died.mock.called:
            self.assertLess(time.monotonic(), deadline, "rebuild never reached the seed")
            time.sleep(0.05)
        server = self.api.get_server(server["id"])
        self.assertEqual("rebuild_spawning", server["OS-EXT-STS:task_state"])
        self.assertEqual([name], runtime.ours())
        self.assertEqual("Stopped", runtime.client.instances.get(name).status,
                         "the half-made container")

        # nova-compute starts again: nova says ERROR, the half-made container goes.
        self._restart_compute(HOST)
        server = self._wait_for_server_parameter(
            server, {"status": "ERROR", "OS-EXT-STS:task_state": None},
            wait_for_fault_key=False)
        self.assertEqual([], runtime.ours(), "half-made container left")
        self.assertEqual([], runtime.our_volumes(), "its ephemeral volume left")

        # A second rebuild starts from nothing and works; so does the delete.
        self.api.post_server_action(server["id"], {"rebuild": {"imageRef": self.image_id}})
        server = self._wait_for_state_change(server, "ACTIVE")
        self.assertEqual("Running", self._status(server))
        self.assertIn("/mnt", self._exec(server, "cat", "/proc/mounts"))
        self._delete_server(server)
        self._assert_runtimes_empty()

    def test_unknown_container_is_logged_by_default_and_left_alone(self):
        server = self._boot("nlx-purged", host=HOST)
        name = server["OS-EXT-SRV-ATTR:instance_name"]
        runtime = self.runtimes[HOST]
        self._delete_while_compute_down(server)
        before = len(self.stdlog.logger.output)
        self._start_again("log")
        logged = self.stdlog.logger.output[before:]
        self.assertIn(f"Container {name} carries instance uuid {server['id']}, which nova "
                      "does not know, not even as deleted", logged)
        self.assertIn("left alone", logged)
        self.assertEqual([name], runtime.ours())
        self.assertEqual("Running", runtime.client.instances.get(name).status)
        runtime.client.instances.get(name).stop(force=True, wait=True)
        runtime.client.instances.get(name).delete(wait=True)
        self._assert_runtimes_empty()


class LXDReapTest(_PurgeMixin, test_lxd_ovs.LXDOVSBase):
    """reap, with a real OVS port, an ephemeral volume and a Cinder volume (os-brick's
    local connector over a loop device)."""

    def setUp(self):
        if nlx_fixtures.runtime_kind() != "bundled":
            self.skipTest("one runtime per host")
        super().setUp()
        self.volumes = self.useFixture(nlx_fixtures.LocalVolumes())
        self.cinder = self.volumes.cinder

    def test_reap_removes_container_port_volumes_and_attachment(self):
        flavor = self._create_flavor(name="nlx.reap", vcpu=1, memory_mb=128, disk=1,
                                     ephemeral=1)
        server = self._build_server(name="nlx-reap", image_uuid=self.image_id,
                                    flavor_id=flavor, networks=self._own_port(51))
        server["host"] = HOST
        self._track_images(self.image_id)
        server = self._wait_for_state_change(self.api.post_server({"server": server}),
                                             "ACTIVE")
        port = self._port_of(server)
        name = server["OS-EXT-SRV-ATTR:instance_name"]
        self._assert_ovs_port(server, port, self._names(port["id"])["tap"], HOST)
        vol_id, _device = self.volumes.create()
        self.api.post_server_volume(server["id"], {"volumeAttachment": {"volumeId": vol_id}})
        deadline = time.monotonic() + 30
        while "volume-" + vol_id not in self._container(server).devices:
            self.assertLess(time.monotonic(), deadline, "volume not attached")
            time.sleep(0.1)
        runtime = self.runtimes[HOST]
        self.assertEqual([name + "-eph0"], runtime.our_volumes())

        # An operator's own container on the same runtime: no driver marks.
        operator = nlx_fixtures.NAME_PREFIX + "operator"
        runtime.client.instances.create({"name": operator, "source": {"type": "none"},
                                         "config": {"user.owner": "ops"}}, wait=True)

        self._delete_while_compute_down(server)
        # nova-api's delete could not reach Cinder for this one: the attachment is
        # still recorded for the (now unknown) instance.
        ctx = nova_context.get_admin_context()
        from nova.volume import cinder
        cinder.API().attachment_create(ctx, vol_id, server["id"])
        self.assertTrue(self.cinder.volume_to_attachment[vol_id])

        self._start_again("reap")
        self.assertEqual([operator], runtime.ours(), "reaped the wrong containers")
        self.assertEqual([], runtime.our_volumes(), "ephemeral volume left")
        self.assertEqual({}, dict(self.cinder.volume_to_attachment[vol_id]),
                         "Cinder attachment left")
        runtime.client.instances.get(operator).delete(wait=True)
        self._assert_nothing_left(port["id"])
