"""Storage with real nova services and real containers: flavor ephemeral disks and
swap, Cinder volumes (attach, mount, extend, detach, boot from volume)."""
from __future__ import annotations

import os
import time

import fixtures
import nova.conf
from nova import context as nova_context
from nova import objects

import nlx_fixtures
import test_lxd_servers
from nlx_fixtures import LoopDevice
from nova_lxd_py import volume
from nova_lxd_py.image import HOST_ARCH

HOSTS = test_lxd_servers.COMPUTE_HOSTS


class LXDEphemeralTest(test_lxd_servers.LXDServersBase):
    runtime_https = True  # the resize test moves a server between the runtimes

    def setUp(self):
        super().setUp()
        self.eph_flavor = self._create_flavor(name="nlx.eph", vcpu=1, memory_mb=128, disk=1,
                                              ephemeral=1)

    def _volume(self, host: str, name: str) -> dict:
        return self.runtimes[host].client.api.storage_pools.default.volumes.custom[
            name].get().json()["metadata"]

    def test_ephemeral_disk_is_a_volume_at_mnt(self):
        server = self._boot("nlx-eph", flavor_id=self.eph_flavor, host=HOSTS[0])
        name = server["OS-EXT-SRV-ATTR:instance_name"]
        container = self._container(server)
        self.assertEqual({"type": "disk", "pool": "default", "source": name + "-eph0",
                          "path": "/mnt"}, container.devices["ephemeral0"])
        volume = self._volume(HOSTS[0], name + "-eph0")
        self.assertEqual("1GiB", volume["config"]["size"])
        self.assertEqual(server["id"], volume["config"]["user.nova_instance_uuid"])
        self._exec(server, "sh", "-c", "echo scratch > /mnt/file")
        self.assertEqual("0", self._exec(server, "stat", "-c", "%u", "/mnt/file").strip())
        # placement charges root and ephemeral
        usages = self._get_provider_usages(self._get_provider_uuid_by_host(HOSTS[0]))
        self.assertEqual(2, usages["DISK_GB"])
        self._delete_server(server)
        self._assert_runtimes_empty()

    def test_image_names_the_mount_point(self):
        with open(nlx_fixtures.busybox_image(), "rb") as data:
            image = self.glance.create(nova_context.get_admin_context(), {
                "name": "nlx-eph-path", "disk_format": "raw", "container_format": "bare",
                "status": "active", "properties": {"hw_architecture": HOST_ARCH,
                                                   "lxd_ephemeral_path": "/srv/scratch"}},
                data=data)
        server = self._boot("nlx-eph-path", image_id=image["id"], flavor_id=self.eph_flavor)
        self.assertEqual("/srv/scratch", self._container(server).devices["ephemeral0"]["path"])
        self._exec(server, "touch", "/srv/scratch/ok")
        self._delete_server(server)
        self._assert_runtimes_empty()

    def test_swap_is_refused_clearly(self):
        flavor = self._create_flavor(name="nlx.swap", vcpu=1, memory_mb=128, disk=1,
                                     ephemeral=0, swap=256)
        server = self._boot("nlx-swap", flavor_id=flavor, wait="ERROR")
        self.assertIn("swap", server["fault"]["message"])
        self.assertIn("containers share the host's swap", server["fault"]["message"])
        self._assert_runtimes_empty()
        self._delete_server(server)

    def test_resize_moves_to_fresh_ephemeral_and_cleans_the_source(self):
        if nlx_fixtures.runtime_kind() != "bundled":
            self.skipTest("resize needs one runtime per host")
        bigger = self._create_flavor(name="nlx.eph2", vcpu=1, memory_mb=128, disk=1,
                                     ephemeral=2)
        server = self._boot("nlx-eph-move", flavor_id=self.eph_flavor, host=HOSTS[0])
        name = server["OS-EXT-SRV-ATTR:instance_name"]
        server = self._resize_server(server, bigger)
        self.assertEqual(HOSTS[1], server["OS-EXT-SRV-ATTR:host"])
        self.assertEqual("2GiB", self._volume(HOSTS[1], name + "-eph0")["config"]["size"])
        self._exec(server, "touch", "/mnt/after-resize")
        server = self._confirm_resize(server)
        self.assertEqual([], self.runtimes[HOSTS[0]].our_volumes())
        self._delete_server(server)
        self._assert_runtimes_empty()


