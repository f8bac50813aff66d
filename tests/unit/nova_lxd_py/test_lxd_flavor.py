"""Flavor to instance config mapping (pure functions)."""
import unittest

from nova_lxd_py import exception
from nova_lxd_py import flavor as fm


def run(vcpus=2, memory_mb=512, root_gb=5, specs=None, **host):
    return fm.instance_config(fm.FlavorView(vcpus, memory_mb, root_gb, specs or {}),
                              fm.HostFacts(**host))


class FlavorMappingTest(unittest.TestCase):
    def test_limits(self):
        out = run()
        self.assertEqual("2", out.config["limits.cpu"])
        self.assertEqual("512MiB", out.config["limits.memory"])

    def test_root_disk_size_only_when_enforced(self):
        self.assertNotIn("size", run(root_quota=False).devices["root"])
        root = run(root_quota=True, pool="fast").devices["root"]
        self.assertEqual({"type": "disk", "path": "/", "pool": "fast", "size": "5GiB"}, root)
        self.assertNotIn("size", run(root_gb=0, root_quota=True).devices["root"])

    def test_security_specs(self):
        out = run(specs={"lxd:nested_allowed": "True", "lxd:privileged_allowed": "no",
                         "lxd:isolated": "1"})
        self.assertEqual("true", out.config["security.nesting"])
        self.assertEqual("false", out.config["security.privileged"])
        self.assertEqual("true", out.config["security.idmap.isolated"])

    def test_bad_boolean_is_rejected_with_key_named(self):
        with self.assertRaises(exception.InvalidFlavorSpec) as ctx:
            run(specs={"lxd:nested_allowed": "maybe"})
        self.assertIn("lxd:nested_allowed", str(ctx.exception))

    def test_unknown_lxd_spec_is_rejected(self):
        with self.assertRaises(exception.InvalidFlavorSpec) as ctx:
            run(specs={"lxd:turbo": "true"})
        self.assertIn("lxd:turbo", str(ctx.exception))

    def test_other_namespaces_are_ignored(self):
        out = run(specs={"hw:cpu_policy": "shared", "aggregate_instance_extra_specs:x": "y"})
        self.assertEqual({"limits.cpu", "limits.memory"}, set(out.config))

    def test_disk_io_quota(self):
        root = run(specs={"quota:disk_read_bytes_sec": "10485760",
                          "quota:disk_write_iops_sec": "200",
                          "quota:disk_total_bytes_sec": "1000",
                          "quota:disk_total_iops_sec": "5"}).devices["root"]
        self.assertEqual("10485760B", root["limits.read"])
        self.assertEqual("200iops", root["limits.write"])
        self.assertEqual("1000B", root["limits.max"])  # bytes win over iops

    def test_bad_quota_is_rejected(self):
        for value in ("fast", "0", "-3"):
            with self.assertRaises(exception.InvalidFlavorSpec):
                run(specs={"quota:disk_read_iops_sec": value})

    def test_vif_quota_in_kbit(self):
        out = run(specs={"quota:vif_inbound_average": "1000",
                         "quota:vif_outbound_peak": "250"})
        self.assertEqual({"limits.ingress": "8000kbit", "limits.egress": "2000kbit"},
                         out.nic_limits)

    def test_steps_are_ordered_and_pure(self):
        self.assertEqual(["cpu_limit", "memory_limit", "security", "root_disk", "nic_limits"],
                         [s.__name__ for s in fm.STEPS])
        view = fm.FlavorView(1, 64, 1, {"lxd:isolated": "true"})
        self.assertEqual(fm.instance_config(view, fm.HostFacts()),
                         fm.instance_config(view, fm.HostFacts()))


if __name__ == "__main__":
    unittest.main()
