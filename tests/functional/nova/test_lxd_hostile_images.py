"""Hostile images and tenant secrets through nova's API, on real containers.

A tenant's image is booted next to a good one: the hostile build fails at once
(ERROR with the reason, no reschedule, nothing left on any host) while the good
server boots normally. A server's user data, admin password and config drive
end up in the container only, 0600 in 0700 directories owned by its root,
readable there and by no user on the host.

    .venv/bin/python -m stestr --test-path tests/functional/nova \
        --top-dir tests/functional/nova run test_lxd_hostile_images
"""
from __future__ import annotations

import base64
import io
import json
import os
import socket
import subprocess
import sys
import tarfile
import tempfile
import time

import fixtures
import yaml

from nova import context as nova_context

import nlx_fixtures
from nova_lxd_py.image import HOST_ARCH
from test_lxd_servers import COMPUTE_HOSTS, LXDServersBase


class LXDHostileImagesTest(LXDServersBase):
    def _image(self, name: str, mutate) -> str:
        """A Glance image: the bundled busybox image changed by mutate(workdir)."""
        work = self.useFixture(fixtures.TempDir()).path
        subprocess.run(["tar", "-xJf", nlx_fixtures.busybox_image(), "-C", work,
                        "--numeric-owner"], check=True)
        mutate(work)
        with tempfile.TemporaryFile() as tarball:
            subprocess.run(["tar", "-cz", "--numeric-owner", "-C", work,
                            *sorted(os.listdir(work))], stdout=tarball, check=True)
            tarball.seek(0)
            image = self.glance.create(nova_context.get_admin_context(), {
                "name": name, "disk_format": "raw", "container_format": "bare",
                "min_disk": 0, "status": "active",
                "properties": {"hw_architecture": HOST_ARCH}}, data=tarball)
        self._track_images(image["id"])
        return image["id"]

    def test_hostile_image_fails_fast_and_others_proceed(self):
        def escape(work):
            path = os.path.join(work, "metadata.yaml")
            with open(path) as f:
                meta = yaml.safe_load(f)
            meta["templates"] = {"/etc/hostname": {
                "when": ["create", "start"], "template": "../" * 16 + "etc/hostname"}}
            with open(path, "w") as f:
                yaml.safe_dump(meta, f)
        hostile = self._image("nlx-hostile", escape)
        t0 = time.monotonic()
        bad = self.api.post_server({"server": self._build_server(
            name="nlx-hostile", image_uuid=hostile, flavor_id=self.flavor_id,
            networks="none")})
        good = self.api.post_server({"server": self._build_server(
            name="nlx-good", image_uuid=self.image_id, flavor_id=self.flavor_id,
            networks="none")})
        self._track_images(self.image_id)
        bad = self._wait_for_state_change(bad, "ERROR")
        failed_after = time.monotonic() - t0
        good = self._wait_for_state_change(good, "ACTIVE")
        self.assertLess(failed_after, 30, "the hostile build should fail fast")
        self.assertIn("can't be used safely", bad["fault"]["message"])
        self.assertIn("template", bad["fault"]["message"])
        self.assertEqual("Running", self._status(good))
        self.assertNotEqual(socket.gethostname(), self._exec(good, "hostname").strip())
        # no host kept a container for it; the good one is the only one left
        for runtime in self.runtimes.values():
            self.assertNotIn(bad["OS-EXT-SRV-ATTR:instance_name"], runtime.ours())
        self._delete_server(good)
        self._delete_server(bad)
        self._assert_runtimes_empty()

    def test_secrets_are_private_in_the_container_only(self):
        instances = self.useFixture(fixtures.TempDir()).path
        self.flags(instances_path=instances)
        server = self._build_server(name="nlx-secrets", image_uuid=self.image_id,
                                    flavor_id=self.flavor_id, networks="none")
        server["config_drive"] = True
        server["adminPass"] = "s3cret-admin-pass"
        server["user_data"] = base64.b64encode(b"#!/bin/sh\necho top-secret\n").decode()
        self._track_images(self.image_id)
        server = self._wait_for_state_change(self.api.post_server({"server": server}),
                                             "ACTIVE")
        seed = "/var/lib/cloud/seed/nocloud"
        for path, mode in ((seed, "700"), (f"{seed}/user-data", "600"),
                           (f"{seed}/meta-data", "600"), ("/config-drive", "700"),
                           ("/config-drive/openstack", "700"),
                           ("/config-drive/openstack/latest", "700"),
                           ("/config-drive/openstack/latest/meta_data.json", "600")):
            self.assertEqual(f"{mode} 0 0", self._exec(server, "stat", "-c", "%a %u %g",
                                                       path).strip(), path)
        self.assertIn("top-secret", self._exec(server, "cat", f"{seed}/user-data"))
        self.assertIn("s3cret-admin-pass", self._exec(
            server, "cat", "/config-drive/openstack/latest/meta_data.json"))
        # nothing on the host: no config-drive directory, and the rootfs is out of reach
        self.assertFalse(os.path.exists(os.path.join(instances, server["id"])),
                         "the config drive was written on the host")
        runtime = self.runtimes[server["OS-EXT-SRV-ATTR:host"]]
        if runtime.endpoint.startswith("/"):
            rootfs = os.path.join(os.path.dirname(runtime.endpoint), "storage-pools",
                                  "default", "containers",
                                  server["OS-EXT-SRV-ATTR:instance_name"], "rootfs")
            probe = subprocess.run(
                [sys.executable, "-c", "import sys; open(sys.argv[1]).read()",
                 rootfs + seed + "/user-data"], user=65534, group=65534, capture_output=True)
            self.assertNotEqual(0, probe.returncode, "a host user read the user data")
        self._delete_server(server)
        self._assert_runtimes_empty()

    def test_config_drive_stays_out_of_images(self):
        """The config drive lives in the container's root but, as libvirt's disk of
        its own, never goes into a snapshot (it holds the admin password); a root
        from an image that carries somebody's config drive gets nova's own or none."""
        host = COMPUTE_HOSTS[0]
        server = self._build_server(name="nlx-cd-snap", image_uuid=self.image_id,
                                    flavor_id=self.flavor_id, networks="none")
        server.update(config_drive=True, adminPass="s3cret-admin-pass", host=host)
        self._track_images(self.image_id)
        server = self._wait_for_state_change(self.api.post_server({"server": server}),
                                             "ACTIVE")
        self._skip_without_snapshots(server)
        self._exec(server, "sh", "-c", "echo kept > /root/marker")
        image = self._create_image(server, "nlx-cd-snapshot")
        self._track_images(image["id"])
        with tarfile.open(fileobj=io.BytesIO(self.glance._imagedata[image["id"]])) as tar:
            names = tar.getnames()
        self.assertIn("rootfs/root/marker", names)
        self.assertEqual([], [n for n in names if n.startswith("rootfs/config-drive")])
        self.assertIn("s3cret-admin-pass", self._exec(server, "cat", self.META_DATA))
        self.assertEqual([], [n for n in self.runtimes[host].client.instances.all()
                              if n.name.endswith("-image")], "scratch copy left")

        def foreign_drive(work):
            drive = os.path.join(work, "rootfs", "config-drive", "openstack")
            for sub, data in (("latest/meta_data.json", '{"uuid": "someone-else"}'),
                              ("content/0000", "their injected file")):
                os.makedirs(os.path.dirname(os.path.join(drive, sub)), exist_ok=True)
                with open(os.path.join(drive, sub), "w") as f:
                    f.write(data)
        foreign = self._image("nlx-foreign-drive", foreign_drive)
        mine = self._boot("nlx-cd-mine", image_id=foreign, host=host, config_drive=True)
        self.assertEqual(mine["id"], json.loads(self._exec(mine, "cat", self.META_DATA))["uuid"])
        result = self._container(mine).execute(["ls", "/config-drive/openstack/content"])
        self.assertNotEqual(0, result.exit_code, "a foreign injected file stayed")
        plain = self._boot("nlx-cd-none", image_id=foreign, host=host)
        result = self._container(plain).execute(["ls", "/config-drive"])
        self.assertNotEqual(0, result.exit_code, "a foreign config drive stayed")
        for s in (server, mine, plain):
            self._delete_server(s)
        self._assert_runtimes_empty()