class LXDVolumeTest(test_lxd_servers.LXDServersBase):
    """Cinder volumes through os-brick's local connector over loop devices (this
    kernel has no iSCSI, RBD or device-mapper for a real back end)."""

    def setUp(self):
        if nlx_fixtures.runtime_kind() != "bundled":
            self.skipTest("volumes need the runtime on this host")
        super().setUp()
        self.volumes = self.useFixture(nlx_fixtures.LocalVolumes())
        self.cinder = self.volumes.cinder

    def _volume(self, metadata: dict | None = None, **loop) -> tuple[str, LoopDevice]:
        return self.volumes.create(metadata, **loop)

    def _attach(self, server: dict, vol_id: str) -> None:
        """Attach through the API and wait until the container has the volume (the
        API answers before the compute service is done)."""
        self.api.post_server_volume(server["id"], {"volumeAttachment": {"volumeId": vol_id}})
        deadline = time.monotonic() + 30
        while "volume-" + vol_id not in self._container(server).devices:
            self.assertLess(time.monotonic(), deadline, f"volume {vol_id} not attached")
            time.sleep(0.1)

    def _host_mounts(self, host: str) -> list[str]:
        prefix = os.path.join(self.runtimes[host].lxd_dir, "disks") + "/"
        with open("/proc/self/mounts") as f:
            return [line.split()[1] for line in f if line.split()[1].startswith(prefix)]

    def _attachments(self, vol_id: str) -> list[dict]:
        return list(self.cinder.volume_to_attachment[vol_id].values())

    def _extend(self, server: dict, vol_id: str) -> dict[str, dict]:
        """Cinder's volume-extended event for vol_id (the back end has grown it);
        once nova-compute is done with it, the events of its extend action by name."""
        self.admin_api.microversion = "2.84"  # events with their details
        self.addCleanup(setattr, self.admin_api, "microversion", self.microversion)
        seen = {a["request_id"] for a in self.admin_api.get_instance_actions(server["id"])}
        self.admin_api.create_server_external_events([{
            "name": "volume-extended", "server_uuid": server["id"], "tag": vol_id}])
        deadline = time.monotonic() + 30
        while True:
            for act in self.admin_api.get_instance_actions(server["id"]):
                if act["action"] != "extend_volume" or act["request_id"] in seen:
                    continue
                events = {e["event"]: e for e in self.admin_api.get_instance_action_details(
                    server["id"], act["request_id"]).get("events") or []}
                if (events.get("compute_extend_volume") or {}).get("finish_time"):
                    return events
            self.assertLess(time.monotonic(), deadline, f"volume-extended {vol_id} not handled")
            time.sleep(0.2)

    def _df_kb(self, server: dict, path: str) -> int:
        return int(self._exec(server, "df", "-k", path).splitlines()[-1].split()[1])

    def test_attach_extend_detach(self):
        # nova calls the driver's detach_volume only on the compute whose CONF.host is
        # the instance's host; in this one-process harness CONF.host is the compute
        # started last, so the server goes there (elsewhere nova would skip the
        # driver: "registered to the remote host", the container keeping the device)
        host = HOSTS[-1]
        self.assertEqual(host, nova.conf.CONF.host)
        server = self._boot("nlx-vol", host=host)
        raw_id, raw = self._volume(size_mb=32, fs=None)
        data_id, data = self._volume({"lxd_mount_path": "/srv/data"}, size_mb=64,
                                     files={"hello": b"from cinder\n"})
        keep_id, _keep = self._volume({"lxd_mount_path": "/srv/keep"}, size_mb=32,
                                      files={"kept": b"attached at delete\n"})
        self._attach(server, raw_id)
        self._attach(server, data_id)
        self._attach(server, keep_id)
        container = self._container(server)
        raw_dev = container.devices["volume-" + raw_id]
        self.assertEqual(("unix-block", raw.path), (raw_dev["type"], raw_dev["source"]))
        self._exec(server, "test", "-b", raw_dev["path"])
        self.assertEqual(str(32 * 1024 * 1024), self._exec(
            server, "blockdev", "--getsize64", raw_dev["path"]).strip())
        self.assertEqual("from cinder\n", self._exec(server, "cat", "/srv/data/hello"))
        self._exec(server, "sh", "-c", "echo written > /srv/data/by-guest")
        self.assertEqual("0", self._exec(server, "stat", "-c", "%u",
                                         "/srv/data/by-guest").strip())

        # Cinder extends the block volume: the device the container has grows, as a
        # VM's disk does (its filesystem, if any, is the guest's business)
        raw.grow(64)
        events = self._extend(server, raw_id)
        self.assertEqual("Success", events["compute_extend_volume"]["result"])
        self.assertNotIn(volume.GROW_EVENT, events)
        self.assertEqual(str(64 * 1024 * 1024), self._exec(
            server, "blockdev", "--getsize64", raw_dev["path"]).strip())

        # ...and the mounted one: we mounted it, so we grow its filesystem online,
        # where the host allows it; where it doesn't, the volume works on at its old
        # size and the refusal is recorded (an event of the action, a fault)
        before = self._df_kb(server, "/srv/data")
        data.grow(128)
        events = self._extend(server, data_id)
        self.assertEqual("Success", events["compute_extend_volume"]["result"])
        self.assertEqual(128 * 1024 * 1024, data.size())
        if _can_resize_online():
            self.assertEqual("Success", events[volume.GROW_EVENT]["result"])
            self.assertGreater(self._df_kb(server, "/srv/data"), before * 1.5)
        else:
            self.assertEqual("Error", events[volume.GROW_EVENT]["result"])
            self.assertIn("Permission denied", events[volume.GROW_EVENT]["details"])
            fault = objects.InstanceFault.get_latest_for_instance(
                nova_context.get_admin_context(), server["id"])
            self.assertIn(f"Volume {data_id} grew; its filesystem at /srv/data was not "
                          "grown", fault.message)
            self.assertEqual(before, self._df_kb(server, "/srv/data"))
        self._exec(server, "sh", "-c", "echo after-extend >> /srv/data/by-guest")
        self.assertEqual("ACTIVE", self.api.get_server(server["id"])["status"])

        # detaching the block volume takes its node out of the container
        self.api.delete_server_volume(server["id"], raw_id)
        self._wait_for_volume_detach(server["id"], raw_id)
        self.assertNotIn("volume-" + raw_id, self._container(server).devices)
        self.assertEqual("gone", self._exec(
            server, "sh", "-c", f"test -e {raw_dev['path']} || echo gone").strip())
        self.assertEqual([], self._attachments(raw_id))
        # detaching the mounted one (its grow refused or not) unmounts it, here and
        # on the host
        self.api.delete_server_volume(server["id"], data_id)
        self._wait_for_volume_detach(server["id"], data_id)
        self.assertNotIn("volume-" + data_id, self._container(server).devices)
        self.assertNotIn("/srv/data", self._exec(server, "cat", "/proc/mounts"))
        self.assertEqual(1, len(self._host_mounts(host)))  # /srv/keep's
        self.assertEqual([], self._attachments(data_id))
        with data.mounted() as root:
            with open(os.path.join(root, "by-guest")) as f:
                self.assertEqual("written\nafter-extend\n", f.read())
        # deleting a server detaches what is still attached: no attachment, no mount
        self.assertEqual("attached at delete\n", self._exec(server, "cat", "/srv/keep/kept"))
        self._delete_server(server)
        self._assert_runtimes_empty()
        self.assertEqual([], self._host_mounts(host))
        self.assertEqual([], self._attachments(keep_id))

    def _boot_from_volume(self, name: str, vol_id: str) -> dict:
        server = self._build_server(name=name, image_uuid="", flavor_id=self.flavor_id,
                                    networks="none")
        server["block_device_mapping_v2"] = [{
            "boot_index": 0, "uuid": vol_id, "source_type": "volume",
            "destination_type": "volume"}]
        server["host"] = HOSTS[0]
        return self._wait_for_state_change(self.api.post_server({"server": server}),
                                           "ACTIVE")

    def test_snapshot_of_a_volume_backed_server_is_quiesced(self):
        """nova quiesces a running volume-backed server around its volume snapshots:
        the container is frozen (writes flushed) while Cinder snapshots, running
        again afterwards."""
        vol_id, _device = self._volume(size_mb=128,
                                       rootfs_tarball=nlx_fixtures.busybox_image())
        server = self._boot_from_volume("nlx-bfv-quiesce", vol_id)
        driver = self.computes[HOSTS[0]].manager.driver
        seen: list[tuple[str, str]] = []

        def spy(method):
            real = getattr(driver, method)

            def call(*args, **kwargs):
                real(*args, **kwargs)
                seen.append((method, self._status(server)))
            return call
        for method in ("quiesce", "unquiesce"):
            self.useFixture(fixtures.MockPatchObject(driver, method, side_effect=spy(method)))
        self.api.post_server_action(server["id"], {"createImage": {"name": "nlx-bfv-snap"}})
        # The API quiesces with a call but unquiesces with a cast, after its volume
        # snapshots and with no task state to wait on: wait for the unquiesce itself.
        deadline = time.monotonic() + 60
        while len(seen) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        self.assertEqual([("quiesce", "Frozen"), ("unquiesce", "Running")], seen)
        self.assertEqual([vol_id], [s["volume_id"] for s in
                                    self.cinder.volume_snapshots.values()])
        self._delete_server(server)
        self._assert_runtimes_empty()

    def test_boot_from_volume(self):
        vol_id, device = self._volume(size_mb=128, rootfs_tarball=nlx_fixtures.busybox_image(),
                                      files={"etc/marker": b"root on a volume\n"})
        server = self._boot_from_volume("nlx-bfv", vol_id)
        self.assertEqual("root on a volume\n", self._exec(server, "cat", "/etc/marker"))
        self.assertEqual(server["OS-EXT-SRV-ATTR:hostname"],
                         self._exec(server, "hostname").strip())
        root = self._container(server).devices["root"]
        self.assertEqual(device.path, root["source"])
        self._exec(server, "sh", "-c", "echo kept > /root/written")
        server = self._stop_server(server)
        self.assertEqual([], self._host_mounts(HOSTS[0]))
        server = self._start_server(server)
        self.assertEqual("kept\n", self._exec(server, "cat", "/root/written"))
        self._delete_server(server)
        self._assert_runtimes_empty()
        self.assertEqual([], self._host_mounts(HOSTS[0]))
        self.assertEqual([], self._attachments(vol_id))
        with device.mounted() as rootfs:  # the volume outlives the server, with its data
            with open(os.path.join(rootfs, "root", "written")) as f:
                self.assertEqual("kept\n", f.read())


def _can_resize_online() -> bool:
    """Whether CAP_SYS_RESOURCE (24) is in this machine's capability bounding set."""
    with open("/proc/self/status") as f:
        bounding = next(int(line.split()[1], 16) for line in f if line.startswith("CapBnd:"))
    return bool(bounding & (1 << 24))
