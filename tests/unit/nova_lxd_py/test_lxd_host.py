"""Host resources, placement inventory and traits (pure parts of host.py)."""
import unittest

import os_resource_classes as orc

from nova_lxd_py import host

GiB = 1024 ** 3
RESOURCES = {"cpu": {"architecture": "x86_64", "total": 8},
             "memory": {"total": 16 * GiB, "used": 2 * GiB}}
POOL = {"space": {"total": 100 * GiB, "used": 10 * GiB}}
RATIOS = {orc.VCPU: 16.0, orc.MEMORY_MB: 1.5, orc.DISK_GB: 1.0}


class HostTest(unittest.TestCase):
    def test_resources(self):
        res = host.host_resources(RESOURCES, POOL)
        self.assertEqual((8, 16384, 2048, 100, 10, "x86_64"),
                         (res.vcpus, res.memory_mb, res.memory_mb_used, res.local_gb,
                          res.local_gb_used, res.arch))

    def test_inventory_honours_ratios_and_reserved(self):
        inv = host.inventory(host.host_resources(RESOURCES, POOL), RATIOS, 1, 512, 2)
        self.assertEqual({"total": 8, "min_unit": 1, "max_unit": 8, "step_size": 1,
                          "allocation_ratio": 16.0, "reserved": 1}, inv[orc.VCPU])
        self.assertEqual(512, inv[orc.MEMORY_MB]["reserved"])
        self.assertEqual(1.5, inv[orc.MEMORY_MB]["allocation_ratio"])
        self.assertEqual((100, 2), (inv[orc.DISK_GB]["total"], inv[orc.DISK_GB]["reserved"]))

    def test_no_disk_inventory_without_pool_size(self):
        inv = host.inventory(host.host_resources(RESOURCES, None), RATIOS, 0, 0, 0)
        self.assertNotIn(orc.DISK_GB, inv)

    def test_available_resource_matches_inventory(self):
        res = host.host_resources(RESOURCES, POOL)
        data = host.available_resource(res, "node1", 5000002, "u-1")
        self.assertEqual((8, 16384, 100), (data["vcpus"], data["memory_mb"], data["local_gb"]))
        self.assertEqual("lxd", data["hypervisor_type"])
        self.assertEqual([("x86_64", "lxd", "exe")], data["supported_instances"])
        self.assertEqual("u-1", data["uuid"])
        self.assertNotIn("uuid", host.available_resource(res, "n", 1, None))

    def test_traits(self):
        self.assertEqual({"CUSTOM_NOVA_LXD_CONTAINER", "HW_ARCH_X86_64"},
                         host.driver_traits("x86_64"))
        self.assertEqual({"CUSTOM_NOVA_LXD_CONTAINER"}, host.driver_traits("weird"))
        self.assertIn("CUSTOM_NOVA_LXD_ROOT_DISK_QUOTA", host.driver_traits("x86_64", True))

    def test_version_int(self):
        self.assertEqual(5000002, host.version_int("5.0.2"))
        self.assertEqual(1002000, host.version_int("1.2"))
        self.assertEqual(0, host.version_int(None))

    def test_uptime_line(self):
        self.assertEqual("up 2 days, 3:04,  load average: 0.50, 1.00, 1.25",
                         host.uptime_line(2 * 86400 + 3 * 3600 + 4 * 60 + 59, [0.5, 1, 1.25]))
        self.assertEqual("up 0:01,  load average: 0.00, 0.00, 0.00",
                         host.uptime_line(61, [0, 0, 0]))
        seconds, load = host.local_uptime()
        self.assertGreater(seconds, 0)
        self.assertEqual(3, len(load))

    def test_cpu_stats(self):
        resources = {"cpu": {"sockets": [{"frequency": 2100}, {"frequency": 2400}]}}
        self.assertEqual(2400, host.cpu_frequency(resources))
        self.assertEqual(0, host.cpu_frequency({}))
        self.assertEqual({"kernel": 2, "idle": 3, "user": 1, "iowait": 4, "frequency": 2400},
                         host.cpu_stats({"user": 1, "kernel": 2, "idle": 3, "iowait": 4},
                                        2400))


class LocalResourcesTest(unittest.TestCase):
    def test_local_resources_shape(self):
        resources, pool = host.local_resources("/")
        res = host.host_resources(resources, pool)
        self.assertGreater(res.vcpus, 0)
        self.assertGreater(res.memory_mb, 0)
        self.assertGreater(res.local_gb, 0)


if __name__ == "__main__":
    unittest.main()
