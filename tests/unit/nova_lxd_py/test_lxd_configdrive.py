"""NoCloud seed contents (pure parts of configdrive.py)."""
import base64
import types
import unittest

import yaml

from nova_lxd_py import configdrive

NETWORK_INFO = [{
    "id": "p1", "address": "fa:16:3e:00:00:01",
    "network": {"bridge": "brq1", "subnets": [
        {"cidr": "192.168.1.0/24", "gateway": {"address": "192.168.1.1"},
         "dns": [{"address": "10.0.0.53"}],
         "ips": [{"address": "192.168.1.10", "type": "fixed"}]},
        {"cidr": "fd00::/64", "gateway": {"address": None}, "dns": [],
         "ips": [{"address": "fd00::10", "type": "fixed"}]},
    ]},
}, {
    "id": "p2", "address": "fa:16:3e:00:00:02",
    "network": {"subnets": [{"cidr": "10.9.0.0/16", "ips": []}]},
}]


class SeedTest(unittest.TestCase):
    def test_ifupdown(self):
        text = configdrive.ifupdown(NETWORK_INFO)
        self.assertIn("auto eth0\niface eth0 inet static\n    address 192.168.1.10\n"
                      "    netmask 255.255.255.0\n    gateway 192.168.1.1\n"
                      "    dns-nameservers 10.0.0.53\n", text)
        self.assertIn("iface eth0 inet6 static\n    address fd00::10\n    netmask 64\n", text)
        self.assertIn("auto eth1\niface eth1 inet dhcp\n", text)
        self.assertTrue(text.startswith("auto lo\niface lo inet loopback\n"))

    def test_network_config_v1(self):
        cfg = configdrive.network_config_v1(NETWORK_INFO)
        eth0 = cfg["config"][0]
        self.assertEqual("fa:16:3e:00:00:01", eth0["mac_address"])
        self.assertEqual({"type": "static", "address": "192.168.1.10/24",
                          "gateway": "192.168.1.1"}, eth0["subnets"][0])
        self.assertEqual({"type": "nameserver", "address": ["10.0.0.53"]}, cfg["config"][-1])

    def test_nocloud_files(self):
        inst = types.SimpleNamespace(uuid="u-1", name="instance-1", hostname="web-1",
                                     user_data=base64.b64encode(b"#!/bin/sh\necho hi\n"))
        files = configdrive.nocloud_files(inst, configdrive.hostname_for(inst), NETWORK_INFO)
        meta = yaml.safe_load(files["/var/lib/cloud/seed/nocloud/meta-data"])
        self.assertEqual({"instance-id": "u-1", "local-hostname": "web-1"}, meta)
        self.assertEqual(b"#!/bin/sh\necho hi\n",
                         files["/var/lib/cloud/seed/nocloud/user-data"])
        self.assertIn(b"address 192.168.1.10",
                      files["/var/lib/cloud/seed/nocloud/network-interfaces"])

    def test_nocloud_seed_carries_the_keypair(self):
        inst = types.SimpleNamespace(uuid="u-2", name="instance-2", hostname="web-2",
                                     user_data=None, key_data="ssh-ed25519 AAAAC3Nz x@y\n")
        files = configdrive.nocloud_files(inst, configdrive.hostname_for(inst), [])
        meta = yaml.safe_load(files["/var/lib/cloud/seed/nocloud/meta-data"])
        self.assertEqual(["ssh-ed25519 AAAAC3Nz x@y"], meta["public-keys"])

    def test_no_network_no_network_files(self):
        inst = types.SimpleNamespace(uuid="u", name="n", hostname=None, user_data=None)
        files = configdrive.nocloud_files(inst, configdrive.hostname_for(inst), [])
        self.assertEqual({"meta-data", "user-data", "vendor-data"},
                         {p.rsplit("/", 1)[1] for p in files})
        self.assertIn(b"local-hostname: n", files["/var/lib/cloud/seed/nocloud/meta-data"])


if __name__ == "__main__":
    unittest.main()
