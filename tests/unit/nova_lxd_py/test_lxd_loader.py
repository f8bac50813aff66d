"""nova's real loader finds the driver through the nova.virt.lxd_py shim."""
import unittest

from oslo_config import fixture as config_fixture


class LoaderTest(unittest.TestCase):
    def setUp(self):
        import nova.conf

        self.conf = config_fixture.Config(nova.conf.CONF)
        self.conf.setUp()
        self.addCleanup(self.conf.cleanUp)

    def test_load_compute_driver(self):
        from nova.virt import driver as nova_driver

        from nova_lxd_py.driver import LXDDriver

        self.conf.config(compute_driver="lxd_py.LXDDriver")
        self.conf.config(group="lxd", endpoint="/nonexistent/nlx/unix.socket")
        loaded = nova_driver.load_compute_driver(virtapi=None)
        self.assertIsInstance(loaded, LXDDriver)
        self.assertIsInstance(loaded, nova_driver.ComputeDriver)
        # Construction is lazy: no runtime needed until init_host.
        self.assertEqual("/nonexistent/nlx/unix.socket", loaded._endpoint.url)

    def test_shim_is_the_only_nova_module_we_ship(self):
        import nova.virt.lxd_py as shim

        self.assertEqual(["LXDDriver"], shim.__all__)

    def test_list_opts(self):
        from nova_lxd_py import conf

        groups = {group.name: {o.name for o in opts} for group, opts in conf.list_opts()}
        self.assertEqual({"lxd", "nova_lxd_py_privileged"}, set(groups))
        for name in ("endpoint", "client_cert", "client_key", "server_cert", "pool",
                     "timeout", "allow_live_migration", "image_cache_dir"):
            self.assertIn(name, groups["lxd"])
        # the section our privsep context reads (nova_lxd_py.privsep.net_pctxt)
        from nova_lxd_py import privsep
        self.assertEqual("nova_lxd_py_privileged", privsep.net_pctxt.cfg_section)
        self.assertIn("helper_command", groups["nova_lxd_py_privileged"])


if __name__ == "__main__":
    unittest.main()
