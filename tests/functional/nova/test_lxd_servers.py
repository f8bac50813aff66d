"""nova's own services drive real containers through the LXD driver.

API, conductor, scheduler, placement (fixture), Glance/Neutron/Cinder
fixtures from nova's functional framework; two compute services running
nova_lxd_py's driver, each with its own runtime daemon. Run with stestr
(nova's fixtures are testtools-based; pytest trips over their teardown):

    .venv/bin/python -m stestr --test-path tests/functional/nova \
        --top-dir tests/functional/nova run
"""
from __future__ import annotations

import nlx_threads  # noqa: F401 - first: nova in native threads (see the module)

import base64
import io
import json
import os
import shutil
import sys
import tempfile
import time
from unittest import mock

import fixtures
from pylxd import exceptions as lxd_exceptions

from nova import context as nova_context
from nova.tests.functional import integrated_helpers
from oslo_utils.fixture import uuidsentinel as uuids

import nlx_fixtures
from nova_lxd_py import driver as _lxd_driver  # noqa: F401 - registers [lxd] options
from nova_lxd_py.image import HOST_ARCH

COMPUTE_HOSTS = ("nlx-host1", "nlx-host2")
WAIT_TIMEOUT = 60


def _paste_ini() -> str:
    return os.path.join(sys.prefix, "etc", "nova", "api-paste.ini")


