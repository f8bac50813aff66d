"""etc/nova/rootwrap.d/nova-lxd-py.filters admits exactly the privsep helpers
the driver uses (its own context and os-vif's ovs one), read by oslo.rootwrap."""
import os
import sys
import unittest

from oslo_rootwrap import filters, wrapper

from nova_lxd_py import privsep

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))
FILTERS = os.path.join(REPO, "etc", "nova", "rootwrap.d")


def helper(context: str, *conf: str, sock: str = "/tmp/tmpab12/privsep.sock") -> list[str]:
    """What oslo.privsep runs after helper_command's own words."""
    args = ["privsep-helper"]
    for path in conf or ("/etc/nova/nova.conf",):
        args += ["--config-file", path]
    return args + ["--privsep_context", context, "--privsep_sock_path", sock]


class RootwrapFiltersTest(unittest.TestCase):
    def setUp(self):
        # only our file's lines: oslo.rootwrap >= 7 also admits privsep-helper
        # on its own, older ones rely on lines like these
        self.ours = [f for f in wrapper.load_filters([FILTERS])
                     if isinstance(f, filters.RegExpFilter)]
        self.exec_dirs = [os.path.dirname(sys.executable), "/usr/bin", "/bin"]

    def match(self, args):
        return wrapper.match_filter(self.ours, args, exec_dirs=self.exec_dirs).name

    def test_our_contexts_are_admitted(self):
        from vif_plug_ovs import privsep as ovs_privsep
        for context in (privsep.net_pctxt.pypath, ovs_privsep.vif_plug.pypath):
            self.assertIn(context.split(".")[0], self.match(helper(context)))
            self.assertIn(context.split(".")[0], self.match(
                helper(context, "/etc/nova/nova.conf", "/etc/nova/nova-compute.conf")))

    def test_nothing_else_is(self):
        for args in (helper("nova.privsep.sys_admin_pctxt"),
                     helper("nova_lxd_pyXprivsep.net_pctxt"),
                     helper(privsep.net_pctxt.pypath, "/etc/../root/evil.conf"),
                     helper(privsep.net_pctxt.pypath, "/home/x/nova.conf"),
                     helper(privsep.net_pctxt.pypath, sock="/var/run/x.sock"),
                     helper(privsep.net_pctxt.pypath) + ["--extra"],
                     ["ip", "link", "add", "x", "type", "veth"]):
            with self.assertRaises(wrapper.NoFilterMatched, msg=args):
                self.match(args)


if __name__ == "__main__":
    unittest.main()