class LXDServersBase(integrated_helpers.ProviderUsageBaseTestCase):
    """Two compute hosts with the LXD driver, each on its own runtime."""

    compute_driver = "lxd_py.LXDDriver"
    microversion = "2.74"

    def setUp(self):
        self.flags(api_paste_config=_paste_ini(), group="wsgi")
        super().setUp()
        self.flags(instance_name_template=nlx_fixtures.NAME_PREFIX + "%08x",
                   shutdown_timeout=1, vif_plugging_timeout=0)
        self._store_snapshot_data()
        self.image_id = self._create_busybox_image()
        self.flavor_id = self._create_flavor(name="nlx.small", vcpu=1, memory_mb=128, ephemeral=0,
                                             disk=1)
        self.runtimes = {}
        self.computes = {}
        for host in COMPUTE_HOSTS:
            self._start_lxd_compute(host)

    # -- harness -------------------------------------------------------------------
    def _wait_for_server_parameter(self, server, expected_params, max_retries=None,
                                   api=None, wait_for_fault_key=True):
        """nova's helper polls 10 times every 0.5 s: too coarse to measure and
        too short for real containers on a loaded CI box. Poll every 0.05 s
        for up to WAIT_TIMEOUT seconds instead."""
        api = api or getattr(self, "admin_api", self.api)
        want_fault = wait_for_fault_key and expected_params.get("status") == "ERROR"
        deadline = time.monotonic() + WAIT_TIMEOUT
        while True:
            server = api.get_server(server["id"])
            if all(server[k] == v for k, v in expected_params.items()) and \
                    (not want_fault or "fault" in server):
                return server
            if server["status"] == "ERROR" and expected_params.get("status") != "ERROR":
                self.fail(f"server went to ERROR: {server.get('fault')}")
            if time.monotonic() > deadline:
                self.fail(f"Wait for state change failed, expected_params={expected_params}, "
                          f"server={server}")
            time.sleep(0.05)

    runtime_https = False

    def _start_lxd_compute(self, host: str) -> None:
        runtime = self.useFixture(nlx_fixtures.RuntimeFixture(host, https=self.runtime_https))
        runtime.image_aliases = []
        self.runtimes[host] = runtime
        self._start_compute_on(host)

    def _start_compute_on(self, host: str) -> None:
        """A fresh compute service (and driver) for host, on that host's runtime."""
        self.flags(endpoint=self.runtimes[host].endpoint, group="lxd")
        self.flags(image_cache_dir=self.useFixture(fixtures.TempDir()).path, group="lxd")
        # where earlier versions wrote config drives (only cleaned now): per host
        self.flags(config_drive_dir=self._reachable_tempdir(), group="lxd")
        # Each host keeps its own node identity, as on separate machines.
        with mock.patch("nova.virt.node.get_local_node_uuid",
                        return_value=str(getattr(uuids, "node_" + host))):
            self.computes[host] = self.start_service("compute", host=host)

    def _reachable_tempdir(self) -> str:
        """A directory unprivileged containers can cross (nova's TMPDIR is 0700)."""
        path = tempfile.mkdtemp(prefix="nlx-nova-", dir="/var/tmp")
        os.chmod(path, 0o711)
        self.addCleanup(shutil.rmtree, path, True)
        return path

    def _restart_compute(self, host: str) -> None:
        """Stop host's compute service and start a new one, as after a host reboot."""
        self.computes[host].stop()
        self._start_compute_on(host)

    def _create_busybox_image(self) -> str:
        ctxt = nova_context.get_admin_context()
        with open(nlx_fixtures.busybox_image(), "rb") as data:
            image = self.glance.create(ctxt, {
                "name": "nlx-busybox", "disk_format": "raw", "container_format": "bare",
                "min_disk": 0, "status": "active",
                "properties": {"hw_architecture": HOST_ARCH}}, data=data)
        return image["id"]

    def _store_snapshot_data(self) -> None:
        """GlanceFixture.update drops image data; keep it like Glance would."""
        glance = self.glance
        original = glance.update

        def update(context, image_id, metadata, data=None, purge_props=False):
            if data is not None:
                glance._imagedata[image_id] = data.read() if hasattr(data, "read") \
                    else b"".join(data)
            return original(context, image_id, metadata, data=None,
                            purge_props=purge_props)
        glance.update = update

    def _track_images(self, *image_ids: str) -> None:
        for runtime in self.runtimes.values():
            runtime.image_aliases.extend(image_ids)

    def _boot(self, name: str, image_id: str | None = None, host: str | None = None,
              flavor_id: str | None = None, wait: str = "ACTIVE",
              config_drive: bool = False) -> dict:
        server = self._build_server(name=name, image_uuid=image_id or self.image_id,
                                    flavor_id=flavor_id or self.flavor_id, networks="none")
        if host:
            server["host"] = host
        if config_drive:
            server["config_drive"] = True
        self._track_images(image_id or self.image_id)
        created = self.api.post_server({"server": server})
        return self._wait_for_state_change(created, wait)

    def _container(self, server: dict):
        host = server["OS-EXT-SRV-ATTR:host"]
        name = server["OS-EXT-SRV-ATTR:instance_name"]
        return self.runtimes[host].client.instances.get(name)

    def _status(self, server: dict) -> str:
        return self._container(server).state().status

    def _exec(self, server: dict, *cmd: str) -> str:
        result = self._container(server).execute(list(cmd))
        self.assertEqual(0, result.exit_code, result.stderr)
        return result.stdout

    def _wait_for_port_detached(self, server: dict, port_id: str) -> None:
        deadline = time.monotonic() + WAIT_TIMEOUT
        while port_id in {p["port_id"] for p in self.api.get_port_interfaces(server["id"])}:
            if time.monotonic() > deadline:
                self.fail(f"port {port_id} still attached")
            time.sleep(0.05)

    def _action_errors(self, server: dict, action: str) -> list[str]:
        """The error details of a server action's events (admin, microversion 2.84)."""
        old = self.admin_api.microversion
        self.admin_api.microversion = "2.84"
        try:
            actions = self.admin_api.get_instance_actions(server["id"])
            req = next(a["request_id"] for a in actions if a["action"] == action)
            events = self.admin_api.api_get(
                f"/servers/{server['id']}/os-instance-actions/{req}"
            ).body["instanceAction"]["events"]
        finally:
            self.admin_api.microversion = old
        return [e.get("details") or "" for e in events if e["result"] == "Error"]

    def _assert_runtimes_empty(self) -> None:
        for host, runtime in self.runtimes.items():
            self.assertEqual([], runtime.ours(), f"containers left on {host}")
            self.assertEqual([], runtime.our_volumes(), f"volumes left on {host}")

    META_DATA = "/config-drive/openstack/latest/meta_data.json"

    def _skip_without_snapshots(self, server: dict) -> None:
        try:
            self._container(server).snapshots.all()
        except lxd_exceptions.LXDAPIException as exc:
            self.skipTest(f"runtime has no instance snapshots yet: {exc}")

    def _create_image(self, server: dict, name: str) -> dict:
        image_id = self.api.post_server_action(
            server["id"], {"createImage": {"name": name}})["image_id"]
        self._wait_for_server_parameter(server, {"OS-EXT-STS:task_state": None})
        image = self.glance.show(None, image_id)
        self.assertEqual("root-tar", image["disk_format"])
        self.assertEqual({"hypervisor_type": "lxd", "vm_mode": "exe",
                          "trait:CUSTOM_NOVA_LXD_CONTAINER": "required"},
                         {k: image["properties"].get(k) for k in (
                             "hypervisor_type", "vm_mode", "trait:CUSTOM_NOVA_LXD_CONTAINER")})
        self.assertTrue(self.glance._imagedata.get(image_id), "no image data uploaded")
        return image


class LXDServersTest(LXDServersBase):
    def test_boot_spread_limits_and_delete(self):
        servers = [self._boot(f"nlx-s{i}") for i in range(4)]
        hosts = {s["OS-EXT-SRV-ATTR:host"] for s in servers}
        self.assertEqual(set(COMPUTE_HOSTS), hosts, "servers should spread over both hosts")
        for server in servers:
            self.assertEqual("Running", self._status(server))
            container = self._container(server)
            self.assertEqual("1", container.config["limits.cpu"])
            self.assertEqual("128MiB", container.config["limits.memory"])
            self.assertEqual("1", self._exec(server, "nproc").strip())
            # cloud-init's ds-identify reads it from PID 1 to try nova's metadata
            self.assertIn("product_name=OpenStack Nova",
                          self._exec(server, "cat", "/proc/1/environ"))
            self.assertEqual(server["OS-EXT-SRV-ATTR:hostname"],
                             self._exec(server, "hostname").strip())
        for host in COMPUTE_HOSTS:
            rp_uuid = self._get_provider_uuid_by_host(host)
            traits = self._get_provider_traits(rp_uuid)
            self.assertIn("CUSTOM_NOVA_LXD_CONTAINER", traits)
            # a raw VM disk can't boot here: no image type is advertised
            self.assertEqual([], [t for t in traits if t.startswith("COMPUTE_IMAGE_TYPE_")])
            inventory = self._get_provider_inventory(rp_uuid)
            self.assertGreaterEqual(inventory["VCPU"]["total"], 1)
            self.assertGreater(inventory["MEMORY_MB"]["total"], 128)
            self.assertIn("DISK_GB", inventory)
        for server in servers:
            self._delete_server(server)
        self._assert_runtimes_empty()

    def test_power_actions_and_console(self):
        server = self._boot("nlx-power")
        server = self._stop_server(server)
        self.assertEqual("Stopped", self._status(server))
        server = self._start_server(server)
        self.assertEqual("Running", self._status(server))
        for kind in ("SOFT", "HARD"):
            self.api.post_server_action(server["id"], {"reboot": {"type": kind}})
            server = self._wait_for_state_change(server, "ACTIVE")
            self.assertEqual("Running", self._status(server))
        self.api.post_server_action(server["id"], {"pause": {}})
        server = self._wait_for_state_change(server, "PAUSED")
        self.assertEqual("Frozen", self._status(server))
        self.api.post_server_action(server["id"], {"unpause": {}})
        server = self._wait_for_state_change(server, "ACTIVE")
        self.assertEqual("Running", self._status(server))
        self.api.post_server_action(server["id"], {"suspend": {}})
        server = self._wait_for_state_change(server, "SUSPENDED")
        self.assertEqual("Frozen", self._status(server))
        self.api.post_server_action(server["id"], {"resume": {}})
        server = self._wait_for_state_change(server, "ACTIVE")
        self.assertEqual("Running", self._status(server))
        output = self.api.post_server_action(
            server["id"], {"os-getConsoleOutput": {"length": 50}})["output"]
        self.assertIsInstance(output, str)
        self._delete_server(server)
        self._assert_runtimes_empty()

    def test_snapshot_boots_on_other_host(self):
        server = self._boot("nlx-snap", host=COMPUTE_HOSTS[0])
        self._skip_without_snapshots(server)
        self._exec(server, "sh", "-c", "echo from-snapshot > /root/marker")
        snapshot = self._create_image(server, "nlx-snapshot")
        self._track_images(snapshot["id"])
        self.assertEqual("Running", self._status(server), "snapshot must not stop it")
        clone = self._boot("nlx-clone", image_id=snapshot["id"], host=COMPUTE_HOSTS[1])
        self.assertEqual("from-snapshot", self._exec(clone, "cat", "/root/marker").strip())
        for s in (server, clone):
            self._delete_server(s)
        self._assert_runtimes_empty()

    def test_rescue_unrescue(self):
        """The rescue container sees the stopped root, gets the rescue password
        (shadow and its own config drive) and unrescue gives the instance back
        with its own config drive."""
        server = self._boot("nlx-rescue", config_drive=True)
        self._exec(server, "sh", "-c", "echo precious > /root/marker")
        self.api.post_server_action(server["id"], {"rescue": {"adminPass": "r3scue:Pw"}})
        server = self._wait_for_state_change(server, "RESCUE")
        self.assertEqual("Stopped", self._status(server))
        host = server["OS-EXT-SRV-ATTR:host"]
        name = server["OS-EXT-SRV-ATTR:instance_name"]
        rescue = self.runtimes[host].client.instances.get(name + "-rescue")
        # the runtime mounts the stopped root itself: no host path of it is used
        self.assertEqual("container/" + name, rescue.devices["rescue"]["source"])
        result = rescue.execute(["cat", "/mnt/rescue/root/marker"])
        self.assertEqual("precious", result.stdout.strip(), result.stderr)
        rescue.execute(["sh", "-c", "echo repaired >> /mnt/rescue/root/marker"])
        self._assert_password(rescue, "root", "r3scue:Pw")
        drive = rescue.execute(["cat", self.META_DATA])
        self.assertEqual(0, drive.exit_code, drive.stderr)
        meta = json.loads(drive.stdout)
        self.assertEqual((server["id"], "r3scue:Pw"), (meta["uuid"], meta.get("admin_pass")))
        self.assertEqual("600", rescue.execute(["stat", "-c", "%a", self.META_DATA]
                                               ).stdout.strip())
        self.api.post_server_action(server["id"], {"unrescue": {}})
        server = self._wait_for_state_change(server, "ACTIVE")
        self.assertEqual("Running", self._status(server))
        self.assertEqual("precious\nrepaired",
                         self._exec(server, "cat", "/root/marker").strip())
        meta = json.loads(self._exec(server, "cat", self.META_DATA))
        self.assertEqual(server["id"], meta["uuid"])
        self.assertNotEqual("r3scue:Pw", meta.get("admin_pass"))
        self.assertNotIn(name + "-rescue", [i.name for i in
                                            self.runtimes[host].client.instances.all()])
        self._delete_server(server)
        self._assert_runtimes_empty()

    def test_rescue_of_a_root_the_pool_has_unmounted(self):
        """After a host reboot the stopped instance's root is not mounted anywhere
        (as on pools that unmount stopped roots): rescue still gets it, because
        the runtime mounts it for the rescue container, and the repair is there
        when the instance starts again."""
        server = self._boot("nlx-rescue-cold")
        self._exec(server, "sh", "-c", "echo precious > /root/marker")
        server = self._stop_server(server)
        host = server["OS-EXT-SRV-ATTR:host"]
        name = server["OS-EXT-SRV-ATTR:instance_name"]
        runtime = self.runtimes[host]
        runtime.restart(host_reboot=True)
        self.assertEqual([], [m for m in nlx_fixtures.mounts_below(runtime.lxd_dir)
                              if f"/containers/{name}/" in m + "/"],
                         "the stopped root is still mounted")
        self.api.post_server_action(server["id"], {"rescue": {}})
        server = self._wait_for_state_change(server, "RESCUE")
        rescue = runtime.client.instances.get(name + "-rescue")
        result = rescue.execute(["sh", "-c", "cat /mnt/rescue/root/marker && "
                                 "echo repaired >> /mnt/rescue/root/marker"])
        self.assertEqual("precious", result.stdout.strip(), result.stderr)
        self.api.post_server_action(server["id"], {"unrescue": {}})
        server = self._wait_for_state_change(server, "ACTIVE")
        self.assertEqual("precious\nrepaired",
                         self._exec(server, "cat", "/root/marker").strip())
        self._delete_server(server)
        self._assert_runtimes_empty()

    def _assert_password(self, container, user: str, password: str) -> None:
        """user's /etc/shadow hash in the container is password's (checked with the
        container's own mkpasswd and the stored salt)."""
        shadow = container.execute(["cat", "/etc/shadow"]).stdout
        hashed = next(line.split(":")[1] for line in shadow.splitlines()
                      if line.startswith(user + ":"))
        self.assertTrue(hashed.startswith("$6$"), f"no sha512 password set: {hashed!r}")
        salt = hashed.split("$")[2]
        again = container.execute(["mkpasswd", "-m", "sha512", "-S", salt, "-P", "0"],
                                  stdin_payload=password + "\n").stdout.strip()
        self.assertEqual(hashed, again)

    def test_change_password(self):
        server = self._boot("nlx-passwd")
        self.api.post_server_action(server["id"], {"changePassword": {"adminPass": "n3w pw"}})
        self._wait_for_server_parameter(server, {"OS-EXT-STS:task_state": None})
        self._assert_password(self._container(server), "root", "n3w pw")
        server = self._stop_server(server)
        # not running: the API refuses before the driver is asked
        self.api.api_post(f"/servers/{server['id']}/action",
                          {"changePassword": {"adminPass": "x"}}, check_response_status=[409])
        self._delete_server(server)
        self._assert_runtimes_empty()

    def test_rebuild_gives_a_fresh_root(self):
        server = self._boot("nlx-rebuild")
        self._exec(server, "sh", "-c", "echo old > /root/marker")
        self.api.post_server_action(server["id"], {"rebuild": {"imageRef": self.image_id}})
        server = self._wait_for_server_parameter(
            server, {"status": "ACTIVE", "OS-EXT-STS:task_state": None})
        self.assertEqual("Running", self._status(server))
        result = self._container(server).execute(["cat", "/root/marker"])
        self.assertNotEqual(0, result.exit_code, "rebuild kept the old root filesystem")
        self._delete_server(server)
        self._assert_runtimes_empty()

    def test_power_state_sync_sees_container_stopped_behind_our_back(self):
        server = self._boot("nlx-sync")
        self._container(server).stop(force=True, wait=True)
        host = server["OS-EXT-SRV-ATTR:host"]
        self.computes[host].manager._sync_power_states(nova_context.get_admin_context())
        server = self._wait_for_state_change(server, "SHUTOFF")
        self._delete_server(server)
        self._assert_runtimes_empty()

    def test_config_drive_and_user_data(self):
        server = self._build_server(name="nlx-cd", image_uuid=self.image_id,
                                    flavor_id=self.flavor_id, networks="none")
        server["config_drive"] = True
        server["user_data"] = base64.b64encode(b"#!/bin/sh\necho hello\n").decode()
        server["metadata"] = {"role": "nlx-test"}
        self._track_images(self.image_id)
        server = self._wait_for_state_change(self.api.post_server({"server": server}),
                                             "ACTIVE")
        meta = json.loads(self._exec(server, "cat",
                                     "/config-drive/openstack/latest/meta_data.json"))
        self.assertEqual(server["id"], meta["uuid"])
        self.assertEqual({"role": "nlx-test"}, meta["meta"])
        self.assertEqual("#!/bin/sh\necho hello\n", self._exec(
            server, "cat", "/var/lib/cloud/seed/nocloud/user-data"))
        self._delete_server(server)
        self._assert_runtimes_empty()

    def test_image_cache_pass_drops_unused_images(self):
        self.flags(instances_path=self.useFixture(fixtures.TempDir()).path)
        self.flags(remove_unused_original_minimum_age_seconds=0, group="image_cache")
        # The pass lists instances of CONF.host, which in this one-process
        # harness is the compute service started last.
        host = COMPUTE_HOSTS[-1]
        server = self._boot("nlx-cache", host=host)
        runtime = self.runtimes[host]
        manager = self.computes[host].manager
        ctxt = nova_context.get_admin_context()
        aliases = runtime.client.api.images.aliases

        manager._run_image_cache_manager_pass(ctxt)
        self.assertEqual(200, aliases[self.image_id].get().status_code, "in use: kept")
        self._delete_server(server)
        manager._run_image_cache_manager_pass(ctxt)
        self.assertRaises(lxd_exceptions.NotFound, aliases[self.image_id].get)

    def test_images_precached_on_an_aggregate(self):
        """nova's image pre-caching reaches the runtime of each host of the
        aggregate (and only those); a second request finds the image there."""
        host, other = COMPUTE_HOSTS[0], COMPUTE_HOSTS[1]
        self._track_images(self.image_id)
        self.admin_api.microversion = "2.81"
        self.addCleanup(setattr, self.admin_api, "microversion", None)
        agg = self.admin_api.post_aggregate({"aggregate": {"name": "nlx-precache"}})
        self.admin_api.add_host_to_aggregate(agg["id"], host)
        cached = self.runtimes[host].client.api.images.aliases[self.image_id]
        with self.assertRaises(lxd_exceptions.NotFound):
            cached.get()
        driver = self.computes[host].manager.driver
        results: list[bool] = []
        real = driver.cache_image

        def record(context, image_id):
            results.append(real(context, image_id))
            return results[-1]
        self.useFixture(fixtures.MockPatchObject(driver, "cache_image", side_effect=record))
        for count in (1, 2):
            self.admin_api.api_post(f"/os-aggregates/{agg['id']}/images",
                                    {"cache": [{"id": self.image_id}]},
                                    check_response_status=[202])
            deadline = time.monotonic() + WAIT_TIMEOUT
            while len(results) < count:
                self.assertLess(time.monotonic(), deadline, "the image was not cached")
                time.sleep(0.05)
            self.assertTrue(cached.get().json()["metadata"]["target"])
        self.assertEqual([True, False], results, "fetched once, then found there")
        with self.assertRaises(lxd_exceptions.NotFound):
            self.runtimes[other].client.api.images.aliases[self.image_id].get()

    def test_only_container_images_are_scheduled_here(self):
        """With nova's image-type prefilter on, VM disk images (raw, qcow2) find no
        host of this driver; a root-tar container image with the documented
        properties does."""
        self.flags(query_placement_for_image_type_support=True, group="scheduler")
        ctxt = nova_context.get_admin_context()
        for fmt, data in (("raw", b"\0" * 4096), ("qcow2", b"QFI\xfb" + b"\0" * 4092)):
            vm = self.glance.create(ctxt, {"name": f"nlx-vm-{fmt}", "disk_format": fmt,
                                           "container_format": "bare", "status": "active"},
                                    data=io.BytesIO(data))
            server = self._boot(f"nlx-vm-{fmt}", image_id=vm["id"], wait="ERROR")
            self.assertIn("No valid host", server["fault"]["message"])
            self._delete_server(server)
        with open(nlx_fixtures.busybox_image(), "rb") as data:
            image = self.glance.create(ctxt, {
                "name": "nlx-busybox-root-tar", "disk_format": "root-tar",
                "container_format": "bare", "status": "active",
                "properties": {"hypervisor_type": "lxd", "vm_mode": "exe",
                               "trait:CUSTOM_NOVA_LXD_CONTAINER": "required"}}, data=data)
        server = self._boot("nlx-root-tar", image_id=image["id"])
        self.assertEqual("Running", self._status(server))
        self._delete_server(server)
        self._assert_runtimes_empty()

    def test_host_uptime_and_cpu_stats_come_from_the_runtime(self):
        # read from the runtime's /1.0/resources (a remote runtime's host is not ours)
        self.useFixture(fixtures.MockPatch("nova_lxd_py.host.local_uptime",
                                           side_effect=AssertionError("read locally")))
        self.admin_api.microversion = "2.88"  # uptime is part of a hypervisor's details
        self.addCleanup(setattr, self.admin_api, "microversion", self.microversion)
        hypervisors = self.admin_api.api_get("/os-hypervisors/detail").body["hypervisors"]
        self.assertEqual(set(COMPUTE_HOSTS), {h["hypervisor_hostname"] for h in hypervisors})
        for hypervisor in hypervisors:
            self.assertRegex(hypervisor["uptime"],
                             r"^up .*,  load average: [\d.]+, [\d.]+, [\d.]+$")
        stats = self.computes[COMPUTE_HOSTS[0]].manager.driver.get_host_cpu_stats()
        self.assertEqual({"kernel", "idle", "user", "iowait", "frequency"}, set(stats))
        with open("/proc/stat") as f:
            idle = int(f.readline().split()[4]) * 10**9 // os.sysconf("SC_CLK_TCK")
        self.assertLessEqual(stats["idle"], idle)
        self.assertGreater(stats["idle"], idle * 0.9)

    def test_image_that_cannot_boot_fails_cleanly(self):
        """A failure after the container exists (its init is missing): the server goes
        to ERROR at once with the cause in its fault, and no host keeps a container."""
        import subprocess
        import tempfile
        work = self.useFixture(fixtures.TempDir()).path
        subprocess.run(["tar", "-xJf", nlx_fixtures.busybox_image(), "-C", work,
                        "--numeric-owner"], check=True)
        os.unlink(os.path.join(work, "rootfs", "sbin", "init"))
        with tempfile.TemporaryFile() as tarball:
            subprocess.run(["tar", "-cz", "--numeric-owner", "-C", work,
                            *sorted(os.listdir(work))], stdout=tarball, check=True)
            tarball.seek(0)
            image = self.glance.create(nova_context.get_admin_context(), {
                "name": "nlx-noinit", "disk_format": "raw", "container_format": "bare",
                "min_disk": 0, "status": "active",
                "properties": {"hw_architecture": HOST_ARCH}}, data=tarball)
        server = self._boot("nlx-noinit", image_id=image["id"], wait="ERROR")
        self._assert_runtimes_empty()
        # Not rescheduled (no host could boot it): the fault says why.
        self.assertIn("has no usable init: /sbin/init", server["fault"]["message"])
        self._delete_server(server)

    def test_spawn_never_deletes_a_container_it_did_not_make(self):
        """A container that merely has the next instance's name survives that
        instance's failed build and its deletion."""
        host = COMPUTE_HOSTS[0]
        probe = self._boot("nlx-name-probe", host=host)
        name = probe["OS-EXT-SRV-ATTR:instance_name"]
        squatter = f"{name[:-8]}{int(name[-8:], 16) + 1:08x}"
        client = self.runtimes[host].client
        fingerprint = client.api.images.aliases[self.image_id].get().json()["metadata"][
            "target"]
        client.instances.create({"name": squatter, "config": {"user.marker": "not-nova"},
                                 "source": {"type": "image", "fingerprint": fingerprint}},
                                wait=True)
        server = self._boot("nlx-squatted", host=host, wait="ERROR")
        self.assertEqual(squatter, server["OS-EXT-SRV-ATTR:instance_name"])
        self.assertEqual("not-nova", client.instances.get(squatter).config["user.marker"])
        self._delete_server(server)
        self.assertEqual("not-nova", client.instances.get(squatter).config["user.marker"])
        client.instances.get(squatter).delete(wait=True)
        self._delete_server(probe)
        self._assert_runtimes_empty()

    def test_invalid_extra_spec_fails_cleanly(self):
        flavor_id = self._create_flavor(name="nlx.bad", vcpu=1, memory_mb=128, disk=1, ephemeral=0,
                                        extra_spec={"lxd:nested_allowed": "perhaps"})
        server = self._boot("nlx-bad", flavor_id=flavor_id, wait="ERROR")
        self.assertIn("lxd:nested_allowed", server["fault"]["message"])
        self._assert_runtimes_empty()
        self._delete_server(server)
